"""`fit` and `fit_sweep`: the arguments checked, then the loop."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import jax
import numpy as np
import optax

from multigrade._types import PRNGKeyArray, PyTree
from multigrade.model import GradeModel
from multigrade.problems import Problem
from multigrade.problems.curriculum import (
    Curriculum,
    every_problem,
    final_problem,
    stage_spans,
)
from multigrade.problems.minibatch import MiniBatch, unbatched
from multigrade.train._divergence import _check_probes
from multigrade.train._engine import _Engine
from multigrade.train._loop import TRY_RULES, _Loop
from multigrade.train._results import Callback, Checkpoint, FitResult
from multigrade.train._rules import (
    DIVERGENCE_FACTOR,
    AdaptiveGrades,
    Divergence,
    Probe,
    Selector,
    StepSize,
)


def _per_grade(value, num_grades: int, what: str) -> list:
    # An Optax transformation is itself a tuple: it is one value, not one per grade.
    if isinstance(value, (list, tuple)) and not isinstance(value, optax.GradientTransformation):
        if len(value) != num_grades:
            raise ValueError(f"{what}: {len(value)} values given for {num_grades} grades")
        return list(value)
    return [value] * num_grades


def _whole(value, what: str) -> int:
    """`value` as an int if it is a whole number (10, 10.0, np.int64(10)); 10.7 is refused
    rather than truncated."""
    if not isinstance(value, bool) and isinstance(value, numbers.Real) \
            and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{what} must be a whole number, got {value!r}")


def _transformation(tx):
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return tx
    raise TypeError(f"optimizer must be an Optax transformation such as optax.adam(1e-3) "
                    f"(plain GD: optax.sgd(lr)), got {tx!r}")


def _validate(model, problem, budgets, record_every, window, tol, block, checkpoint_every):
    if block == "auto":
        block = 4096 if jax.default_backend() == "cpu" else None
    elif block is not None and (not isinstance(block, int) or block < 1):
        raise ValueError(f"block must be a positive integer, None or 'auto', got {block!r}")
    if record_every < 1 or window < 1:
        raise ValueError("record_every and window must be at least 1")
    for k, e in enumerate(budgets):
        if e < 1:
            raise ValueError(f"grade {k + 1}: epochs must be at least 1, got {e}")
    if tol is not None and not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite non-negative number, got {tol}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    if problem.out_dim != model.out_dim:
        raise ValueError(f"the problem has {problem.out_dim} outputs, the model {model.out_dim}")
    return block


def fit(
    model: GradeModel,
    problem: Problem | Curriculum | Sequence[Problem | Curriculum],
    *,
    optimizer: optax.GradientTransformation | Sequence[optax.GradientTransformation],
    epochs: int | Sequence[int],
    key: PRNGKeyArray,
    record_every: int = 10,
    window: int = 20,
    tol: float | None = None,
    block: int | None | str = "auto",
    probe: Probe | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_every: int | None = None,
    start: Checkpoint | None = None,
    init_params: Sequence[PyTree | None] | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
    select: Selector | None = None,
    divergence: Divergence | None = None,
    step_size: StepSize | None = None,
    adaptive: AdaptiveGrades | None = None,
    tries: int | Sequence[int] = 1,
    try_rule: str = "loss",
) -> FitResult:
    """Trains `model` on `problem`, grade by grade.

    Args:
        model: a `MultiGrade` (SGDL is a one-grade model) or a `MultiScale`.
        problem: a problem object (`multigrade.problems`), or one per grade: coarse-to-
            fine grades, each fitted on its own grid of the same problem (e.g.
            `[p.coarse(4), p.coarse(2), p, p]` for a denoising or deblurring problem `p`);
            every finished grade is frozen again on the next grade's grid when it changes, the
            last grade's problem is the result's, and each grade's prediction and metrics
            in the result are measured on it. A grade's problem may be a
            `problems.MiniBatch` of the grid's problem: that grade takes each step on a
            random batch of pixels (its "epochs" are steps). A grade's problem may be a
            `problems.Curriculum`: that grade's network steps on coarser grids of its
            problem first (the stages' epochs count in the grade's), then on its own.
        optimizer: any Optax transformation (plain GD is `optax.sgd(lr)`), or one per grade.
        epochs: the maximum number of epochs (full-batch steps), or one per grade. A budget
            that is not a multiple of `record_every` ends with a shorter last record.
        key: initialises grade k with `model.grade_key(key, k)`.
        record_every: epochs between records of the metrics (SPEC's r).
        window: records per comparison of the stopping rule (20 in the paper).
        tol: the stopping rule's tolerance; None trains every grade for its full budget.
        block: evaluate grades on row blocks of this many samples (faster on CPUs, same
            numbers up to summation order); None evaluates all samples at once; `"auto"`
            is 4096 on a CPU and None on an accelerator.
        probe: a `Probe`: a function called along training with the grade's loss.
        callbacks: `Callback`s: progress, checkpoints, interruption.
        checkpoint_every: epochs between `on_checkpoint` calls within a grade (rounded up to
            a multiple of `record_every`); None: only at grade ends and interruptions.
        start: a `Checkpoint` to continue from: its finished grades are kept (not
            retrained) and its unfinished grade resumes where it stopped. The result equals
            that of an uninterrupted run with the same arguments.
        init_params: initial parameters per grade (None entries: drawn from `key`), for
            warm starts and for comparisons with other code from the same start.
        divergence_factor: a grade diverges when its loss is non-finite or exceeds its
            initial loss by this factor.
        select: a `Selector`: which epoch of each grade is kept, and how many grades, from
            the records alone (see `multigrade.selection`). Records then end chunks. With
            coarse-to-fine problems it judges the grades on the last problem's grid (their
            records measure the observation itself); coarser grades train their budgets.
        divergence: a `Divergence`: for a problem with an observation y (restoration),
            every record gets the Monte-Carlo divergence of the training that SURE needs.
        step_size: choose (and watch) GD's rate from each grade's Hessian (`StepSize`).
        adaptive: `AdaptiveGrades`: add grades while each gains enough.
        tries: train a grade this many times (or per grade), from its own initialisation
            and then from `fold_in(model.grade_key(key, k), t)` for try t, and keep the
            try whose kept state has the least training loss (no reference needed: a
            restart against an unlucky start). The history keeps the chosen try's
            records; its `GradeSummary` has every try's loss (`tries`), its features'
            dead fraction and effective rank on the grade's grid (`tries_dead`,
            `tries_erank`: `metrics.feature_stats`), every try's records as columns
            (`tries_history`; `tries_at` reads them as a race would), which it kept
            (`kept_try`) and the seconds of all of them.
        try_rule: which try a grade of several keeps: `"loss"` (least training loss) or
            `"erank"` (the highest effective rank of its features: what the next grade
            learns from; a diverged try is never kept while another is not).

    Returns:
        A `FitResult`. A diverged grade keeps its history and no later grade is trained.

    Raises:
        FitInterrupted: a callback asked to stop; its `checkpoint` continues the run.
    """
    k_grades = model.num_grades
    given = _problems(problem, k_grades)
    problems = [final_problem(p) for p in given]
    problem = problems[0]
    txs = [_transformation(t) for t in _per_grade(optimizer, k_grades, "optimizer")]
    budgets = [_whole(e, "epochs") for e in _per_grade(epochs, k_grades, "epochs")]
    block = _validate(model, problem, budgets, record_every, window, tol, block,
                      checkpoint_every)
    stages = _stages(given, budgets)
    if probe is not None and (probe.every < 1 or probe.every % record_every):
        raise ValueError(f"probe every {probe.every} epochs: must be a positive multiple of "
                         f"record_every ({record_every})")
    if init_params is not None and len(init_params) != k_grades:
        raise ValueError(f"init_params: {len(init_params)} entries for {k_grades} grades")
    n_tries = _tries(tries, k_grades, init_params, try_rule)
    if start is not None and start.finished > k_grades:
        raise ValueError(f"the checkpoint has {start.finished} grades, the model {k_grades}")
    if divergence is not None and len({id(unbatched(p)) for p in every_problem(given)}) > 1:
        raise ValueError("divergence probes follow one observation through every grade, "
                         "not a grid per grade or stage")
    if divergence is not None and any(isinstance(p, MiniBatch) for p in problems):
        raise ValueError("divergence probes follow full-batch training: no mini-batch grades")
    probes_b = None if divergence is None else _check_probes(problem, divergence.probes)
    if select is not None and select.needs_divergence and probes_b is None:
        raise ValueError(f"{type(select).__name__} needs divergence probes (fit(divergence=...))")
    if step_size is not None and step_size.every is not None \
            and step_size.every % record_every:
        raise ValueError(f"sharpness estimates every {step_size.every} epochs: must be a "
                         f"multiple of record_every ({record_every})")
    loop = _Loop(model=model, problem=problem, engine=_Engine(None), txs=txs, budgets=budgets,
                 key=key, record_every=record_every, window=window, tol=tol, block=block,
                 probe=None if probe is None else probe.fn,
                 probe_every=None if probe is None else probe.every, callbacks=tuple(callbacks),
                 checkpoint_every=checkpoint_every, divergence_factor=divergence_factor,
                 init_params=init_params, select=select, probes_b=probes_b,
                 probe_eps=None if divergence is None else divergence.eps, step_size=step_size,
                 gain=None if adaptive is None else (adaptive.metric, float(adaptive.min_gain)),
                 problems=problems, stages=stages, tries=n_tries, try_rule=try_rule)
    return loop.run(start)[0]


def _stages(problems: list, budgets: list[int]) -> list[list]:
    """Each grade's stages `(problem, first epoch, end epoch)` (one without a curriculum)."""
    out = []
    for k, (p, b) in enumerate(zip(problems, budgets)):
        try:
            out.append(stage_spans(p, b))
        except ValueError as e:
            raise ValueError(f"grade {k + 1}: {e}") from None
    return out


def _tries(tries, num_grades: int, init_params, rule: str = "loss") -> list[int]:
    """Each grade's tries, checked: at least one, one from a given initialisation, and a
    known rule to keep one by."""
    if rule not in TRY_RULES:
        raise ValueError(f"unknown try_rule {rule!r}; supported: {', '.join(TRY_RULES)}")
    out = [_whole(t, "tries") for t in _per_grade(tries, num_grades, "tries")]
    for k, t in enumerate(out):
        if t < 1:
            raise ValueError(f"grade {k + 1}: tries must be at least 1, got {t}")
        if t > 1 and init_params is not None and init_params[k] is not None:
            raise ValueError(f"grade {k + 1}: {t} tries from one given initialisation "
                             "(init_params) would all be the same")
    return out


def _problems(problem, num_grades: int) -> list:
    """One problem per grade: the same one, or those given (checked alike)."""
    if not isinstance(problem, (list, tuple)):
        return [problem] * num_grades
    if len(problem) != num_grades:
        raise ValueError(f"problem: {len(problem)} problems given for {num_grades} grades")
    first = unbatched(final_problem(problem[0]))
    for p in (unbatched(final_problem(q)) for q in problem[1:]):
        if type(p) is not type(first) or (p.in_dim, p.out_dim) != (first.in_dim,
                                                                   first.out_dim):
            raise ValueError("the problems of a coarse-to-fine fit must be one problem on "
                             "several grids (same kind, inputs and outputs)")
    return list(problem)


def fit_sweep(
    model: GradeModel,
    problem: Problem,
    learning_rates: Sequence[float],
    *,
    epochs: int | Sequence[int],
    key: PRNGKeyArray,
    optimizer: Callable[..., optax.GradientTransformation] = optax.sgd,
    record_every: int = 10,
    block: int | None | str = "auto",
    callbacks: Sequence[Callback] = (),
) -> list[FitResult]:
    """Trains one model per learning rate, all in one compiled, vmapped program.

    Every member starts from the same initialisation (`key`) and differs only in its
    learning rate; the results equal separate `fit` runs with `optimizer(lr)`. Members
    that diverge keep their history; the others train on.

    Args:
        optimizer: an Optax optimiser factory taking `learning_rate` (default `optax.sgd`,
            plain gradient descent).
        callbacks: progress callbacks (they see the first member's records).

    Returns:
        One `FitResult` per learning rate, in order; each reports the sweep's seconds
        divided by the number of members.
    """
    lrs = np.asarray(learning_rates, dtype=float)
    if lrs.ndim != 1 or lrs.size == 0 or not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise ValueError(f"learning rates must be a non-empty list of positive numbers, "
                         f"got {learning_rates}")
    budgets = [_whole(e, "epochs") for e in _per_grade(epochs, model.num_grades, "epochs")]
    block = _validate(model, problem, budgets, record_every, 1, None, block, None)
    tx = optax.inject_hyperparams(optimizer)(learning_rate=float(lrs[0]))
    loop = _Loop(model=model, problem=problem, engine=_Engine(len(lrs)),
                 txs=[tx] * model.num_grades, budgets=budgets, key=key,
                 record_every=record_every, window=20, tol=None, block=block, probe=None,
                 probe_every=None, callbacks=tuple(callbacks), checkpoint_every=None,
                 divergence_factor=DIVERGENCE_FACTOR, init_params=None, lrs=lrs)
    return loop.run(None)
