"""Commands that fit images: `demo`, `fit` and `compare` for regression, denoise, deblur."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from multigrade.cli._app import _guard, app, compare_app, console, fit_app
from multigrade.cli.options import (
    AlphaOpt,
    BetaOpt,
    BlurSigmaOpt,
    ColorOpt,
    DataDirOpt,
    EpochsOpt,
    GradesOpt,
    ImageOpt,
    InitOpt,
    LamOpt,
    LayersOpt,
    LrOpt,
    MethodOpt,
    NoiseOpt,
    NoiseSeedOpt,
    OptimOpt,
    OutOpt,
    QuietOpt,
    RecordOpt,
    SeedOpt,
    SigmaOpt,
    SizeOpt,
    TolOpt,
    WidthOpt,
)


def _configs(grades, layers_per_grade, width, init, optimizer, lr, epochs, record_every, tol,
             seed, method="mgdl"):
    from multigrade.experiments import ModelConfig, TrainConfig

    return (ModelConfig(method, grades, layers_per_grade, width, init),
            TrainConfig(optimizer, lr, epochs, record_every, tol, seed))


def _load(image, size, data_dir, color):
    import multigrade as mg

    if size is not None and size < 2:
        raise ValueError(f"--size must be at least 2, got {size}")
    return mg.load_image(image, size=size, data_dir=data_dir, gray=not color)


def _image_problem(image, size, data_dir, color=False):
    import multigrade as mg

    return mg.image_regression(_load(image, size, data_dir, color), name=image)


def _restoration_problem(task, image, size, data_dir, color, sigma, blur_sigma, noise, beta,
                         lam, alpha, noise_seed):
    import jax

    from multigrade.problems import deblurring, denoising

    clean = _load(image, size, data_dir, color)
    key = jax.random.key(noise_seed)
    kw = dict(key=key, beta=beta, lam=lam, alpha=alpha, name=image)
    if task == "denoise":
        return denoising(clean, sigma / 255, **kw)
    return deblurring(clean, blur_sigma, noise / 255, **kw)


def _num(metrics: dict, key: str, fmt: str) -> str:
    return format(metrics[key], fmt) if key in metrics else "-"


def _db(metrics: dict, key: str) -> str:
    return _num(metrics, key, ".2f")


def _status(result) -> str:
    return "diverged" if result.diverged else ",".join(sorted({g.status for g in result.grades}))


def _print_table(results: dict, title: str) -> None:
    """One row per method, then one row per grade of each multi-grade model."""
    table = Table(title=title)
    for col in ("method", "grades", "layers", "train dB", "val dB", "test dB", "epochs",
                "seconds", "status"):
        table.add_column(col, justify="left" if col in ("method", "status") else "right")
    for r in results.values():
        m = r.metrics
        table.add_row(r.model.name, str(r.model.num_grades), str(r.model.depth),
                      _db(m, "train_psnr"), _db(m, "val_psnr"), _db(m, "test_psnr"),
                      str(r.epochs), f"{r.seconds:.1f}", _status(r))
    console.print(table)
    for r in results.values():
        if r.model.num_grades == 1:
            continue
        table = Table(title=f"{r.model.name}: after each grade")
        for col in ("grade", "train dB", "val dB", "test dB", "epochs", "ms/epoch", "status"):
            table.add_column(col, justify="left" if col == "status" else "right")
        for g in r.grades:
            table.add_row(str(g.grade), _db(g.metrics, "train_psnr"), _db(g.metrics, "val_psnr"),
                          _db(g.metrics, "test_psnr"), str(g.epochs),
                          f"{1e3 * g.seconds_per_epoch:.2f}", g.status)
        console.print(table)


def _print_restoration_table(problem, results: dict, baselines: list, title: str) -> None:
    from multigrade.metrics import ssim

    clean = problem.render(problem.clean.reshape(-1, problem.out_dim))
    table = Table(title=title)
    for col in ("method", "PSNR dB", "SSIM", "PSNR after each grade", "epochs", "seconds",
                "status"):
        table.add_column(col, justify="left" if col in ("method", "status") else "right")
    observed = problem.render(problem.observed.reshape(-1, problem.out_dim))
    table.add_row("observation", f"{problem.observed_psnr():.2f}",
                  f"{ssim(observed, clean):.3f}", "", "", "", "")
    for b in baselines:
        table.add_row(f"{b.name} ({b.parameter} {b.value:.3g})", f"{b.psnr:.2f}",
                      f"{b.ssim:.3f}", "", "", "", "")
    for r in results.values():
        image = problem.render(r.predictions[-1])
        table.add_row(r.model.name, f"{r.metrics['psnr']:.2f}", f"{ssim(image, clean):.3f}",
                      " / ".join(f"{g.metrics['psnr']:.2f}" for g in r.grades),
                      str(r.epochs), f"{r.seconds:.1f}", _status(r))
    console.print(table)


def _compare_and_save(problem, model_cfg, train_cfg, out, quiet, config, title,
                      print_table=None):
    from multigrade import report, runs
    from multigrade.experiments import run_fit

    out = Path(out)
    results = {}
    for method in ("mgdl", "sgdl"):
        cfg = dataclasses.replace(model_cfg, method=method)
        result = run_fit(problem, cfg, train_cfg, progress=not quiet)
        # Saved as soon as it exists: a later failure never loses it.
        runs.save_run(out / method, result, {**config, "model_config": dataclasses.asdict(cfg),
                                             "train_config": dataclasses.asdict(train_cfg)})
        results[method] = result
    report.plot_history(results, out / "history.png")
    runs.write_json(out / "comparison.json",
                    {m: runs.result_summary(r) for m, r in results.items()})
    (print_table or _print_table)(results, title)
    console.print(f"run directory: {out}")
    return results


@app.command()
@_guard
def demo(
    out: OutOpt = None,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 128,
    epochs: EpochsOpt = 2000,
    quiet: QuietOpt = False,
):
    """The main job: MGDL (4 grades × 2 layers) vs SGDL (8 layers) on the cameraman image."""
    from multigrade import runs
    from multigrade.experiments import demo_configs

    data, model_cfg, train_cfg = demo_configs()
    train_cfg = dataclasses.replace(train_cfg, epochs=epochs)
    problem = _image_problem(data["image"], size, None)
    out = out or runs.default_out("demo")
    _compare_and_save(problem, model_cfg, train_cfg, out, quiet,
                      {"command": "demo", "image": data["image"], "size": size},
                      f"MGDL vs SGDL, cameraman {size}×{size}, Adam, {epochs} epochs per grade")


@fit_app.command("regression")
@_guard
def fit_regression(
    image: ImageOpt,
    size: SizeOpt = None,
    data_dir: DataDirOpt = None,
    method: MethodOpt = "mgdl",
    grades: GradesOpt = 4,
    layers_per_grade: LayersOpt = 2,
    width: WidthOpt = 128,
    init: InitOpt = "glorot",
    optimizer: OptimOpt = "adam",
    lr: LrOpt = 1e-3,
    epochs: EpochsOpt = 2000,
    record_every: RecordOpt = 10,
    tol: TolOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    quiet: QuietOpt = False,
    color: ColorOpt = False,
):
    """Coordinate image regression (paper §2.1): fit pixel values from pixel coordinates."""
    from multigrade import runs

    model_cfg, train_cfg = _configs(grades, layers_per_grade, width, init, optimizer, lr,
                                    epochs, record_every, tol, seed, method)
    problem = _image_problem(image, size, data_dir, color)
    title = f"{method.upper()} image regression, {image}"
    _fit_and_save(problem, model_cfg, train_cfg,
                  out or runs.default_out(f"fit-regression-{method}"), quiet,
                  {"command": "fit regression", "image": image, "size": size},
                  lambda r: _print_table({method: r}, title))


@compare_app.command("regression")
@_guard
def compare_regression(
    image: ImageOpt,
    size: SizeOpt = None,
    data_dir: DataDirOpt = None,
    grades: GradesOpt = 4,
    layers_per_grade: LayersOpt = 2,
    width: WidthOpt = 128,
    init: InitOpt = "glorot",
    optimizer: OptimOpt = "adam",
    lr: LrOpt = 1e-3,
    epochs: EpochsOpt = 2000,
    record_every: RecordOpt = 10,
    tol: TolOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    quiet: QuietOpt = False,
    color: ColorOpt = False,
):
    """MGDL vs SGDL (same total depth, optimiser, epochs per grade and seed) on an image."""
    from multigrade import runs

    model_cfg, train_cfg = _configs(grades, layers_per_grade, width, init, optimizer, lr,
                                    epochs, record_every, tol, seed)
    problem = _image_problem(image, size, data_dir, color)
    out = out or runs.default_out("compare-regression")
    _compare_and_save(problem, model_cfg, train_cfg, out, quiet,
                      {"command": "compare regression", "image": image, "size": size},
                      f"MGDL vs SGDL image regression, {image}")


def _fit_and_save(problem, model_cfg, train_cfg, out, quiet, config, print_table):
    """Trains one model, writes its run directory, prints its table."""
    from multigrade import runs
    from multigrade.experiments import run_fit

    result = run_fit(problem, model_cfg, train_cfg, progress=not quiet)
    runs.save_run(out, result, {**config, "model_config": dataclasses.asdict(model_cfg),
                                "train_config": dataclasses.asdict(train_cfg)})
    print_table(result)
    console.print(f"run directory: {out}")


def _fit_restoration(task, image, size, data_dir, color, sigma, blur_sigma, noise, beta, lam,
                     alpha, noise_seed, method, grades, layers_per_grade, width, init, optimizer,
                     lr, epochs, record_every, tol, seed, out, quiet):
    from multigrade import runs

    model_cfg, train_cfg = _configs(grades, layers_per_grade, width, init, optimizer, lr,
                                    epochs, record_every, tol, seed, method)
    problem = _restoration_problem(task, image, size, data_dir, color, sigma, blur_sigma,
                                   noise, beta, lam, alpha, noise_seed)
    _fit_and_save(problem, model_cfg, train_cfg, out or runs.default_out(f"fit-{task}-{method}"),
                  quiet, {"command": f"fit {task}", "image": image, "size": size,
                          "noise_seed": noise_seed},
                  lambda r: _print_restoration_table(problem, {method: r}, [],
                                                     f"{method.upper()} {task}, {image}"))


def _compare_restoration(task, image, size, data_dir, color, sigma, blur_sigma, noise, beta,
                         lam, alpha, noise_seed, grades, layers_per_grade, width, init,
                         optimizer, lr, epochs, record_every, tol, seed, out, quiet):
    import numpy as np

    from multigrade import baselines, report, runs

    model_cfg, train_cfg = _configs(grades, layers_per_grade, width, init, optimizer, lr,
                                    epochs, record_every, tol, seed)
    problem = _restoration_problem(task, image, size, data_dir, color, sigma, blur_sigma,
                                   noise, beta, lam, alpha, noise_seed)
    out = Path(out or runs.default_out(f"compare-{task}"))
    clean = problem.render(np.asarray(problem.clean).reshape(-1, problem.out_dim))
    observed = problem.render(np.asarray(problem.observed).reshape(-1, problem.out_dim))
    found = [baselines.tv_denoise_oracle(observed, clean)]
    if task == "deblur":
        found.append(baselines.wiener_oracle(observed, clean, blur_sigma))
    out.mkdir(parents=True, exist_ok=True)
    runs.write_json(out / "baselines.json", [
        {"name": b.name, b.parameter: b.value, "psnr": b.psnr, "ssim": b.ssim} for b in found])
    title = f"MGDL vs SGDL {task}, {image} {clean.shape[0]}×{clean.shape[1]}"
    results = _compare_and_save(
        problem, model_cfg, train_cfg, out, quiet,
        {"command": f"compare {task}", "image": image, "size": size, "noise_seed": noise_seed},
        title, lambda results, title: _print_restoration_table(problem, results, found, title))
    panels = [("clean", clean), (f"observed\n{problem.observed_psnr():.2f} dB", observed)]
    panels += [(f"{b.name.split(',')[0]}\n{b.psnr:.2f} dB", b.image) for b in found]
    panels += [(f"{m}\n{r.metrics['psnr']:.2f} dB", problem.render(r.predictions[-1]))
               for m, r in results.items()]
    report.plot_images(panels, out / "comparison.png")


@fit_app.command("denoise")
@_guard
def fit_denoise(
    image: ImageOpt, sigma: SigmaOpt = 10.0, size: SizeOpt = None, data_dir: DataDirOpt = None,
    color: ColorOpt = False, beta: BetaOpt = 1e-3, lam: LamOpt = 1e-4, alpha: AlphaOpt = 0.99,
    noise_seed: NoiseSeedOpt = 0, method: MethodOpt = "mgdl", grades: GradesOpt = 4,
    layers_per_grade: LayersOpt = 3, width: WidthOpt = 128, init: InitOpt = "glorot",
    optimizer: OptimOpt = "adam", lr: LrOpt = 1e-3, epochs: EpochsOpt = 2000,
    record_every: RecordOpt = 10, tol: TolOpt = None, seed: SeedOpt = 0, out: OutOpt = None,
    quiet: QuietOpt = False,
):
    """Denoising with TV splitting (paper §2.2): the network is the restored image."""
    _fit_restoration("denoise", image, size, data_dir, color, sigma, None, 0.0, beta, lam,
                     alpha, noise_seed, method, grades, layers_per_grade, width, init,
                     optimizer, lr, epochs, record_every, tol, seed, out, quiet)


@fit_app.command("deblur")
@_guard
def fit_deblur(
    image: ImageOpt, blur_sigma: BlurSigmaOpt = 3.0, noise: NoiseOpt = 3.0,
    size: SizeOpt = None, data_dir: DataDirOpt = None, color: ColorOpt = False,
    beta: BetaOpt = 1e-3, lam: LamOpt = 1e-4, alpha: AlphaOpt = 0.99,
    noise_seed: NoiseSeedOpt = 0, method: MethodOpt = "mgdl", grades: GradesOpt = 4,
    layers_per_grade: LayersOpt = 3, width: WidthOpt = 128, init: InitOpt = "glorot",
    optimizer: OptimOpt = "adam", lr: LrOpt = 1e-3, epochs: EpochsOpt = 2000,
    record_every: RecordOpt = 10, tol: TolOpt = None, seed: SeedOpt = 0, out: OutOpt = None,
    quiet: QuietOpt = False,
):
    """Deblurring with TV splitting (paper §2.2): Gaussian blur, symmetric padding."""
    _fit_restoration("deblur", image, size, data_dir, color, 0.0, blur_sigma, noise, beta, lam,
                     alpha, noise_seed, method, grades, layers_per_grade, width, init,
                     optimizer, lr, epochs, record_every, tol, seed, out, quiet)


@compare_app.command("denoise")
@_guard
def compare_denoise(
    image: ImageOpt, sigma: SigmaOpt = 10.0, size: SizeOpt = None, data_dir: DataDirOpt = None,
    color: ColorOpt = False, beta: BetaOpt = 1e-3, lam: LamOpt = 1e-4, alpha: AlphaOpt = 0.99,
    noise_seed: NoiseSeedOpt = 0, grades: GradesOpt = 4, layers_per_grade: LayersOpt = 3,
    width: WidthOpt = 128, init: InitOpt = "glorot", optimizer: OptimOpt = "adam",
    lr: LrOpt = 1e-3, epochs: EpochsOpt = 2000, record_every: RecordOpt = 10,
    tol: TolOpt = None, seed: SeedOpt = 0, out: OutOpt = None, quiet: QuietOpt = False,
):
    """MGDL (4 × 3 layers) vs SGDL (12 layers) denoising, with an oracle-tuned TV baseline."""
    _compare_restoration("denoise", image, size, data_dir, color, sigma, None, 0.0, beta, lam,
                         alpha, noise_seed, grades, layers_per_grade, width, init, optimizer,
                         lr, epochs, record_every, tol, seed, out, quiet)


@compare_app.command("deblur")
@_guard
def compare_deblur(
    image: ImageOpt, blur_sigma: BlurSigmaOpt = 3.0, noise: NoiseOpt = 3.0,
    size: SizeOpt = None, data_dir: DataDirOpt = None, color: ColorOpt = False,
    beta: BetaOpt = 1e-3, lam: LamOpt = 1e-4, alpha: AlphaOpt = 0.99,
    noise_seed: NoiseSeedOpt = 0, grades: GradesOpt = 4, layers_per_grade: LayersOpt = 3,
    width: WidthOpt = 128, init: InitOpt = "glorot", optimizer: OptimOpt = "adam",
    lr: LrOpt = 1e-3, epochs: EpochsOpt = 2000, record_every: RecordOpt = 10,
    tol: TolOpt = None, seed: SeedOpt = 0, out: OutOpt = None, quiet: QuietOpt = False,
):
    """MGDL vs SGDL deblurring, with oracle-tuned TV and Wiener baselines."""
    _compare_restoration("deblur", image, size, data_dir, color, 0.0, blur_sigma, noise, beta,
                         lam, alpha, noise_seed, grades, layers_per_grade, width, init,
                         optimizer, lr, epochs, record_every, tol, seed, out, quiet)


