"""Rules checked between compiled chunks: the paper's stopping rule, the selector's
interface, adaptive grades' gain, GD's step from the Hessian (the `StepSize` protocol),
and what a race of a grade's tries would compare (`tries_at`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import jax.numpy as jnp
import numpy as np

from multigrade._types import Array, PRNGKeyArray, PyTree
from multigrade.train._results import GradeState

# A grade whose training loss exceeds its initial loss by this factor has diverged, even
# while the loss is still finite (Adam at a huge rate climbs to 1e35 without overflowing).
DIVERGENCE_FACTOR = 1e4

# ---------------------------------------------------------------------------------------
# Stopping rule (SPEC §3)


def should_stop(records: Sequence[float], window: int, tol: float | None) -> bool:
    """The paper's stopping rule, checked after the latest record.

    Every `window` records, compare the mean of the last `window` records with the mean of
    the `window` before; stop when `|new − old| / |old| < tol`. Checked only when the
    number of records is a multiple of `window` and at least `2 · window`.
    """
    n = len(records)
    if tol is None or n < 2 * window or n % window:
        return False
    old = float(np.mean(records[n - 2 * window : n - window]))
    new = float(np.mean(records[n - window :]))
    if old == 0.0:
        return new == 0.0
    return abs(new - old) / abs(old) < tol


def stop_index(records: Sequence[float], window: int, tol: float | None) -> int | None:
    """How many records the rule lets through before stopping (None: it never stops)."""
    for n in range(1, len(records) + 1):
        if should_stop(records[:n], window, tol):
            return n
    return None


class Selector:
    """Chooses the epoch kept in each grade, and how many grades, from what is recorded
    (never the clean image). `multigrade.selection` implements SURE, the discrepancy
    principle and a held-out pixel set on top of this.

    With a selector, `fit` records every `record_every` epochs in a chunk of its own, so
    that the state of any record can be kept. After each record it calls `score(row)`
    (which may add columns to the history row). With `keep_best`, a grade ends in the state
    of its lowest score, and a grade whose lowest score is not below the previous grade's
    is dropped and ends the fit. `done(row)` True ends the grade at that record and adds
    no further grade.
    """

    keep_best: bool = True
    needs_divergence: bool = False  # the rows need `divergence` (fit's divergence_probes)

    def score(self, row: dict[str, float]) -> float:
        """The criterion of one record, lower is better."""
        raise NotImplementedError

    def done(self, row: dict[str, float]) -> bool:
        return False

    def settings(self) -> dict[str, float]:
        """The rule's own constants, for the record (the discrepancy principle's τ)."""
        return {}


def tries_at(tries_history: Sequence[dict], part: float) -> list[float]:
    """Each try's training loss at its last record within `part` (in (0, 1]) of the grade's
    epochs (the longest try's last record; its first record where none is that early),
    from `GradeSummary.tries_history`: what a race of the tries stopped there would
    compare (`argmin` + 1 is the try it would keep). A try that ended before that point
    (diverged, or stopped) reads its last record; a missing or non-finite loss reads
    inf."""
    if not 0 < part <= 1:
        raise ValueError(f"part must be in (0, 1], got {part}")
    if not tries_history:
        return []
    end = max((c["epoch"][-1] for c in tries_history if c.get("epoch")), default=0)
    out = []
    for c in tries_history:
        epochs, loss = np.asarray(c.get("epoch", []), float), c.get("train_loss", [])
        i = max(int(np.searchsorted(epochs, part * end, side="right")) - 1, 0)
        value = loss[i] if 0 <= i < len(loss) and loss[i] is not None else math.inf
        out.append(float(value) if math.isfinite(value) else math.inf)
    return out


def grade_gain(before: float, after: float) -> float:
    """A grade's gain in dB on a loss: 10·log10(before / after) (−∞ if it blew up)."""
    if not (math.isfinite(after) and after > 0 and before > 0):
        return -math.inf if not math.isfinite(after) else math.inf
    return 10.0 * math.log10(before / after)


@runtime_checkable
class StepSize(Protocol):
    """Gradient descent's step from the spectrum of each grade's loss Hessian H (the rule
    `fit(step_size=...)` follows; `multigrade.analysis.StepSize` is the implementation,
    which estimates λ_max by Lanczos).

    Attributes:
        c: at the start of each grade η = c·2/λ_max; None keeps the optimiser's rate.
        every: epochs between re-estimates (a multiple of `record_every`); None: only at
            the start.
        lower: at a re-estimate where λ_max > 2/η, lower η to c·2/λ_max.
        eig_stop: end the grade at a re-estimate where 1 − η·λ_max is below this.
    """

    c: float | None
    every: int | None
    lower: bool
    eig_stop: float | None

    def sharpness(self, loss, params: PyTree, key: PRNGKeyArray) -> float:
        """λ_max of `loss`'s Hessian at `params` (a `jax.tree_util.Partial` of params)."""


def learning_rate(opt_state) -> Array:
    """The rate an `optax.inject_hyperparams` state carries (what `StepSize` sets)."""
    hp = getattr(opt_state, "hyperparams", None)
    if not isinstance(hp, dict) or "learning_rate" not in hp:
        raise ValueError("choosing the step from the spectrum needs an optimiser that "
                         "carries its rate: optax.inject_hyperparams(optax.sgd)(learning_rate=…)")
    return hp["learning_rate"]


def with_learning_rate(state: GradeState, lr: float) -> GradeState:
    """`state` with the rate of its `optax.inject_hyperparams` optimiser set to `lr`."""
    opt = state.opt_state
    rate = learning_rate(opt)
    new = jnp.asarray(lr, jnp.result_type(rate)).reshape(jnp.shape(rate))
    return state._replace(opt_state=opt._replace(hyperparams={**opt.hyperparams,
                                                              "learning_rate": new}))


@dataclasses.dataclass(frozen=True)
class Probe:
    """`fit(probe=Probe(fn, every))`: `fn(grade, epoch, params, loss)` is called at epoch 0
    and every `every` epochs (a multiple of `record_every`) of each grade, where
    `loss(params)` is the current grade's loss with everything else fixed (a
    `jax.tree_util.Partial`); what it returns (a dict) is collected in `FitResult.probes`
    with `grade`, `epoch` and `step`. `multigrade.analysis.make_stability_probe` makes one
    that records Hessian spectra."""

    fn: Callable
    every: int


@dataclasses.dataclass(frozen=True)
class Divergence:
    """`fit(divergence=Divergence(probes, eps))`: carry the derivative of the whole training,
    as a map from the observation y to the prediction P, along each probe b, so that every
    record gets `divergence`, the mean of bᵀ(∂P/∂y)b over the probes (what SURE needs).

    Attributes:
        probes: `(p, *observation shape)` probe vectors b.
        eps: None: exact derivatives (forward mode, a JVP of every epoch, about 3× an
            epoch's cost); a number ε: finite differences, each probe a twin trained on
            y + εb in lockstep (about 2×). Training at the edge of stability (Adam too) is
            chaotic: its exact derivative grows without bound along training, while a
            difference at the scale of the noise stays finite (`multigrade.selection`).
    """

    probes: Array
    eps: float | None = None


@dataclasses.dataclass(frozen=True)
class AdaptiveGrades:
    """`fit(adaptive=AdaptiveGrades(min_gain, metric))`: a grade that does not lower
    `metric` (a recorded loss, lower is better; after the grade) by at least `min_gain`
    decibels, 10·log10(before / after), is dropped and ends the fit (its parameters in
    `FitResult.dropped_params`); the model's number of grades is the most that are tried.
    On the validation loss of an image this is the validation PSNR's gain."""

    min_gain: float
    metric: str = "val_loss"

    def __post_init__(self):
        if not (math.isfinite(self.min_gain) and self.min_gain >= 0):
            raise ValueError(f"min_gain must be a finite non-negative number, "
                             f"got {self.min_gain}")


def no_gain_of(select: Selector | None, criterion: float | None, done: list) -> bool:
    """A keep-best selector's grade that did not lower the previous grade's score (`done`:
    the grades kept so far, `GradeSummary`s)."""
    if select is None or not select.keep_best or not done:
        return False
    previous = done[-1].criterion
    if criterion is None or previous is None:
        return False
    return not criterion < previous


def too_little(gain: tuple[str, float] | None, final: dict, done: list, status: str) -> bool:
    """Adaptive grades (`gain`: the watched metric, the least gain in dB): this grade lowered
    the watched loss by less than the least gain (a first grade, or one that diverged, is
    judged elsewhere)."""
    if gain is None or not done or status == "diverged":
        return False
    name, least = gain
    if name not in final:
        raise ValueError(f"adaptive grades watch {name!r}, which the problem does not "
                         f"record (it records {', '.join(sorted(final))})")
    return not grade_gain(done[-1].metrics[name], float(final[name])) >= least
