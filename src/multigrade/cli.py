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
console = Console() if sys.stdout.isatty() else Console(width=110)
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


def _image_problem(image, size, data_dir):
    import multigrade as mg

    if size is not None and size < 2:
        raise ValueError(f"--size must be at least 2, got {size}")
    return mg.image_regression(mg.load_image(image, size=size, data_dir=data_dir), name=image)


def _db(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.2f}" if key in metrics else "-"


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


def _compare_and_save(problem, model_cfg, train_cfg, out, quiet, config, title):
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
    _print_table(results, title)
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
    method: Annotated[str, typer.Option("--method", help="mgdl or sgdl.")] = "mgdl",
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
):
    """Coordinate image regression (paper §2.1): fit pixel values from pixel coordinates."""
    from multigrade import runs
    from multigrade.experiments import run_fit

    model_cfg, train_cfg = _configs(grades, layers_per_grade, width, init, optimizer, lr,
                                    epochs, record_every, tol, seed, method)
    problem = _image_problem(image, size, data_dir)
    out = out or runs.default_out(f"fit-regression-{method}")
    result = run_fit(problem, model_cfg, train_cfg, progress=not quiet)
    runs.save_run(out, result, {"command": "fit regression", "image": image, "size": size,
                                "model_config": dataclasses.asdict(model_cfg),
                                "train_config": dataclasses.asdict(train_cfg)})
    _print_table({method: result}, f"{method.upper()} image regression, {image}")
    console.print(f"run directory: {out}")


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
):
    """MGDL vs SGDL (same total depth, optimiser, epochs per grade and seed) on an image."""
    from multigrade import runs

    model_cfg, train_cfg = _configs(grades, layers_per_grade, width, init, optimizer, lr,
                                    epochs, record_every, tol, seed)
    problem = _image_problem(image, size, data_dir)
    out = out or runs.default_out("compare-regression")
    _compare_and_save(problem, model_cfg, train_cfg, out, quiet,
                      {"command": "compare regression", "image": image, "size": size},
                      f"MGDL vs SGDL image regression, {image}")


def main() -> None:
    app(prog_name="mgdl")


if __name__ == "__main__":
    sys.exit(main())
