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
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jax
import numpy as np

from multigrade import runs
from multigrade._types import Array
from multigrade.experiments.checkpoints import checkpoint_arrays, load_checkpoint
from multigrade.experiments.config import (
    InputsConfig,
    ModelConfig,
    ProblemConfig,
    RunConfig,
    load_config,
    save_config,
)
from multigrade.experiments.summaries import (
    adaptive_summary,
    add_ssim,
    choice_summary,
    result_summary,
)
from multigrade.nn import count_params
from multigrade.problems import Problem
from multigrade.problems.minibatch import minibatch
from multigrade.train import (
    Callback,
    Checkpoint,
    Divergence,
    FitInterrupted,
    FitResult,
    Selector,
    fit,
)

ProgressFactory = Callable[[str, int], Callback]  # (label, number of grades) -> callback


class RunInterrupted(Exception):  # noqa: N818 (a stop asked for by the user)
    """A run stopped by SIGINT or SIGTERM; what was kept is on disk."""

    def __init__(self, run_dir: Path, signum: int, kept: str):
        self.run_dir, self.signum, self.kept = run_dir, signum, kept
        name = signal.Signals(signum).name
        super().__init__(f"interrupted ({name}): {run_dir} keeps {kept}; continue with "
                         f"`mgdl resume {run_dir}`")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


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
# Building problems and models


def load_clean_image(pcfg: ProblemConfig, inputs: InputsConfig | None = None) -> np.ndarray:
    """The clean image of a problem: from the pinned file when `inputs` pins one (its
    content checked against the pinned SHA-256), else found by name."""
    from multigrade.images import check_pin, load_image

    name = pcfg.image
    if inputs is not None and inputs.image is not None:
        name = check_pin(inputs.image, inputs.image_sha256, inputs.image_version)
    return load_image(name, size=pcfg.size, data_dir=pcfg.data_dir, gray=not pcfg.color)


def pinned(cfg: RunConfig) -> RunConfig:
    """`cfg` with its inputs pinned as they are now: what a new run records (the image
    file's absolute path and SHA-256; a built-in image's name and version)."""
    from multigrade.experiments import tasks
    from multigrade.images import pin

    task, p = tasks.get(cfg.problem.task), cfg.problem
    if not task.image:
        return dataclasses.replace(cfg, inputs=InputsConfig())
    files = {}
    for field in task.files:
        if getattr(p, field) is not None:
            found = pin(getattr(p, field), p.data_dir)
            files.update({field: found["image"], f"{field}_sha256": found["image_sha256"]})
    return dataclasses.replace(cfg, inputs=InputsConfig(**pin(p.image, p.data_dir), **files))


def build_problem(pcfg: ProblemConfig, inputs: InputsConfig | None = None) -> Problem:
    """The problem a config describes (loads the image and the task's files, draws the
    noise), built by its task (`tasks.TASKS`)."""
    from multigrade.experiments import tasks

    task = tasks.get(pcfg.task)
    clean = load_clean_image(pcfg, inputs) if task.image else None
    return task.build(pcfg, clean, _task_files(task, pcfg, inputs))


def _task_files(task, pcfg: ProblemConfig, inputs: InputsConfig | None) -> dict:
    """The files a task reads beside its image (an inpainting mask), loaded at the image's
    size, from their pinned copies when `inputs` pins them."""
    from multigrade.images import check_pin, load_image

    found = {}
    for field in task.files:
        name = getattr(pcfg, field)
        if name is None:
            continue
        pinned = None if inputs is None else getattr(inputs, field)
        if pinned is not None:
            name = check_pin(pinned, getattr(inputs, f"{field}_sha256"))
        found[field] = load_image(name, size=pcfg.size, data_dir=pcfg.data_dir, gray=True)
    return found


def problem_for(cfg: RunConfig) -> Problem:
    """The problem a run trains on: `build_problem`, with the held-out pixels of
    `train.select = "holdout"` (drawn from the noise seed: the same for every method)."""
    problem = build_problem(cfg.problem, cfg.inputs)
    if cfg.train.select == "holdout" and not cfg.is_study:
        key = jax.random.fold_in(jax.random.key(cfg.problem.noise_seed), 1)
        problem = problem.held_out(cfg.train.holdout, key)
    return problem


@dataclasses.dataclass(frozen=True)
class Selection:
    """How a run chooses epochs and grades without the clean image (`multigrade.selection`):
    the rule, the noise level it uses and where that came from, and SURE's probes."""

    mode: str
    sigma: float | None = None  # in image units
    sigma_source: str | None = None  # "given" or "estimated"
    selector: Selector | None = None
    probes: Array | None = None  # (p, *observation shape), for SURE
    eps: float | None = None  # SURE's finite-difference step (image units); None: exact
    holdout: float | None = None  # the fraction of pixels held out

    def divergence(self) -> Divergence | None:
        """What `fit(divergence=...)` takes: SURE's probes and step (None without SURE)."""
        return None if self.probes is None else Divergence(self.probes, self.eps)

    def describe(self) -> dict:
        out = {"mode": self.mode}
        if self.sigma is not None:
            out.update(noise_level=self.sigma * 255, noise_level_source=self.sigma_source)
        if self.selector is not None:
            out.update(self.selector.settings())
        if self.probes is not None:
            out["sure_probes"] = int(self.probes.shape[0])
            out["sure_eps"] = None if self.eps is None else self.eps * 255
        if self.holdout is not None:
            out["holdout"] = self.holdout
        return out


def selection_for(cfg: RunConfig, problem: Problem) -> Selection:
    """The `Selection` of a run: σ given (`train.noise_level`) or estimated from the
    observation, the selector, and SURE's probe vectors (drawn from the noise seed)."""
    from multigrade import selection

    t = cfg.train
    if t.select == "none" or cfg.is_study:
        return Selection("none")
    if t.select == "holdout":
        return Selection("holdout", selector=selection.Holdout(), holdout=t.holdout)
    from multigrade.experiments import tasks

    observed = np.asarray(problem.observed)
    if t.noise_level is not None:
        sigma, source = t.noise_level / 255, "given"
    else:
        sigma, source = tasks.get(cfg.problem.task).noise_level(problem), "estimated"
    sel = selection.selector(t.select, sigma=sigma, n=problem.observed_values())
    probes = eps = None
    if t.select == "sure":
        key = jax.random.fold_in(jax.random.key(cfg.problem.noise_seed), 2)
        probes = jax.random.normal(key, (t.sure_probes, *observed.shape))
        eps = t.sure_eps * sigma if t.sure_eps > 0 else None
    return Selection(t.select, sigma, source, sel, probes, eps)


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate_bytes(pixels: int, channels: int, mcfg: ModelConfig, method: str) -> int:
    """A rough upper estimate of the memory a run takes: the image and its copies, and per
    sample the activations a grade keeps for its backward pass, the cached features and
    the predictions of every split."""
    itemsize = 8 if jax.config.jax_enable_x64 else 4
    depth = mcfg.depth if method == "sgdl" else mcfg.layers_per_grade
    per_sample = itemsize * (mcfg.width * (2 * depth + 4) + 8 * channels)
    return int(pixels * (per_sample * 1.5 + 8 * channels * 6))


def check_memory(pcfg: ProblemConfig, mcfg: ModelConfig, shape: tuple[int, ...] | None,
                 methods: Sequence[str]) -> None:
    """Refuses, before any work, a size whose memory would exceed this machine's."""
    if pcfg.task == "synthetic":
        return
    if shape is None:
        if pcfg.size is None:
            return
        shape = (pcfg.size, pcfg.size, 3 if pcfg.color else 1)
    pixels = int(shape[0]) * int(shape[1])
    channels = int(shape[2]) if len(shape) > 2 else 1
    need = max(estimate_bytes(pixels, channels, mcfg, m) for m in methods)
    have = _physical_memory()
    if have is not None and need > have:
        raise ValueError(f"an image of {shape[0]} × {shape[1]} pixels needs about "
                         f"{need / 2**30:.0f} GiB to train; this machine has "
                         f"{have / 2**30:.0f} GiB (choose a smaller --size)")


# ---------------------------------------------------------------------------------------
# Signals


@dataclasses.dataclass
class _StopFlag:
    signum: int | None = None
    deferring: bool = False  # saving results: a second signal waits for the save to end


@contextlib.contextmanager
def _deferred(flag: _StopFlag) -> Iterator[None]:
    """While results are saved, every signal only sets the flag: the directory is never
    left half-written (the save takes a moment; the run stops after it)."""
    before, flag.deferring = flag.deferring, True
    try:
        yield
    finally:
        flag.deferring = before


@contextlib.contextmanager
def _catch_signals() -> Iterator[_StopFlag]:
    """SIGINT and SIGTERM set a flag that `fit` reads between chunks; a second one raises
    KeyboardInterrupt at once (after the save, while results are saved). Only the main
    thread can own signals: elsewhere (a Dask worker thread) the flag never rises."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.signum is not None and not flag.deferring:
            raise KeyboardInterrupt
        flag.signum = flag.signum or signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Stop(Callback):
    """Asks `fit` to stop (between chunks) once a signal set the flag."""

    def __init__(self, flag: _StopFlag):
        self.flag = flag

    def stop_requested(self) -> bool:
        return self.flag.signum is not None


class _Recorder(_Stop):
    """Writes a run's checkpoints as `fit` makes them, and reads the stop flag."""

    def __init__(self, run_dir: Path, flag: _StopFlag, command: str | None):
        super().__init__(flag)
        self.run_dir, self.command = run_dir, command

    def _save(self, ckpt: Checkpoint) -> None:
        runs.write_npz(self.run_dir / runs.CHECKPOINT, checkpoint_arrays(ckpt))
        runs.write_rows(self.run_dir / runs.HISTORY, ckpt.history)

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._save(checkpoint)
        p = checkpoint.pending
        runs.write_status(self.run_dir, "running", command=self.command,
                          finished=[g.grade for g in checkpoint.grades],
                          pending={"grade": p.grade, "epoch": p.epochs})

    def on_grade_end(self, checkpoint: Checkpoint) -> None:
        self._save(checkpoint)
        runs.save_params(self.run_dir / runs.PARAMS, checkpoint.params, checkpoint.scales)
        runs.write_status(self.run_dir, "running", command=self.command,
                          finished=[g.grade for g in checkpoint.grades])


def _kept(run_dir: Path) -> str:
    """What the status of an interrupted run says was kept, in words."""
    status = runs.read_status(run_dir)
    done = status.get("finished_grades") or []
    parts = [f"grade{'s' if len(done) > 1 else ''} {', '.join(map(str, done))}"] if done \
        else []
    if status.get("pending"):
        p = status["pending"]
        parts.append(f"grade {p['grade']} at epoch {p['epoch']}")
    return " and ".join(parts) or "no finished grade"


# ---------------------------------------------------------------------------------------
# One model into one run directory


def save_result(run_dir: Path, result: FitResult, *, figures: bool = True,
                selection: dict | None = None, adaptive: dict | None = None) -> None:
    """The finished run's files (then the caller marks it completed)."""
    from multigrade import report

    runs.write_npz(run_dir / runs.CHECKPOINT, checkpoint_arrays(result.checkpoint()))
    runs.save_params(run_dir / runs.PARAMS, result.params, result.scales)
    if result.dropped_params:  # grades a rule dropped: kept, not part of the model
        runs.save_params(run_dir / runs.DROPPED, result.dropped_params,
                         [g.scale for g in result.dropped])
    else:  # a grown run may now keep what it dropped before
        (run_dir / runs.DROPPED).unlink(missing_ok=True)
    runs.write_npz(run_dir / runs.PREDICTIONS,
                   {f"grade{k}": p for k, p in enumerate(result.predictions, start=1)})
    runs.write_history(run_dir / runs.HISTORY, result.history)
    runs.write_json(run_dir / runs.METRICS, {
        **result_summary(result), "model_description": result.model.describe(),
        "problem": result.problem.describe(),
        **({} if selection is None else {"selection": selection}),
        **({} if adaptive is None else {"adaptive": adaptive})})
    images = [result.problem.render(p) for p in result.predictions]
    if images and images[0] is not None:
        runs.write_npz(run_dir / runs.IMAGES, {
            **{f"reference/{k}": v for k, v in result.problem.references().items()},
            **{f"grade{k}": im for k, im in enumerate(images, start=1)}})
    if figures:
        report.plot_run(run_dir)


def _fit_into(run_dir: Path, cfg: RunConfig, problem: Problem, *, flag: _StopFlag,
              command: str | None, progress: ProgressFactory | None,
              start: Checkpoint | None = None, sel: Selection | None = None) -> FitResult:
    """Trains `cfg` into `run_dir` (claimed and locked by the caller) and saves the result;
    `sel` is the comparison's selection when the run is one of its methods (computed once
    for all of them), else this run's own."""
    model = cfg.model.build(problem.out_dim)
    save_config(run_dir / runs.CONFIG, cfg)
    runs.write_json(run_dir / runs.ENVIRONMENT, runs.environment())
    finished = [] if start is None else [g.grade for g in start.grades]
    runs.write_status(run_dir, "running", command=command, finished=finished)
    callbacks = [_Recorder(run_dir, flag, command)]
    if progress is not None:
        callbacks.append(progress(cfg.model.method, model.num_grades))
    sel = selection_for(cfg, problem) if sel is None else sel
    try:
        result = fit(model, grade_problems(problem, cfg, model.num_grades),
                     optimizer=cfg.train.optimizers(model.num_grades),
                     epochs=cfg.train.budgets(model.num_grades),
                     key=jax.random.key(cfg.train.seed),
                     record_every=cfg.train.record_every, tol=cfg.train.tol,
                     checkpoint_every=cfg.train.checkpoint_every, callbacks=callbacks,
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


def _failed(run_dir: Path, command: str | None, error: BaseException,
            during: str | None = None) -> None:
    """Records a failure in the status (what was finished, the error's text); a status
    that cannot be written either leaves the error to the caller."""
    text = f"{type(error).__name__}: {error}"
    try:
        status = runs.read_status(run_dir)
    except (OSError, ValueError):  # missing or damaged: nothing finished to carry over
        status = {}
    with contextlib.suppress(OSError):
        runs.write_status(run_dir, "failed", command=command,
                          finished=status.get("finished_grades", []),
                          pending=status.get("pending"),
                          error=f"{during} failed: {text}" if during else text)


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
    model = cfg.model.build(problem.out_dim)
    probes = cfg.train.sure_probes if cfg.train.select == "sure" else 0
    return load_checkpoint(run_dir, model, grade_problems(problem, cfg, model.num_grades),
                           cfg.train.optimizers(model.num_grades), probes=probes)


BATCH_STREAM = 0x6D62  # folded into the seed's key: the mini-batches' draws


def grade_problems(problem: Problem, cfg: RunConfig, grades: int) -> Problem | list[Problem]:
    """What each of `grades` grades fits: `problem`, or with `train.coarse` the first
    grades on coarser grids of it (coarse-to-fine), and with `train.batch` the grades on
    its own grid trained on random mini-batches of its pixels."""
    factors = cfg.train.coarse[:grades]
    full = problem if cfg.train.batch is None else minibatch(
        problem, float(cfg.train.batch),
        jax.random.fold_in(jax.random.key(cfg.train.seed), BATCH_STREAM))
    if not factors:
        return full
    coarse = {f: problem.coarse(f) for f in set(factors)}  # one object per grid
    return [coarse[f] for f in factors] + [full] * (grades - len(factors))


def _replay(cfg: RunConfig, problem: Problem, start: Checkpoint) -> FitResult:
    """A finished run in memory again: its grades are replayed (frozen, not trained)."""
    model = cfg.model.build(problem.out_dim)
    model = dataclasses.replace(model, grades=model.grades[:start.finished])
    result = fit(model, grade_problems(problem, cfg, start.finished),
                 optimizer=cfg.train.optimizers(start.finished),
                 epochs=cfg.train.budgets(start.finished),
                 key=jax.random.key(cfg.train.seed), record_every=cfg.train.record_every,
                 tol=cfg.train.tol, start=start)
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
    runs.write_json(run_dir / runs.ENVIRONMENT, runs.environment())
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

        results["mgdl"] = train_one(run_dir / "mgdl", _method_config(cfg, "mgdl"))
        kept = len(results["mgdl"].grades)  # SGDL has the depth of the grades MGDL kept
        results["sgdl"] = train_one(run_dir / "sgdl", _method_config(cfg, "sgdl", kept))
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


def _method_config(cfg: RunConfig, method: str, grades: int | None = None) -> RunConfig:
    """A comparison's `fit` of MGDL, or of SGDL with the depth of `grades` grades (the
    grades MGDL kept, under adaptive grades)."""
    model = dataclasses.replace(cfg.model, method=method, baselines=(),
                                archs=cfg.model.archs if method == "mgdl" else (),
                                grades=cfg.model.grades if grades is None else grades)
    train = cfg.train if method == "mgdl" else dataclasses.replace(
        cfg.train, min_gain=None, coarse=(), grade_epochs=())  # SGDL: one grade of `epochs`
    return dataclasses.replace(cfg, command="fit", model=model, train=train).for_method(method)


def method_problem(problem: Problem, cfg: RunConfig) -> Problem:
    """A comparison's problem as one method trains it: the same observation, with that
    method's splitting weights β and λ (`[methods.<method>]`)."""
    from multigrade._types import as_float
    from multigrade.problems import Restoration

    if not isinstance(problem, Restoration):
        return problem
    if float(problem.beta) == cfg.problem.beta and float(problem.lam) == cfg.problem.lam:
        return problem
    return dataclasses.replace(problem, beta=as_float(cfg.problem.beta),
                               lam=as_float(cfg.problem.lam))


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
    from multigrade.experiments.config import apply_overrides

    cfg = apply_overrides(load_config(path), list(overrides))
    _enable_x64(cfg)
    return execute(cfg, out, overwrite=overwrite, command=command, progress=progress)
