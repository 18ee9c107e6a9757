"""The GD studies: `lr-sweep` and `spectrum` (paper Sections 5-6)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, no_type_check

import typer
from rich.table import Table

from multigrade.cli._app import (
    _guard,
    app,
    command_line,
    console,
    err_console,
    progress_bars,
)
from multigrade.cli.options import (
    BetaOpt,
    DataDirOpt,
    LamOpt,
    OutOpt,
    OverwriteOpt,
    QuietOpt,
    RecordOpt,
    SeedOpt,
    SigmaOpt,
)
from multigrade.cli.tasks import _num
from multigrade.experiments.runner import study_status

TaskArg = Annotated[str, typer.Argument(help="synthetic, regression or denoise.")]
MethodsOpt = Annotated[str, typer.Option(
    "--methods", help="Comma-separated methods: mgdl, sgdl, msdl.")]
SettingOpt = Annotated[int, typer.Option("--setting", help="Synthetic setting 1 or 2.")]
StudyImageOpt = Annotated[str | None, typer.Option(
    "--image", help="Image for the regression and denoise tasks (name or path).")]
StudySizeOpt = Annotated[int | None, typer.Option(
    "--size", help="Resize the image to SIZE × SIZE (default 64).")]
StepsOpt = Annotated[int, typer.Option("--steps", help="GD steps per grade.")]
StudyWidthOpt = Annotated[int | None, typer.Option(
    "--width", help="Hidden width (default: the paper's for the task).")]
StudyGradesOpt = Annotated[int | None, typer.Option(
    "--grades", help="MGDL grades; SGDL has grades × layers-per-grade layers.")]
StudyLayersOpt = Annotated[int | None, typer.Option(
    "--layers-per-grade", help="Hidden layers per grade.")]


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values or not all(v > 0 for v in values):
        raise ValueError(f"{what} must be positive numbers, got {text!r}")
    return values


def _check_multiple(value: int, record_every: int, option: str) -> None:
    if value < 1 or value % record_every:
        raise ValueError(f"{option} must be a positive multiple of --record-every "
                         f"({record_every}), got {value}")


def _study_config(task, methods, setting, image, size, data_dir, sigma, beta, lam, width,
                  grades, layers_per_grade, seed):
    from multigrade.experiments.studies import StudyConfig

    if size is not None and size < 2:
        raise ValueError(f"--size must be at least 2, got {size}")
    return StudyConfig(task=task, methods=tuple(m.strip() for m in methods.split(",") if m),
                       setting=setting, image=image, size=size, data_dir=data_dir,
                       sigma=sigma / 255, beta=beta, lam=lam, width=width, grades=grades,
                       layers_per_grade=layers_per_grade, seed=seed)


def _claim(out, overwrite: bool, kind: str, cfg, command: str):
    """Checks the study's input and claims its run directory, before any training: the
    directory's lock (`runs.Lock`), held until the study is saved."""
    from multigrade import runs
    from multigrade.experiments.studies import study_problem

    study_problem(cfg)  # a missing image or an unknown setting is refused before a directory
    return runs.claim(out if out is not None else runs.default_out(kind), "study",
                      overwrite=overwrite, command=command)


@app.command("lr-sweep")
@_guard
@no_type_check  # Typer passes its own (vendored) Click context as ctx
def lr_sweep_cmd(
    ctx: typer.Context,
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
    width: StudyWidthOpt = None,
    grades: StudyGradesOpt = None,
    layers_per_grade: StudyLayersOpt = None,
    record_every: RecordOpt = 10,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
):
    """Full-batch GD at every learning rate × method (paper §5), vmapped over the rates.

    Labels each run converged / oscillated / stalled / diverged and reports the largest
    stable rate per method. Architectures default to the paper's: synthetic MGDL
    4 × [32] vs SGDL [32]×4; regression MGDL 4 × [128, 128] vs SGDL [128]×8; denoise
    4 × [48] vs [48]×4; He initialisation.
    """
    from multigrade.experiments.studies import run_lr_sweep, save_sweep

    cfg = _study_config(task, methods, setting, image, size, data_dir, sigma, beta, lam,
                        width, grades, layers_per_grade, seed)
    rates = _floats(lrs, "--lrs")
    _check_multiple(steps, record_every, "--steps")
    command = command_line(ctx)
    held = _claim(out, overwrite, f"lr-sweep-{task}", cfg, command)
    out = held.path
    with held, study_status(out, command), progress_bars(quiet) as progress:
        sweeps = run_lr_sweep(cfg, rates, steps, record_every=record_every, progress=progress)
        save_sweep(out, sweeps, {"command": command, **dataclasses.asdict(cfg),
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
@no_type_check  # Typer passes its own (vendored) Click context as ctx
def spectrum_cmd(
    ctx: typer.Context,
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
    width: StudyWidthOpt = None,
    grades: StudyGradesOpt = None,
    layers_per_grade: StudyLayersOpt = None,
    dense_max: Annotated[int, typer.Option(
        "--dense-max", help="Largest Hessian formed densely; above it, Lanczos extremes.")] = 4000,
    density: Annotated[bool, typer.Option(
        "--density", help="Also the Hessian's spectral density (stochastic Lanczos "
        "quadrature) and trace at every probe: density.png, density.npz.")] = False,
    density_probes: Annotated[int, typer.Option(
        "--density-probes", help="Random probes of the density and trace.")] = 10,
    record_every: RecordOpt = 10,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
):
    """Hessian and GD-Jacobian (I − ηH) spectra along GD training (paper §6).

    Every --interval steps of each grade: the eigenvalues of the current grade's Hessian
    (all parameters for SGDL; u held fixed for denoising), the extreme eigenvalues of
    I − ηH, the spectral radius, how many lie outside [−1, 1], λ_max, the critical rate
    2/λ_max and the condition number. Architectures default to the paper's: synthetic
    4 × [32] vs [32]×4; regression and denoise 4 × [48] vs [48]×4.
    """
    from multigrade.experiments.studies import run_spectrum, save_spectrum

    cfg = _study_config(task, methods, setting, image, size, data_dir, sigma, beta, lam,
                        width, grades, layers_per_grade, seed)
    rates = _floats(lr, "--lr")
    _check_multiple(interval, record_every, "--interval")
    _check_multiple(steps, record_every, "--steps")
    if density and density_probes < 2:
        raise ValueError(f"--density-probes must be at least 2, got {density_probes}")
    command = command_line(ctx)
    held = _claim(out, overwrite, f"spectrum-{task}", cfg, command)
    out = held.path
    with held, study_status(out, command), progress_bars(quiet) as progress:
        results = run_spectrum(cfg, rates, steps, interval, record_every=record_every,
                               dense_max=dense_max, progress=progress,
                               density=density_probes if density else 0)
        save_spectrum(out, results, {"command": command, **dataclasses.asdict(cfg),
                                     "lr": rates, "steps": steps, "interval": interval,
                                     "density_probes": density_probes if density else 0})
    _print_spectrum(results, task, dense_max)
    console.print(f"run directory: {out}")




def _print_spectrum(results: dict, task: str, dense_max: int) -> None:
    """One row per method × probe, then each method's outcome and any Lanczos caveat."""
    table = Table(title=f"GD-Jacobian spectra along training, {task}")
    traced = any("trace" in p for r in results.values() for p in r.probes)
    for c in ("method", "η", "grade", "step", "λ_max(H)", "λ_min(H)", "max eig J",
              "min eig J", "outside [-1,1]", "2/λ_max",
              *(["tr H (SLQ)", "tr H (dense)"] if traced else []), "how"):
        table.add_column(c, justify="left" if c in ("method", "how") else "right")
    for m, r in results.items():
        for p in r.probes:
            trace = [f"{p['trace']:.4g} ± {p['trace_se']:.2g}",
                     f"{p['trace_dense']:.4g}" if "trace_dense" in p else "-"] if traced else []
            table.add_row(m, f"{p['lr']:g}", str(p["grade"]), str(p["step"]),
                          f"{p['lambda_max']:.4g}", f"{p['lambda_min']:.3g}",
                          f"{p['jacobian_max']:.4f}", f"{p['jacobian_min']:.4f}",
                          str(p["num_outside"]), f"{p['critical_lr']:.4g}", *trace,
                          p["hessian"])
    console.print(table)
    for m, r in results.items():
        status = "diverged" if r.diverged else f"final train loss {r.metrics['train_loss']:.4g}"
        console.print(f"{m}: {status}")
        big = sorted({p["num_params"] for p in r.probes if p["hessian"] == "lanczos"})
        if big:
            console.print(f"{m}: Hessians of {', '.join(map(str, big))} parameters exceed "
                          f"--dense-max {dense_max}: their extreme eigenvalues come from "
                          "Lanczos (5 at each end); counts outside [-1, 1] are among those")


@app.command("sweep")
@_guard
@no_type_check  # Typer passes its own (vendored) Click context as ctx
def sweep_cmd(
    ctx: typer.Context,
    sweep_file: Annotated[str, typer.Argument(help="A sweep file (TOML): base config + axes.")],
    out: Annotated[str, typer.Option(
        "--out", help="Sweep directory; run again to skip completed runs and resume the "
        "others.")],
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Address of a running Dask scheduler (default: a LocalCluster "
        "on this machine).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="LocalCluster worker processes (default: one per core).")] = None,
    best_by: Annotated[str | None, typer.Option(
        "--best-by", help="Metric choosing the best run of a group (default test_psnr).")] = None,
    group_by: Annotated[str | None, typer.Option(
        "--group-by", help="Comma-separated axes forming the groups (default: every axis but "
        "train.seed).")] = None,
    max_runs: Annotated[int, typer.Option(
        "--max-runs", help="Refuse a sweep of more runs than this (a guard against a grid "
        "larger than meant).")] = 10_000,
    quiet: QuietOpt = False,
):
    """Run a grid of runs on Dask: every combination of the axes is one run directory.

    Runs survive dead workers (Dask reschedules them; they resume from their checkpoints),
    and a sweep run again skips what is done. Writes results.csv, groups.csv (mean ± std
    over seeds, best run per group), summary.json and sweep.png.
    """
    import dataclasses as dc

    from multigrade.experiments.sweep import (
        check_metric,
        check_out,
        check_size,
        load_sweep,
        run_sweep,
    )

    spec = load_sweep(sweep_file)
    check_out(out)
    if best_by is not None:
        spec = dc.replace(spec, best_by=check_metric(best_by))
    if group_by is not None:
        groups = tuple(g.strip() for g in group_by.split(",") if g.strip())
        bad = [g for g in groups if g not in spec.axes]
        if bad:
            raise ValueError(f"--group-by names {bad[0]!r}, which is not an axis of the sweep "
                             f"({', '.join(spec.axes)})")
        spec = dc.replace(spec, group_by=groups)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if max_runs < 1:
        raise ValueError(f"--max-runs must be at least 1, got {max_runs}")
    n = check_size(spec, max_runs)
    if not quiet:
        axes = " × ".join(f"{a} ({len(v)})" for a, v in spec.axes.items())
        err_console.print(f"sweep: {n} runs ({axes}) in {out}", markup=False,
                          highlight=False)
    with _sweep_progress(quiet, n) as progress:
        outcome = run_sweep(spec, out, scheduler=scheduler, workers=workers, progress=progress,
                            max_runs=max_runs)
    _print_sweep(outcome)


def _sweep_progress(quiet: bool, total: int):
    import contextlib

    if quiet:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), console=err_console) as p:
            task = p.add_task("sweep", total=total, info="")

            def update(s):
                best = "-" if s["best"] is None else f"{s['best']:.4g}"
                p.update(task, completed=s["done"], info=(
                    f"queued/running {s['pending']}  failed {s['failed']}  diverged "
                    f"{s['diverged']}  best {best}"))
            yield update

    return bar()


def _print_sweep(outcome) -> None:
    spec, metric = outcome.spec, outcome.spec.best_by
    table = Table(title=f"sweep: {len(outcome.rows)} runs ({outcome.ran} trained now), "
                        f"{metric} by group")
    for g in spec.groups:
        table.add_column(g)
    for c in ("runs", "completed", "diverged", "failed", f"{metric} mean ± std", "best", "run"):
        table.add_column(c, justify="right")
    for g in outcome.groups:
        mean, std = g.get(f"{metric}_mean"), g.get(f"{metric}_std")
        best = g.get(f"best_{metric}")
        table.add_row(*[str(g[k]) for k in spec.groups], str(g["runs"]), str(g["completed"]),
                      str(g["diverged"]), str(g["failed"]),
                      "-" if mean is None else f"{mean:.4g} ± {std:.2g}",
                      "-" if best is None else f"{best:.4g}", g.get("best_run", "-"))
    console.print(table)
    for r in outcome.rows:
        if r["status"] == "failed":
            console.print(f"failed: {r['run']}: {r.get('error', '')}")
    console.print(f"sweep directory: {outcome.out}")
