"""The GD studies: `lr-sweep` and `spectrum` (paper Sections 5-6)."""

from __future__ import annotations

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
    OUTPUT,
    BetaOpt,
    DataDirOpt,
    LamOpt,
    Opt,
    QuietOpt,
    RecordOpt,
    SeedOpt,
    SigmaOpt,
    options,
)
from multigrade.cli.tasks import _num

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


def _study_config(command: str, task: str, opts: dict, rates: list[float], **study):
    """The study's `RunConfig` (what its run directory's `config.toml` keeps): the common
    options in `opts`, the `[study]` fields in `study`; unset architecture fields take the
    paper's for the task (`studies.paper_architecture`)."""
    import jax

    from multigrade.experiments import ModelConfig, ProblemConfig, RunConfig, TrainConfig, tasks
    from multigrade.experiments.config import StudySection
    from multigrade.experiments.studies import paper_architecture

    spec = tasks.get(task)
    if not spec.studies:
        raise ValueError(f"the {command} study runs on {', '.join(tasks.names(studies=True))}, "
                         f"not {task}")
    if spec.image and opts["image"] is None:
        raise ValueError(f"the {task} task needs an image (--image NAME_OR_PATH)")
    width, grades, layers = paper_architecture(command, task)
    methods = tuple(m.strip() for m in opts["methods"].split(",") if m.strip())
    return RunConfig(
        command=command,
        problem=ProblemConfig(task=task, image=opts["image"] or "camera", size=opts["size"],
                              data_dir=None if opts["data_dir"] is None else
                              str(opts["data_dir"]), sigma=opts["sigma"], beta=opts["beta"],
                              lam=opts["lam"], setting=opts["setting"]),
        model=ModelConfig(width=opts["width"] or width, grades=opts["grades"] or grades,
                          layers_per_grade=opts["layers_per_grade"] or layers, init="he"),
        train=TrainConfig(optimizer="gd", lr=max(rates), epochs=opts["steps"],
                          record_every=opts["record_every"], seed=opts["seed"]),
        study=StudySection(methods=methods, learning_rates=tuple(rates), **study),
        x64=bool(jax.config.jax_enable_x64))


# The options every study takes (`opts` of `_study_config`), then its output options.
STUDY = (Opt("task", TaskArg), Opt("methods", MethodsOpt, "mgdl,sgdl"),
         Opt("steps", StepsOpt, 2000), Opt("setting", SettingOpt, 1),
         Opt("image", StudyImageOpt, None), Opt("size", StudySizeOpt, 64),
         Opt("data_dir", DataDirOpt, None), Opt("sigma", SigmaOpt, 10.0),
         Opt("beta", BetaOpt, 1e-3), Opt("lam", LamOpt, 1e-4),
         Opt("width", StudyWidthOpt, None), Opt("grades", StudyGradesOpt, None),
         Opt("layers_per_grade", StudyLayersOpt, None), Opt("record_every", RecordOpt, 10),
         Opt("seed", SeedOpt, 0))


def _run_study(ctx, cfg, out, overwrite: bool, quiet: bool):
    """`execute` the study (its directory claimed, its problem built once)."""
    from multigrade.experiments import execute

    with progress_bars(quiet) as progress:
        return execute(cfg, out, overwrite=overwrite, command=command_line(ctx),
                       progress=progress)


@app.command("lr-sweep")
@_guard
@options(STUDY, (Opt("lrs", Annotated[str, typer.Option(
    "--lrs", help="Comma-separated learning rates.")], "1e-3,1e-2,5e-2,1e-1,2e-1,5e-1"),),
    OUTPUT)
def lr_sweep_cmd(ctx, lrs: str, out, overwrite: bool, quiet: bool, **opts):
    """Full-batch GD at every learning rate × method (paper §5), vmapped over the rates.

    Labels each run converged / oscillated / stalled / diverged and reports the largest
    stable rate per method. Architectures default to the paper's: synthetic MGDL
    4 × [32] vs SGDL [32]×4; regression MGDL 4 × [128, 128] vs SGDL [128]×8; denoise
    4 × [48] vs [48]×4; He initialisation.
    """
    task, steps = opts["task"], opts["steps"]
    rates = _floats(lrs, "--lrs")
    _check_multiple(steps, opts["record_every"], "--steps")
    cfg = _study_config("lr-sweep", task, opts, rates)
    outcome = _run_study(ctx, cfg, out, overwrite, quiet)
    sweeps, out = outcome.study, outcome.run_dir
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


SPECTRUM = (
    Opt("lr", Annotated[str, typer.Option("--lr", help="GD learning rate, one for all methods "
                                          "or one per method (comma-separated).")], "0.05"),
    Opt("interval", Annotated[int, typer.Option(
        "--interval", help="GD steps between Hessian spectra.")], 500),
    Opt("dense_max", Annotated[int, typer.Option(
        "--dense-max", help="Largest Hessian formed densely; above it, Lanczos extremes.")],
        4000),
    Opt("density", Annotated[bool, typer.Option(
        "--density", help="Also the Hessian's spectral density (stochastic Lanczos "
        "quadrature) and trace at every probe: density.png, density.npz.")], False),
    Opt("density_probes", Annotated[int, typer.Option(
        "--density-probes", help="Random probes of the density and trace.")], 10))


@app.command("spectrum")
@_guard
@options(STUDY, SPECTRUM, OUTPUT)
def spectrum_cmd(ctx, lr: str, interval: int, dense_max: int, density: bool,
                 density_probes: int, out, overwrite: bool, quiet: bool, **opts):
    """Hessian and GD-Jacobian (I − ηH) spectra along GD training (paper §6).

    Every --interval steps of each grade: the eigenvalues of the current grade's Hessian
    (all parameters for SGDL; u held fixed for denoising), the extreme eigenvalues of
    I − ηH, the spectral radius, how many lie outside [−1, 1], λ_max, the critical rate
    2/λ_max and the condition number. Architectures default to the paper's: synthetic
    4 × [32] vs [32]×4; regression and denoise 4 × [48] vs [48]×4.
    """
    task = opts["task"]
    rates = _floats(lr, "--lr")
    _check_multiple(interval, opts["record_every"], "--interval")
    _check_multiple(opts["steps"], opts["record_every"], "--steps")
    if density and density_probes < 2:
        raise ValueError(f"--density-probes must be at least 2, got {density_probes}")
    cfg = _study_config("spectrum", task, opts, rates,
                        interval=interval, dense_max=dense_max,
                        density=density_probes if density else 0)
    outcome = _run_study(ctx, cfg, out, overwrite, quiet)
    results, out = outcome.study, outcome.run_dir
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
    from multigrade.experiments.sweep import check_out, check_size, load_sweep, run_sweep

    spec = _sweep_spec(load_sweep(sweep_file), best_by, group_by)
    check_out(out)
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


def _sweep_spec(spec, best_by: str | None, group_by: str | None):
    """The sweep file's spec with --best-by and --group-by applied (checked)."""
    import dataclasses as dc

    from multigrade.experiments.sweep import check_metric

    if best_by is not None:
        spec = dc.replace(spec, best_by=check_metric(best_by))
    if group_by is not None:
        groups = tuple(g.strip() for g in group_by.split(",") if g.strip())
        bad = [g for g in groups if g not in spec.axes]
        if bad:
            raise ValueError(f"--group-by names {bad[0]!r}, which is not an axis of the sweep "
                             f"({', '.join(spec.axes)})")
        spec = dc.replace(spec, group_by=groups)
    return spec


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


def _grade_means(groups: list[dict], metric: str) -> list[list[float]]:
    """Per group, the mean of `metric` after each grade (`grade2_test_psnr_mean`), in
    grade order; empty for groups of single-grade runs."""
    out = []
    for g in groups:
        k, means = 1, []
        while f"grade{k}_{metric}_mean" in g:
            means.append(g[f"grade{k}_{metric}_mean"])
            k += 1
        out.append(means)
    return out


def race_lines(rows: list[dict]) -> list[str]:
    """Per grade trained from several starts, in how many completed runs the try leading a
    quarter of the way through was the try kept (`gradeK_lead_at_quarter` against
    `gradeK_kept_try`): whether a race of the tries stopped there would change a run."""
    out = []
    for k in sorted({int(n[len("grade"):-len("_kept_try")]) for r in rows for n in r
                     if n.startswith("grade") and n.endswith("_kept_try")}):
        both = [r for r in rows if r.get("status") == "completed"
                and r.get(f"grade{k}_lead_at_quarter") is not None
                and r.get(f"grade{k}_kept_try") is not None]
        if both:
            same = sum(r[f"grade{k}_lead_at_quarter"] == r[f"grade{k}_kept_try"] for r in both)
            out.append(f"grade {k}'s tries: the try leading at a quarter of the epochs is "
                       f"the try kept in {same} of {len(both)} runs")
    return out


def _print_sweep(outcome) -> None:
    spec, metric = outcome.spec, outcome.spec.best_by
    table = Table(title=f"sweep: {len(outcome.rows)} runs ({outcome.ran} trained now), "
                        f"{metric} by group")
    for g in spec.groups:
        table.add_column(g)
    graded = _grade_means(outcome.groups, metric)
    for c in ("runs", "completed", "diverged", "failed", f"{metric} mean ± std",
              *([f"per grade (mean {metric})"] if any(graded) else []), "best", "run"):
        table.add_column(c, justify="right")
    for g, grades in zip(outcome.groups, graded, strict=True):
        mean, std = g.get(f"{metric}_mean"), g.get(f"{metric}_std")
        best = g.get(f"best_{metric}")
        table.add_row(*[str(g[k]) for k in spec.groups], str(g["runs"]), str(g["completed"]),
                      str(g["diverged"]), str(g["failed"]),
                      "-" if mean is None else f"{mean:.4g} ± {std:.2g}",
                      *([" / ".join(f"{v:.4g}" for v in grades) or "-"] if any(graded) else []),
                      "-" if best is None else f"{best:.4g}", g.get("best_run", "-"))
    console.print(table)
    for line in race_lines(outcome.rows):
        console.print(line)
    for r in outcome.rows:
        if r["status"] == "failed":
            console.print(f"failed: {r['run']}: {r.get('error', '')}")
    console.print(f"sweep directory: {outcome.out}")
