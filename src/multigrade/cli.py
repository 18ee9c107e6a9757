"""The `mgdl` command. Thin: it parses options, calls the library and prints tables.

Errors a user can cause end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Multi-grade deep learning (MGDL): train grade by grade, compare with SGDL.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
fit_app = typer.Typer(help="Train one model and write a run directory.", no_args_is_help=True)
compare_app = typer.Typer(help="Train MGDL and SGDL of the same total depth side by side.",
                          no_args_is_help=True)
app.add_typer(fit_app, name="fit")
app.add_typer(compare_app, name="compare")

# Tables are wider than the 80 columns Rich assumes when writing to a pipe or a file.
console = Console() if sys.stdout.isatty() else Console(width=130)
err_console = Console(stderr=True)

# Options shared by several commands.
ImageOpt = Annotated[str, typer.Option(
    "--image", help="Built-in image name (camera, astronaut, moon, coins, ...) or a file path.")]
SizeOpt = Annotated[int | None, typer.Option(
    "--size", help="Resize the image to SIZE × SIZE pixels (default: keep its size).")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Folder to search for image names (also $MULTIGRADE_DATA).")]
GradesOpt = Annotated[int, typer.Option(
    "--grades", help="Number of grades K (SGDL: total depth is K × layers-per-grade).")]
LayersOpt = Annotated[int, typer.Option(
    "--layers-per-grade", help="Hidden layers per grade.")]
WidthOpt = Annotated[int, typer.Option("--width", help="Units in every hidden layer.")]
InitOpt = Annotated[str, typer.Option(
    "--init", help="Weight initialiser: glorot (paper §4) or he (paper §5-6).")]
OptimOpt = Annotated[str, typer.Option(
    "--optimizer", help="gd (full-batch gradient descent) or any Optax optimiser name.")]
LrOpt = Annotated[float, typer.Option("--lr", help="Learning rate.")]
EpochsOpt = Annotated[int, typer.Option(
    "--epochs", help="Epochs per grade (SGDL trains the same number).")]
RecordOpt = Annotated[int, typer.Option(
    "--record-every", help="Epochs between recorded metrics.")]
TolOpt = Annotated[float | None, typer.Option(
    "--tol", help="Tolerance of the validation stopping rule (default: train the full budget).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Run directory (default runs/<kind>-<timestamp>).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
ColorOpt = Annotated[bool, typer.Option(
    "--color", help="Keep colour: one network output per channel (default: convert to gray).")]
MethodOpt = Annotated[str, typer.Option("--method", help="mgdl or sgdl.")]
SigmaOpt = Annotated[float, typer.Option(
    "--sigma", help="Noise standard deviation in units of 1/255 (paper: 10, 20, ..., 60).")]
BlurSigmaOpt = Annotated[float, typer.Option(
    "--blur-sigma", help="Gaussian blur σ_b in pixels (kernel 6σ_b + 1; paper: 3, 5, 7).")]
NoiseOpt = Annotated[float, typer.Option(
    "--noise", help="Noise standard deviation in units of 1/255 (paper: 3).")]
BetaOpt = Annotated[float, typer.Option("--beta", help="TV splitting coupling weight β.")]
LamOpt = Annotated[float, typer.Option("--lam", help="TV weight λ.")]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="Relaxation α of the u update.")]
NoiseSeedOpt = Annotated[int, typer.Option(
    "--noise-seed", help="Seed of the observation's noise (kept apart from --seed).")]


def _guard(fn):
    """Turns a user error into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError) as e:  # FileNotFoundError and ImageNotFoundError too
            err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished runs are in their run directories")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def _main(x64: Annotated[bool, typer.Option("--x64", help="Compute in float64.")] = False):
    if x64:
        import jax

        jax.config.update("jax_enable_x64", True)


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


TaskArg = Annotated[str, typer.Argument(help="synthetic, regression or denoise.")]
MethodsOpt = Annotated[str, typer.Option(
    "--methods", help="Comma-separated methods: mgdl, sgdl, msdl.")]
SettingOpt = Annotated[int, typer.Option("--setting", help="Synthetic setting 1 or 2.")]
StudyImageOpt = Annotated[str | None, typer.Option(
    "--image", help="Image for the regression and denoise tasks (name or path).")]
StudySizeOpt = Annotated[int | None, typer.Option(
    "--size", help="Resize the image to SIZE × SIZE (default 64).")]
StepsOpt = Annotated[int, typer.Option("--steps", help="GD steps per grade.")]


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values or not all(v > 0 for v in values):
        raise ValueError(f"{what} must be positive numbers, got {text!r}")
    return values


def _study_config(task, methods, setting, image, size, data_dir, sigma, beta, lam, width,
                  grades, layers_per_grade, seed):
    from multigrade.experiments.studies import StudyConfig

    if size is not None and size < 2:
        raise ValueError(f"--size must be at least 2, got {size}")
    return StudyConfig(task=task, methods=tuple(m.strip() for m in methods.split(",") if m),
                       setting=setting, image=image, size=size, data_dir=data_dir,
                       sigma=sigma / 255, beta=beta, lam=lam, width=width, grades=grades,
                       layers_per_grade=layers_per_grade, seed=seed)


@app.command("lr-sweep")
@_guard
def lr_sweep_cmd(
    task: TaskArg,
    methods: MethodsOpt = "mgdl,sgdl",
    lrs: Annotated[str, typer.Option("--lrs", help="Comma-separated learning rates.")] =
        "1e-3,1e-2,5e-2,1e-1,2e-1,5e-1",
    steps: StepsOpt = 2000,
    setting: SettingOpt = 1,
    image: StudyImageOpt = None,
    size: StudySizeOpt = 64,
    data_dir: DataDirOpt = None,
    sigma: SigmaOpt = 10.0,
    beta: BetaOpt = 1e-3,
    lam: LamOpt = 1e-4,
    width: Annotated[int | None, typer.Option("--width", help="Hidden width.")] = None,
    grades: Annotated[int | None, typer.Option("--grades", help="MGDL grades.")] = None,
    layers_per_grade: Annotated[int | None, typer.Option(
        "--layers-per-grade", help="Hidden layers per grade.")] = None,
    record_every: RecordOpt = 10,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    quiet: QuietOpt = False,
):
    """Full-batch GD at every learning rate × method (paper §5), vmapped over the rates.

    Labels each run converged / oscillated / stalled / diverged and reports the largest
    stable rate per method. Architectures default to the paper's: synthetic MGDL
    4 × [32] vs SGDL [32]×4; regression MGDL 4 × [128, 128] vs SGDL [128]×8; denoise
    4 × [48] vs [48]×4; He initialisation.
    """
    from multigrade import runs
    from multigrade.experiments.studies import run_lr_sweep

    cfg = _study_config(task, methods, setting, image, size, data_dir, sigma, beta, lam,
                        width, grades, layers_per_grade, seed)
    rates = _floats(lrs, "--lrs")
    if steps < 1 or steps % record_every:
        raise ValueError(f"--steps must be a positive multiple of --record-every "
                         f"({record_every}), got {steps}")
    sweeps = run_lr_sweep(cfg, rates, steps, record_every=record_every, progress=not quiet)
    out = out or runs.default_out(f"lr-sweep-{task}")
    runs.save_sweep(out, sweeps, {"command": "lr-sweep", **dataclasses.asdict(cfg),
                                  "lrs": rates, "steps": steps})
    table = Table(title=f"GD learning-rate sweep, {task}, {steps} steps per grade")
    cols = ["method", "η", "label", "train loss", "val loss"]
    has_psnr = any("test_psnr" in r.metrics or "psnr" in r.metrics
                   for s in sweeps.values() for r in s.results)
    cols += ["PSNR dB"] if has_psnr else []
    cols += ["per grade"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("method", "label", "per grade") else "right")
    for m, s in sweeps.items():
        for lr, r, lab, per in zip(s.learning_rates, s.results, s.labels, s.grade_labels):
            mt = r.metrics
            row = [m, f"{lr:g}", lab, _num(mt, "train_loss", ".4g"), _num(mt, "val_loss", ".4g")]
            if has_psnr:
                row.append(_num(mt, "test_psnr" if "test_psnr" in mt else "psnr", ".2f"))
            row.append(",".join(p[:4] for p in per) if len(per) > 1 else "")
            table.add_row(*row)
    console.print(table)
    for m, s in sweeps.items():
        console.print(f"largest stable learning rate, {m}: {s.largest_stable_lr}")
    console.print(f"run directory: {out}")


@app.command("spectrum")
@_guard
def spectrum_cmd(
    task: TaskArg,
    methods: MethodsOpt = "mgdl,sgdl",
    lr: Annotated[str, typer.Option(
        "--lr", help="GD learning rate, one for all methods or one per method (comma-separated)."
    )] = "0.05",
    steps: StepsOpt = 2000,
    interval: Annotated[int, typer.Option(
        "--interval", help="GD steps between Hessian spectra.")] = 500,
    setting: SettingOpt = 1,
    image: StudyImageOpt = None,
    size: StudySizeOpt = 64,
    data_dir: DataDirOpt = None,
    sigma: SigmaOpt = 10.0,
    beta: BetaOpt = 1e-3,
    lam: LamOpt = 1e-4,
    width: Annotated[int | None, typer.Option("--width", help="Hidden width.")] = None,
    grades: Annotated[int | None, typer.Option("--grades", help="MGDL grades.")] = None,
    layers_per_grade: Annotated[int | None, typer.Option(
        "--layers-per-grade", help="Hidden layers per grade.")] = None,
    dense_max: Annotated[int, typer.Option(
        "--dense-max", help="Largest Hessian formed densely; above it, Lanczos extremes.")] = 4000,
    record_every: RecordOpt = 10,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    quiet: QuietOpt = False,
):
    """Hessian and GD-Jacobian (I − ηH) spectra along GD training (paper §6).

    Every --interval steps of each grade: the eigenvalues of the current grade's Hessian
    (all parameters for SGDL; u held fixed for denoising), the extreme eigenvalues of
    I − ηH, the spectral radius, how many lie outside [−1, 1], λ_max, the critical rate
    2/λ_max and the condition number. Architectures default to the paper's: synthetic
    4 × [32] vs [32]×4; regression and denoise 4 × [48] vs [48]×4.
    """
    from multigrade import runs
    from multigrade.experiments.studies import run_spectrum

    cfg = _study_config(task, methods, setting, image, size, data_dir, sigma, beta, lam,
                        width, grades, layers_per_grade, seed)
    rates = _floats(lr, "--lr")
    if interval < 1 or interval % record_every:
        raise ValueError(f"--interval must be a positive multiple of --record-every "
                         f"({record_every}), got {interval}")
    if steps < 1 or steps % record_every:
        raise ValueError(f"--steps must be a positive multiple of --record-every "
                         f"({record_every}), got {steps}")
    results = run_spectrum(cfg, rates, steps, interval, record_every=record_every,
                           dense_max=dense_max, progress=not quiet)
    out = out or runs.default_out(f"spectrum-{task}")
    runs.save_spectrum(out, results, {"command": "spectrum", **dataclasses.asdict(cfg),
                                      "lr": rates, "steps": steps, "interval": interval})
    table = Table(title=f"GD-Jacobian spectra along training, {task}")
    for c in ("method", "η", "grade", "step", "λ_max(H)", "λ_min(H)", "max eig J",
              "min eig J", "outside [-1,1]", "2/λ_max", "how"):
        table.add_column(c, justify="left" if c in ("method", "how") else "right")
    for m, r in results.items():
        for p in r.probes:
            table.add_row(m, f"{p['lr']:g}", str(p["grade"]), str(p["step"]),
                          f"{p['lambda_max']:.4g}", f"{p['lambda_min']:.3g}",
                          f"{p['jacobian_max']:.4f}", f"{p['jacobian_min']:.4f}",
                          str(p["num_outside"]), f"{p['critical_lr']:.4g}", p["hessian"])
    console.print(table)
    for m, r in results.items():
        status = "diverged" if r.diverged else f"final train loss {r.metrics['train_loss']:.4g}"
        console.print(f"{m}: {status}")
        big = sorted({p["num_params"] for p in r.probes if p["hessian"] == "lanczos"})
        if big:
            console.print(f"{m}: Hessians of {', '.join(map(str, big))} parameters exceed "
                          f"--dense-max {dense_max}: their extreme eigenvalues come from "
                          "Lanczos (5 at each end); counts outside [-1, 1] are among those")
    console.print(f"run directory: {out}")


def main() -> None:
    app(prog_name="mgdl")


if __name__ == "__main__":
    sys.exit(main())
