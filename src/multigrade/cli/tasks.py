"""Commands that train on images or data: `demo`, `fit` and `compare` (regression,
denoise, deblur), `run` (a config file), `resume` and `grow` (a run directory).

Each turns its options into a `RunConfig`, makes one call into `experiments` and prints
a table.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, no_type_check

import typer
from rich.table import Table

from multigrade.cli._app import (
    _guard,
    app,
    command_line,
    compare_app,
    console,
    fit_app,
    progress_bars,
)
from multigrade.cli.options import (
    EpochsOpt,
    OutOpt,
    OverwriteOpt,
    QuietOpt,
)

# --------------------------------------------------------------------------------------
# Options → config → run → table


def _names(text: str | None, what: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise ValueError(f"{what} must name at least one, got {text!r}")
    return names


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what} must be whole numbers, got {text!r}") from None


def _special(opts: dict) -> dict:
    """The options that are not one config field each: `--lr auto[:c]`, `--grades auto`,
    `--eig-stop`, comma-separated lists."""
    out = dict(opts)
    lr = out.get("lr")
    if isinstance(lr, str):
        word, _, c = lr.partition(":")
        if word.strip() == "auto":
            out["lr"], out["lr_auto"] = None, _number(c, "--lr auto:c") if c else 0.5
        else:
            out["lr"] = _number(lr, "--lr (a number or auto[:c])")
    grades = out.get("grades")
    if isinstance(grades, str):
        if grades.strip() == "auto":
            out["grades"] = out.get("max_grades")
            out["min_gain"] = 0.1 if out.get("min_gain") is None else out["min_gain"]
        else:
            try:
                out["grades"] = int(grades)
            except ValueError:
                raise ValueError(f"--grades must be an integer or auto, got {grades!r}") \
                    from None
    if out.get("eig_stop") is not None:
        out["eig_stop"] = -0.95 if out["eig_stop"] else None
    for name, what in (("archs", "--archs"), ("baselines", "--baselines")):
        out[name] = _names(out.get(name), what)
    for name, what in (("coarse", "--coarse"), ("grade_epochs", "--grade-epochs"),
                       ("grade_tries", "--grade-tries"), ("curriculum", "--curriculum"),
                       ("curriculum_epochs", "--curriculum-epochs")):
        values = _names(out.get(name), what)
        out[name] = None if values is None else tuple(_whole(v, what) for v in values)
    sigmas = _names(out.get("fourier_sigmas"), "--fourier-sigmas")
    out["fourier_sigmas"] = None if sigmas is None else tuple(
        _number(v, "--fourier-sigmas") for v in sigmas)
    return out


def _config(command: str, task: str, opts: dict):
    """A `RunConfig` from a command's options (each option is the config field of the
    same name, after `_special`)."""
    import jax

    from multigrade.experiments import ModelConfig, ProblemConfig, RunConfig, TrainConfig

    opts = _special(opts)

    def section(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in opts.items() if k in names and v is not None})

    from multigrade.cli.options import own_options

    opts = {**opts, "data_dir": None if opts.get("data_dir") is None else str(opts["data_dir"])}
    own = {k: opts.pop(k) for k in own_options(task)}
    problem = section(ProblemConfig)
    problem = dataclasses.replace(problem, task=task, options=own or None)
    return RunConfig(command=command, problem=problem,
                     model=section(ModelConfig), train=section(TrainConfig),
                     methods=_restoration_defaults(task, opts),
                     x64=bool(jax.config.jax_enable_x64))


def _restoration_defaults(task: str, opts: dict):
    """Restoration: each of --lr, --beta, --lam left unset takes the authors' value for
    each method (SPEC §3; their lr is Adam's, so only with --optimizer adam)."""
    from multigrade.experiments.presets import authors_methods

    unset = tuple(k for k in ("beta", "lam") if opts.get(k) is None)
    if opts.get("lr") is None and opts.get("lr_auto") is None \
            and opts.get("optimizer") == "adam":
        unset += ("lr",)
    return authors_methods(task, unset)


def _execute(ctx, cfg, out, overwrite: bool, quiet: bool):
    from multigrade.experiments import execute

    with progress_bars(quiet) as progress:
        outcome = execute(cfg, out, overwrite=overwrite, command=command_line(ctx),
                          progress=progress)
    print_outcome(outcome)
    return outcome


def _db(metrics: dict, key: str = "test_psnr") -> str:
    v = metrics.get(key)
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}"


def _num(metrics: dict, key: str, fmt: str) -> str:
    v = metrics.get(key)
    return "-" if v is None or not math.isfinite(v) else format(v, fmt)


def _depth(result) -> int:
    """Hidden layers of the grades kept (a selector may keep fewer than the model has)."""
    if len(result.params) == result.model.num_grades:
        return result.model.depth
    return sum(len(getattr(p, "hidden", ())) for p in result.params)


def _status(result) -> str:
    return "diverged" if result.diverged else ",".join(sorted({g.status for g in result.grades}))


def print_outcome(outcome) -> None:
    """One row per method (after the observation and baselines, for restoration), the
    PSNR after each grade, then where the run directory is."""
    from multigrade.nn import count_params

    cfg = outcome.config
    if outcome.study is not None:
        _print_study(outcome)
        return
    title = (f"{' vs '.join(m.upper() for m in outcome.results)} {cfg.problem.task}, "
             f"{cfg.problem.image if cfg.problem.task != 'synthetic' else 'setting'}"
             f"{'' if cfg.problem.task != 'synthetic' else ' ' + str(cfg.problem.setting)}")
    _print_reference(outcome)
    table = Table(title=title)
    cols = ["method", "grades", "layers", "params", "train loss", "val dB", "test dB", "SSIM",
            "test dB after each grade", "epochs", "seconds", "status"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("method", "status") else "right")
    for name, r in outcome.results.items():
        m = r.metrics
        per_grade = "/".join(_db(g.metrics) for g in r.grades) if len(r.grades) > 1 else ""
        kept = str(len(r.grades)) + (f" (+{len(r.dropped)} dropped)" if r.dropped else "")
        table.add_row(_label(name, r, outcome.networks.get(name)), kept, str(_depth(r)),
                      str(count_params(r.params)),
                      _num(m, "train_loss", ".4g"), _db(m, "val_psnr"), _db(m),
                      _num(m, "test_ssim", ".3f"), per_grade, str(r.epochs),
                      f"{r.seconds:.1f}", _status(r))
    console.print(table)
    _print_settings(outcome)
    _print_adaptive(outcome)
    _print_tries(outcome)
    _print_networks(outcome)
    _print_selection(outcome)
    console.print(f"run directory: {outcome.run_dir}")


def _print_reference(outcome) -> None:
    """Restoration: the observation and the classical baselines, in a table of their own
    (narrow: it fits 80 columns)."""
    problem = outcome.problem
    if not hasattr(problem, "observed_psnr"):
        return
    table = Table(title="Observation and classical baselines")
    for col in ("", "parameter", "test dB", "SSIM"):
        table.add_column(col, justify="left" if col in ("", "parameter") else "right")
    table.add_row("observation", "", f"{problem.observed_psnr():.2f}",
                  f"{problem.observed_ssim():.3f}")
    for b in outcome.baselines:
        param = f"{b.parameter} {b.value:.3g}" if b.value else "-"
        table.add_row(b.name, param, f"{b.psnr:.2f}", f"{b.ssim:.3f}")
    console.print(table)


def _print_settings(outcome) -> None:
    """What each method trained with, where the methods' settings differ (restoration:
    the authors' per-method values by default), and where the values come from."""
    from multigrade.experiments import tasks
    from multigrade.experiments.summaries import recipe_words

    cfg = outcome.config
    if not tasks.get(cfg.problem.task).restoration:
        return
    for name in outcome.results:
        if name not in ("mgdl", "sgdl"):
            continue
        own = cfg if cfg.command == "fit" else cfg.for_method(name)
        source = own.methods.of(name).source
        recipe = ""
        if cfg.methods.of(name).train.keys() - {"lr"}:  # a recipe of its own
            recipe = ", " + recipe_words(dataclasses.asdict(own.train),
                                         cfg.model.grades if name == "mgdl" else 1)
        console.print(f"{name}: lr {own.train.lr:g}, β {own.problem.beta:g}, λ "
                      f"{own.problem.lam:g}{recipe}" + (
                          f" ({source.split(',')[0]}; config.toml's [methods.{name}] says "
                          "where from)" if source else ""),
                      markup=False, highlight=False)


def _print_adaptive(outcome) -> None:
    """Adaptive grades: how many MGDL kept, each grade's gain and why it stopped."""
    from multigrade.experiments.runner import adaptive_summary

    r = outcome.results.get("mgdl")
    a = None if r is None else adaptive_summary(r, outcome.config)
    if a is None:
        return
    gains = ", ".join(f"{g:+.2f}" for g in a["gains_db"][1:])
    console.print(f"adaptive grades: kept {a['kept']} of at most {a['max_grades']}, stopped "
                  f"by {a['stopped_by']} (least gain {a['min_gain_db']:g} dB; validation "
                  f"gain of grades 2…: {gains or '-'} dB"
                  + (f"; grade {a['dropped'][0]} dropped, kept in dropped.npz)"
                     if a["dropped"] else ")"))


def _print_tries(outcome) -> None:
    """A grade trained from several starts: each try's training loss a quarter of the way
    through and at the end, and the try kept."""
    from multigrade.train import tries_at

    for name, r in outcome.results.items():
        for g in r.grades:
            if not g.tries or len(g.tries) < 2:
                continue
            quarter = tries_at(g.tries_history, 0.25) if g.tries_history else None
            console.print(
                f"{name} grade {g.grade}: {len(g.tries)} tries, training loss "
                + (f"{_losses(quarter)} at a quarter, " if quarter else "")
                + f"{_losses(g.tries)} at the end; kept try {g.kept_try}")


def _losses(values) -> str:
    return " / ".join("diverged" if not math.isfinite(v) else f"{v:.4g}" for v in values)


def _label(name: str, result, info: dict | None) -> str:
    if info is None:
        return result.model.name
    return f"{name} (σ {info['sigma']:g})" if "sigma" in info else name


def _print_networks(outcome) -> None:
    """The coordinate-network baselines: their size against MGDL's, rate, and the FFN's σ
    grid with what chose it."""
    from multigrade.experiments.networks import matched

    for name, info in outcome.networks.items():
        size = (f"{info['params']} parameters ({100 * (info['param_ratio'] - 1):+.1f} % of "
                f"MGDL's{'' if matched(info) else ': NOT within 5 %'}), "
                f"{info['layers']} × {info['width']}, lr {info['lr']:g}"
                + (f", ω₀ {info['omega0']:g}" if "omega0" in info else "")
                + (f", {info['features']} frequencies" if "features" in info else ""))
        console.print(f"{name}: {size}")
        if "grid" in info:
            key = "val_psnr" if "val_psnr" in info["grid"][0] else "test_psnr"
            grid = ", ".join(f"σ {g['sigma']:g}: {_db(g, key)}" for g in info["grid"])
            sigmas = [g["sigma"] for g in info["grid"]]
            edge = len(sigmas) > 1 and info["sigma"] in (min(sigmas), max(sigmas))
            console.print(f"{name}: σ {info['sigma']:g} chosen by {info['chosen_by']} "
                          f"({key.replace('_psnr', '')} dB: {grid})"
                          + ("; at the edge of the grid: widen --fourier-sigmas" if edge
                             else ""))


def _print_selection(outcome) -> None:
    """Restoration: what each method kept without the clean image against the oracle's
    choice (the record of best PSNR to the clean image), and the gap."""
    found = {m: s for m, s in outcome.selection.items() if s and "oracle" in s}
    if not found:
        return
    first = next(iter(found.values()))
    how = first["mode"] if first["mode"] != "none" else "none (the fixed budget)"
    if "noise_level" in first:
        how += f", σ_n = {first['noise_level']:.2f}/255 ({first['noise_level_source']})"
    table = Table(title=f"Chosen without the clean image: {how}")
    for col in ("method", "choice dB", "SSIM", "grades", "epochs kept", "stopped by",
                "oracle dB", "oracle grade/epoch", "gap dB"):
        table.add_column(col, justify="left" if col in ("method", "stopped by") else "right")
    for m, s in found.items():
        o = s["oracle"]
        table.add_row(outcome.results[m].model.name, _db(s), _num(s, "test_ssim", ".3f"),
                      str(s["grades"]), ",".join(map(str, s["epochs"])), s["stopped_by"],
                      f"{o['test_psnr']:.2f}", f"{o['grade']}/{o['epoch']}",
                      f"{s['gap']:.2f}")
    console.print(table)


def _print_study(outcome) -> None:
    """A study run from a config file: its outcome per method (the study commands print
    the full tables)."""
    for m, r in outcome.study.items():
        if hasattr(r, "largest_stable_lr"):
            console.print(f"{m}: largest stable learning rate {r.largest_stable_lr}")
        else:
            worst = min((p["jacobian_min"] for p in r.probes), default=math.nan)
            console.print(f"{m}: final train loss {r.metrics['train_loss']:.4g}, smallest "
                          f"eigenvalue of I − ηH {worst:.4g} over {len(r.probes)} probes")
    console.print(f"run directory: {outcome.run_dir}")


# --------------------------------------------------------------------------------------
# demo, run, resume, grow


@app.command()
@_guard
@no_type_check  # Typer passes its own (vendored) Click context as ctx
def demo(
    ctx: typer.Context,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 128,
    epochs: EpochsOpt = 2000,
    quiet: QuietOpt = False,
):
    """The main job: MGDL (4 grades × 2 layers) vs SGDL (8 layers) on the cameraman image."""
    import jax

    from multigrade.experiments import demo_config

    cfg = demo_config().replace(problem={"size": size}, train={"epochs": epochs},
                                x64=bool(jax.config.jax_enable_x64))
    outcome = _execute(ctx, cfg, out, overwrite, quiet)
    from multigrade.report_html import write_report

    console.print(f"report: {write_report([outcome.run_dir], outcome.run_dir / 'report.html')}")


@app.command("run")
@_guard
@no_type_check  # Typer passes its own (vendored) Click context as ctx
def run_cmd(
    ctx: typer.Context,
    config: Annotated[str, typer.Argument(
        help="A config file (TOML), or a run directory to run its config.toml again.")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override one field, e.g. --set train.lr=0.01 (repeatable).")] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
):
    """Run a config file: `mgdl run RUN_DIR/config.toml` reproduces that run."""
    from multigrade.experiments import run_config_file

    with progress_bars(quiet) as progress:
        outcome = run_config_file(config, out, overrides=overrides or [], overwrite=overwrite,
                                  command=command_line(ctx), progress=progress)
    print_outcome(outcome)


RunDirArg = Annotated[str, typer.Argument(help="A run directory.")]


@app.command()
@_guard
@no_type_check  # Typer passes its own (vendored) Click context as ctx
def resume(ctx: typer.Context, run_dir: RunDirArg, quiet: QuietOpt = False):
    """Continue an interrupted run from its checkpoint (same result as never stopping)."""
    from multigrade.experiments import resume as resume_run

    with progress_bars(quiet) as progress:
        outcome = resume_run(run_dir, command=command_line(ctx), progress=progress)
    print_outcome(outcome)


@app.command()
@_guard
@no_type_check  # Typer passes its own (vendored) Click context as ctx
def grow(
    ctx: typer.Context,
    run_dir: RunDirArg,
    grades: Annotated[int, typer.Option("--grades", help="Number of grades to add.")] = 1,
    min_gain: Annotated[float | None, typer.Option(
        "--min-gain", help="A run with --grades auto: a new least gain (dB) for the grades "
        "added.")] = None,
    quiet: QuietOpt = False,
):
    """Add grades to a finished MGDL run (same result as training them all at once); a run
    with --grades auto tries up to --grades more under its rule."""
    from multigrade.experiments import grow as grow_run

    with progress_bars(quiet) as progress:
        outcome = grow_run(run_dir, grades, command=command_line(ctx), progress=progress,
                           min_gain=min_gain)
    print_outcome(outcome)


# --------------------------------------------------------------------------------------
# fit / compare


def _task_command(command: str, task: str) -> None:
    """Registers `mgdl <command> <task>`: its options (`options.task_options`) → a
    `RunConfig` → `experiments.execute` → the table."""
    from multigrade.cli.options import options, task_options
    from multigrade.experiments import tasks

    @(fit_app if command == "fit" else compare_app).command(task)
    @_guard
    @options(*task_options(command, task, tasks.get(task).restoration))
    def run(ctx, **opts):
        out, overwrite, quiet = (opts.pop(k) for k in ("out", "overwrite", "quiet"))
        _execute(ctx, _config(command, task, opts), out, overwrite, quiet)

    entry = tasks.get(task)
    run.__doc__ = entry.summary if command == "fit" else entry.compare or entry.summary
    run.__name__ = f"{command}_{task}"


def _task_commands() -> None:
    """`mgdl fit <task>` and `mgdl compare <task>` for every task with an image."""
    from multigrade.experiments import tasks

    for name in tasks.names(image=True):
        for command in ("fit", "compare"):
            _task_command(command, name)


_task_commands()
