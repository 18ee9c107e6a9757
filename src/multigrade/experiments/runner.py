"""Orchestration: one call per user-level action, each writing a run directory.

- `execute(cfg, out)`: a `fit` (one model) or a `compare` (MGDL and SGDL of the same depth,
  with the classical baselines for restoration) into a new run directory;
- `resume(run_dir)`: continues an interrupted run from its checkpoint (the result equals
  an uninterrupted run's);
- `grow(run_dir, grades)`: adds grades to a finished MGDL run;
- `load_result(run_dir)`: a finished run back in memory.

Each returns an `Outcome`. Training goes through `fit`; files go through `runs`; figures
through `report`. While a run trains, SIGINT and SIGTERM ask `fit` to stop at the end of
the current chunk: the grade is checkpointed, the status says "interrupted", and
`RunInterrupted` tells the caller what was kept (a second signal stops at once, keeping the
last checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jax

from multigrade import runs
from multigrade.experiments.building import (
    Selection,
    build_problem,
    check_memory,
    estimate_bytes,
    fit_arguments,
    grade_problems,
    load_clean_image,
    method_config,
    method_problem,
    pinned,
    problem_for,
    selection_for,
)
from multigrade.experiments.checkpoints import load_checkpoint
from multigrade.experiments.config import RunConfig
from multigrade.experiments.configfile import load_config, save_config
from multigrade.experiments.recording import _failed, _kept, _Recorder, save_result
from multigrade.experiments.signals import (
    RunInterrupted,
    _catch_signals,
    _deferred,
    _Stop,
    _StopFlag,
)
from multigrade.experiments.summaries import (
    adaptive_summary,
    add_ssim,
    choice_summary,
    result_summary,
)
from multigrade.nn import count_params
from multigrade.problems import Problem
from multigrade.train import (
    Callback,
    Checkpoint,
    FitInterrupted,
    FitResult,
    fit,
)

ProgressFactory = Callable[[str, int], Callback]  # (label, number of grades) -> callback

# Where the pieces live (re-exported here: the actions' callers import them from runner)
__all__ = ["RunInterrupted", "Outcome", "Selection", "build_problem", "check_memory",
           "estimate_bytes", "execute", "fit_arguments", "grade_problems", "grow",
           "load_clean_image", "load_result", "method_config", "method_problem", "pinned",
           "problem_for", "restoration_baselines", "resume", "run_config_file",
           "save_result", "selection_for"]


@dataclasses.dataclass
class Outcome:
    """What an action produced: the run directory, its config, one result per method and,
    for restoration comparisons, the observation and the classical baselines."""

    run_dir: Path
    config: RunConfig
    results: dict[str, FitResult]
    problem: Problem
    baselines: list = dataclasses.field(default_factory=list)
    study: dict | None = None  # lr-sweep / spectrum: {method: SweepResult or FitResult}
    selection: dict = dataclasses.field(default_factory=dict)  # method: choice_summary
    networks: dict = dataclasses.field(default_factory=dict)  # baseline: networks.run_baselines


# ---------------------------------------------------------------------------------------
# One model into one run directory


def _fit_into(run_dir: Path, cfg: RunConfig, problem: Problem, *, flag: _StopFlag,
              command: str | None, progress: ProgressFactory | None,
              start: Checkpoint | None = None, sel: Selection | None = None) -> FitResult:
    """Trains `cfg` into `run_dir` (claimed and locked by the caller) and saves the result;
    `sel` is the comparison's selection when the run is one of its methods (computed once
    for all of them), else this run's own."""
    args = fit_arguments(cfg, problem)
    model = args["model"]
    save_config(run_dir / runs.CONFIG, cfg)
    runs.record_environment(run_dir, resumed=start is not None)
    finished = [] if start is None else [g.grade for g in start.grades]
    runs.write_status(run_dir, "running", command=command, finished=finished)
    callbacks = [_Recorder(run_dir, flag, command)]
    if progress is not None:
        callbacks.append(progress(cfg.model.method, model.num_grades))
    sel = selection_for(cfg, problem) if sel is None else sel
    try:
        result = fit(**args, checkpoint_every=cfg.train.checkpoint_every, callbacks=callbacks,
                     start=start, select=sel.selector, divergence=sel.divergence(),
                     step_size=cfg.train.step_size(), adaptive=cfg.train.adaptive())
    except (FitInterrupted, KeyboardInterrupt):
        status = runs.read_status(run_dir)
        runs.write_status(run_dir, "interrupted", command=command,
                          finished=status.get("finished_grades", []),
                          pending=status.get("pending"))
        raise RunInterrupted(run_dir, flag.signum or signal.SIGINT, _kept(run_dir)) from None
    except BaseException as e:
        _failed(run_dir, command, e)
        raise
    try:
        with _deferred(flag):
            add_ssim(result)
            save_result(run_dir, result, selection=choice_summary(result, sel),
                        adaptive=adaptive_summary(result, cfg))
            runs.write_status(run_dir, "completed", command=command,
                              finished=[g.grade for g in result.grades])
    except BaseException as e:
        _failed(run_dir, command, e, "saving the results")
        if isinstance(e, OSError):
            raise runs.RunDirError(f"saving the results in {run_dir} failed ({e}); its "
                                   "checkpoint is kept and its status says failed: `mgdl "
                                   f"resume {run_dir}` tries again") from e
        raise
    return result


def _load_or_continue(run_dir: Path, cfg: RunConfig, problem: Problem, *, flag, command,
                      progress, sel: Selection) -> FitResult:
    """A method's run directory inside a comparison (whose lock the caller holds): reuse
    it when completed, continue it when interrupted, start it when absent. A sub-run that
    was grown since (`grow`) is read with its own config."""
    parent = runs.owner(run_dir.parent)["id"]
    if not runs.is_run_dir(run_dir):
        with runs.claim(run_dir, "run", parent=parent, command=command,
                        overwrite=run_dir.is_dir()):
            return _fit_into(run_dir, cfg, problem, flag=flag, command=command,
                             progress=progress, sel=sel)
    with runs.open_dir(run_dir, ("run",), command=command)[0]:
        state = runs.read_status(run_dir)["state"]
        own = load_config(run_dir) if (run_dir / runs.CONFIG).is_file() else cfg
        if own.model.grades != cfg.model.grades:  # grown: its grades and nothing else
            cfg = cfg.replace(model={"grades": own.model.grades})
        start = _checkpoint_for(run_dir, cfg, problem)
        if state == "completed":
            return _replay(cfg, problem, start)
        return _fit_into(run_dir, cfg, problem, flag=flag, command=command,
                         progress=progress, start=start, sel=sel)


def _checkpoint_for(run_dir: Path, cfg: RunConfig, problem: Problem) -> Checkpoint | None:
    if not (run_dir / runs.CHECKPOINT).is_file():
        return None
    args = fit_arguments(cfg, problem)
    probes = cfg.train.sure_probes if cfg.train.select == "sure" else 0
    return load_checkpoint(run_dir, args["model"], args["problem"], args["optimizer"],
                           probes=probes)


def _replay(cfg: RunConfig, problem: Problem, start: Checkpoint) -> FitResult:
    """A finished run in memory again: its grades are replayed (frozen, not trained)."""
    result = fit(**fit_arguments(cfg, problem, start.finished), start=start)
    result.aux = start.aux
    return result


# ---------------------------------------------------------------------------------------
# Actions


def _methods(cfg: RunConfig) -> tuple[str, ...]:
    return ("mgdl", "sgdl") if cfg.command == "compare" else (cfg.model.method,)


def _prepare_problem(cfg: RunConfig) -> Problem:
    check_memory(cfg.problem, cfg.model, None, _methods(cfg))
    problem = problem_for(cfg)
    image = problem.target_image()
    if image is not None:
        check_memory(cfg.problem, cfg.model, image.shape, _methods(cfg))
    return problem


def store_kind(cfg: RunConfig) -> str:
    """The run store's kind of the directory `cfg` runs in."""
    return "comparison" if cfg.command == "compare" else "study" if cfg.is_study else "run"


def default_kind(cfg: RunConfig) -> str:
    """The run directory's default name prefix: `<command>-<task>[-<method>]`."""
    kind = f"{cfg.command}-{cfg.problem.task}"
    return f"{kind}-{cfg.model.method}" if cfg.command == "fit" else kind


def execute(cfg: RunConfig, out: str | Path | None = None, *, overwrite: bool = False,
            command: str | None = None, progress: ProgressFactory | None = None) -> Outcome:
    """Runs `cfg` into a new run directory `out` (default `runs/<kind>-<time>-<id>`).

    The inputs are pinned (`pinned`), the problem built (bad input is refused) and `out`
    checked, claimed and locked (`runs.claim`) before any training starts; the lock is
    held until the run ends.
    """
    cfg = pinned(cfg)
    if cfg.command == "fit":
        cfg = cfg.for_method(cfg.model.method)  # its [methods.<method>] values, in place
    problem = _prepare_problem(cfg)
    where = out if out is not None else runs.default_out(default_kind(cfg))
    with runs.claim(where, store_kind(cfg), overwrite=overwrite, command=command) as held:
        return _execute(held.path, cfg, problem, command=command, progress=progress)


def _execute(run_dir: Path, cfg: RunConfig, problem: Problem, *, command, progress,
             start: Checkpoint | None = None) -> Outcome:
    if cfg.is_study:
        return _study_into(run_dir, cfg, problem, command=command, progress=progress)
    with _catch_signals() as flag:
        if cfg.command == "fit":
            result = _fit_into(run_dir, cfg, problem, flag=flag, command=command,
                               progress=progress, start=start)
            return Outcome(run_dir, cfg, {cfg.model.method: result}, problem,
                           selection={cfg.model.method: _selection_of(run_dir).get("selection")})
        return _compare_into(run_dir, cfg, problem, flag=flag, command=command,
                             progress=progress)


def _compare_into(run_dir: Path, cfg: RunConfig, problem: Problem, *, flag, command,
                  progress) -> Outcome:
    from multigrade import report

    save_config(run_dir / runs.CONFIG, cfg)
    runs.record_environment(run_dir)
    runs.write_status(run_dir, "running", command=command)
    results, baselines, networks = {}, [], {}
    try:
        sel = selection_for(cfg, problem)  # once: every method and baseline uses it
        baselines = restoration_baselines(problem, sel)
        if baselines:
            runs.write_npz(run_dir / "baselines.npz",
                           {f"baseline{i}": b.image for i, b in enumerate(baselines)})
            runs.write_json(run_dir / "baselines.json", [
                {"name": b.name, b.parameter: b.value, "choice": b.choice,
                 "test_psnr": b.psnr, "test_ssim": b.ssim} for b in baselines])
        def train_one(where: Path, sub: RunConfig) -> FitResult:
            return _load_or_continue(where, sub, method_problem(problem, sub), flag=flag,
                                     command=command, progress=progress, sel=sel)

        results["mgdl"] = train_one(run_dir / "mgdl", method_config(cfg, "mgdl"))
        kept = len(results["mgdl"].grades)  # SGDL has the depth of the grades MGDL kept
        results["sgdl"] = train_one(run_dir / "sgdl", method_config(cfg, "sgdl", kept))
        if cfg.model.baselines:
            from multigrade.experiments.networks import run_baselines
            found, networks = run_baselines(run_dir, cfg, problem,
                                            count_params(results["mgdl"].params), train_one)
            results.update(found)
    except RunInterrupted as e:
        runs.write_status(run_dir, "interrupted", command=command,
                          finished=[], methods_completed=list(results))
        raise RunInterrupted(run_dir, e.signum, f"{', '.join(results) or 'no method'} "
                             f"completed, {e.run_dir.name}: {e.kept}") from None
    except KeyboardInterrupt:
        runs.write_status(run_dir, "interrupted", command=command,
                          finished=[], methods_completed=list(results))
        raise RunInterrupted(run_dir, flag.signum or signal.SIGINT,
                             f"{', '.join(results) or 'no method'} completed") from None
    except BaseException as e:
        _failed(run_dir, command, e)
        raise
    dirs = {m: run_dir / networks.get(m, {}).get("dir", m) for m in results}
    try:
        with _deferred(flag):
            runs.write_json(run_dir / "comparison.json",
                            {m: {**result_summary(r), **_selection_of(dirs[m]),
                                 **({"baseline": networks[m]} if m in networks else {})}
                             for m, r in results.items()})
            report.plot_history(dirs, run_dir / runs.HISTORY_PLOT)
            report.plot_comparison(run_dir)
            runs.write_status(run_dir, "completed", command=command,
                              methods_completed=list(results))
    except BaseException as e:
        _failed(run_dir, command, e, "saving the comparison")
        raise
    return Outcome(run_dir, cfg, results, problem, baselines,
                   selection={m: _selection_of(dirs[m]).get("selection") for m in results},
                   networks=networks)


def _selection_of(run_dir: Path) -> dict:
    """`{"selection": ...}` of a completed method's run directory ({} if it has none)."""
    path = run_dir / runs.METRICS
    found = runs.read_json(path).get("selection") if path.is_file() else None
    return {} if found is None else {"selection": found}


def _study_into(run_dir: Path, cfg: RunConfig, problem: Problem, *, command,
                progress) -> Outcome:
    """A GD study into its run directory: `sweep.*` or `spectrum.*` (see `studies`). A study
    keeps no checkpoint: an interrupted one is run again."""
    save_config(run_dir / runs.CONFIG, cfg)
    runs.write_status(run_dir, "running", command=command)
    with study_status(run_dir, command) as flag:
        return _study(run_dir, cfg, problem, command=command, progress=progress,
                      callbacks=[_Stop(flag)])


@contextlib.contextmanager
def study_status(run_dir: Path, command: str | None) -> Iterator[_StopFlag]:
    """Catches SIGINT and SIGTERM for a study (its fits stop between chunks, never inside a
    JAX call: a KeyboardInterrupt there crashed or hung the process) and writes its status
    when it does not finish: interrupted (`RunInterrupted`; a study keeps no checkpoint, so
    it is run again) or failed with the error."""
    flag = _StopFlag()
    try:
        with _catch_signals() as flag:
            yield flag
    except (FitInterrupted, KeyboardInterrupt):
        with contextlib.suppress(OSError):
            runs.write_status(run_dir, "interrupted", command=command)
        raise RunInterrupted(run_dir, flag.signum or signal.SIGINT, "no result (a study keeps "
                             "no checkpoint: resuming runs it again)") from None
    except BaseException as e:
        _failed(run_dir, command, e)
        raise


def _study(run_dir: Path, cfg: RunConfig, problem: Problem, *, command, progress,
           callbacks) -> Outcome:
    from multigrade.experiments import studies

    if cfg.command == "lr-sweep":
        found = studies.run_lr_sweep(cfg, problem, progress=progress, callbacks=callbacks)
        studies.save_sweep(run_dir, found, command)
    else:
        found = studies.run_spectrum(cfg, problem, progress=progress, callbacks=callbacks)
        studies.save_spectrum(run_dir, found, command)
    return Outcome(run_dir, cfg, {}, problem, study=found)


def restoration_baselines(problem: Problem, sel: Selection | None = None) -> list:
    """The task's classical baselines (`Task.baselines`; TV, Wiener, biharmonic), [] for a
    task without: tuned by oracle, and when the run selects without the clean image
    (`sel`), also by each no-reference rule the task allows (SURE for denoising, the
    discrepancy principle), with the run's noise level (estimated when the run's rule
    needs none)."""
    from multigrade.experiments import tasks

    task = tasks.TASKS.get(getattr(problem, "task", ""))
    if task is None or task.baselines is None:
        return []
    blind = sel is not None and sel.mode != "none"
    sigma = None
    if blind:
        sigma = sel.sigma if sel.sigma is not None else task.noise_level(problem)
    choices = ["oracle"] + ([c for c in ("sure", "discrepancy") if c in task.selections]
                            if blind else [])
    return task.baselines(problem, sigma, choices)


def _enable_x64(cfg: RunConfig) -> None:
    if cfg.x64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def comparison_of(run_dir: str | Path) -> Path | None:
    """The comparison directory whose sub-run `run_dir` is (`mgdl/`, `sgdl/`, a baseline),
    or None; a comparison made before markers existed counts too."""
    run_dir = Path(run_dir)
    parent = run_dir.parent
    mine, theirs = runs.owner(run_dir), runs.owner(parent)
    if theirs is None:
        return parent if mine is None and runs.kind_of(parent) == "comparison" else None
    if theirs["kind"] == "comparison" and mine is not None and mine.get("parent") == \
            theirs["id"]:
        return parent
    return None


def resume(run_dir: str | Path, *, command: str | None = None,
           progress: ProgressFactory | None = None) -> Outcome:
    """Continues an interrupted (or failed) run in its directory; a completed run is
    loaded as it is. The result equals that of an uninterrupted run.

    The directory must be one the store made (an older version's is adopted); it is
    locked while the run continues, so a second `resume`, or one of a run still alive, is
    refused naming the process that holds it. A comparison's sub-run is continued through
    its comparison."""
    whole = comparison_of(run_dir)
    if whole is not None:
        raise runs.RunDirError(f"{run_dir} is part of the comparison {whole}: `mgdl resume "
                               f"{whole}` continues it (and the comparison)")
    held, _ = runs.open_dir(run_dir, command=command, what="resume")
    with held:
        run_dir = held.path
        cfg = load_config(run_dir)
        _enable_x64(cfg)
        problem = _prepare_problem(cfg)
        if cfg.command == "fit":
            start = _checkpoint_for(run_dir, cfg, problem)
            if runs.read_status(run_dir)["state"] == "completed" and start is not None:
                return Outcome(run_dir, cfg, {cfg.model.method: _replay(cfg, problem, start)},
                               problem)
            return _execute(run_dir, cfg, problem, command=command, progress=progress,
                            start=start)
        return _execute(run_dir, cfg, problem, command=command, progress=progress)


def grow(run_dir: str | Path, grades: int, *, command: str | None = None,
         progress: ProgressFactory | None = None, min_gain: float | None = None) -> Outcome:
    """Adds `grades` grades to a finished MGDL run, in its directory; the result equals
    training all grades in one go. A run with adaptive grades tries up to `grades` more
    under its rule (with `min_gain`, a new least gain): one that stopped for no gain
    starts again from the grade it dropped.

    Growing a comparison grows its MGDL (`DIR/mgdl`, also when named directly) and updates
    the comparison in the same step (its `comparison.json` and figures), under the
    comparison's lock."""
    if isinstance(grades, bool) or not isinstance(grades, int) or grades < 1:
        raise ValueError(f"--grades must be at least 1, got {grades}")
    run_dir = Path(run_dir)
    if runs.kind_of(run_dir) == "comparison":
        run_dir = run_dir / "mgdl"
    whole = comparison_of(run_dir)
    outer = runs.open_dir(whole, ("comparison",), command=command, what="grow")[0] \
        if whole is not None else contextlib.nullcontext()
    with outer:
        with runs.open_dir(run_dir, ("run",), command=command, what="grow")[0]:
            outcome = _grow(run_dir, grades, command=command, progress=progress,
                            min_gain=min_gain)
        if whole is not None:
            _refresh_comparison(whole, run_dir, outcome.results["mgdl"])
    return outcome


def _grow(run_dir: Path, grades: int, *, command, progress, min_gain) -> Outcome:
    cfg = load_config(run_dir)
    if cfg.command != "fit" or cfg.model.method != "mgdl":
        raise ValueError(f"{run_dir} is not an MGDL run: grow adds grades to MGDL")
    if runs.read_status(run_dir)["state"] != "completed":
        raise ValueError(f"{run_dir} is not completed: `mgdl resume {run_dir}` first")
    _enable_x64(cfg)
    problem = _prepare_problem(cfg)
    start = _checkpoint_for(run_dir, cfg, problem)
    if start.grades and start.grades[-1].status == "diverged":
        raise ValueError(f"{run_dir} diverged in grade {start.finished}: no grade can be "
                         "added on top of it")
    adaptive = cfg.train.min_gain is not None
    if min_gain is not None and not adaptive:
        raise ValueError(f"{run_dir} has a fixed number of grades: --min-gain applies to a "
                         "run made with --grades auto")
    if start.finished < cfg.model.grades and not adaptive:
        raise ValueError(f"{run_dir} stopped after {start.finished} of {cfg.model.grades} "
                         "grades; grow continues only a run that trained every grade")
    train = {} if min_gain is None else {"min_gain": min_gain}
    grown = cfg.replace(model={"grades": start.finished + grades}, train=train)
    return _execute(run_dir, grown, problem, command=command, progress=progress, start=start)


def _refresh_comparison(whole: Path, sub: Path, result: FitResult) -> None:
    """A comparison after its sub-run `sub` was grown: that method's entry of
    `comparison.json` (its baseline information kept) and the figures, from the files."""
    from multigrade import report

    path = whole / "comparison.json"
    comparison = runs.read_json(path) if path.is_file() else {}
    method = result.model.name if result.model.name in comparison else sub.name
    entry = comparison.get(method, {})
    comparison[method] = {**result_summary(result), **_selection_of(sub),
                          **({"baseline": entry["baseline"]} if "baseline" in entry else {})}
    runs.write_json(path, comparison)
    report.plot_history(report.compared_dirs(whole), whole / runs.HISTORY_PLOT)
    report.plot_comparison(whole)
    status = runs.read_status(whole)
    runs.write_status(whole, status["state"], command=status.get("command"),
                      **{k: v for k, v in status.items() if k in ("methods_completed",)},
                      grown={method: len(result.grades)})


def load_result(run_dir: str | Path) -> FitResult:
    """A completed single-model run back in memory (parameters, history, predictions)."""
    run_dir = Path(run_dir)
    if runs.read_status(run_dir)["state"] != "completed":
        raise ValueError(f"{run_dir} is not completed")
    cfg = load_config(run_dir)
    if cfg.command != "fit":
        raise ValueError(f"{run_dir} is a comparison: load its mgdl/ or sgdl/ directory")
    _enable_x64(cfg)
    problem = problem_for(cfg)
    return _replay(cfg, problem, _checkpoint_for(run_dir, cfg, problem))


def run_config_file(path: str | Path, out: str | Path | None = None, *,
                    overrides: Sequence[str] = (), overwrite: bool = False,
                    command: str | None = None,
                    progress: ProgressFactory | None = None) -> Outcome:
    """`mgdl run CONFIG.toml`: a config file (or a run directory's), with overrides."""
    from multigrade.experiments.configfile import apply_overrides

    cfg = apply_overrides(load_config(path), list(overrides))
    _enable_x64(cfg)
    return execute(cfg, out, overwrite=overwrite, command=command, progress=progress)
