"""Learning-rate sweeps (SPEC §4, paper Section 5): which rates GD tolerates, per method.

All learning rates of one method train in one compiled, vmapped program (`fit_sweep`).
Each run is then labelled from its recorded training loss:

- `diverged`: the loss became NaN/inf, or ended above where it started;
- `stalled`: the loss froze (range over the second half < 1e-6 of its start) while still
  above half its starting value — e.g. every ReLU dead;
- `oscillated`: over the second half, the loss's total upward movement (the sum of its
  increases between records) exceeds both its net descent there and its mean level — it
  climbs back more than it keeps; the small bumps of an edge-of-stability descent do not
  count;
- `converged`: otherwise.

A multi-grade run takes the worst label of its grades (diverged > oscillated > stalled >
converged). The largest stable learning rate of a method is the largest rate labelled
`converged`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import optax

from multigrade._types import PRNGKeyArray
from multigrade.train import Callback, FitResult, fit_sweep

LABELS = ("converged", "stalled", "oscillated", "diverged")  # from best to worst


def classify(losses: Sequence[float] | np.ndarray) -> str:
    """The label of one loss curve (see the module docstring)."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.size == 0 or not np.all(np.isfinite(losses)):
        return "diverged"
    first, last = losses[0], losses[-1]
    if last > first:
        return "diverged"
    tail = losses[len(losses) // 2:]
    scale = max(abs(first), np.finfo(float).tiny)
    if np.ptp(tail) < 1e-6 * scale and last > 0.5 * first:
        return "stalled"
    steps = np.diff(tail)
    climb = np.sum(steps[steps > 0])
    if climb > max(tail[0] - tail[-1], 0.0) and climb > np.mean(tail):
        return "oscillated"
    return "converged"


def classify_result(result: FitResult, column: str = "train_loss") -> tuple[str, list[str]]:
    """The worst label over a run's grades, and each grade's label."""
    h = result.history
    per_grade = [classify(h[column][h["grade"] == g.grade]) for g in result.grades]
    return max(per_grade, key=LABELS.index), per_grade


@dataclasses.dataclass
class SweepResult:
    """One method's sweep: its learning rates, runs and labels."""

    method: str
    learning_rates: np.ndarray
    results: list[FitResult]
    labels: list[str]
    grade_labels: list[list[str]]
    seconds: float

    @property
    def largest_stable_lr(self) -> float | None:
        ok = [lr for lr, lab in zip(self.learning_rates, self.labels) if lab == "converged"]
        return float(max(ok)) if ok else None

    def rows(self) -> list[dict]:
        out = []
        for lr, r, lab, per in zip(self.learning_rates, self.results, self.labels,
                                   self.grade_labels):
            out.append({"method": self.method, "lr": float(lr), "label": lab,
                        "grade_labels": per, "epochs": r.epochs, **r.metrics})
        return out


def lr_sweep(model, problem, learning_rates: Sequence[float], *, epochs: int,
             key: PRNGKeyArray, optimizer=optax.sgd, record_every: int = 10,
             block="auto", callbacks: Sequence[Callback] = ()) -> SweepResult:
    """Trains `model` at every learning rate (vmapped) and labels each run."""
    results = fit_sweep(model, problem, learning_rates, epochs=epochs, key=key,
                        optimizer=optimizer, record_every=record_every, block=block,
                        callbacks=callbacks)
    labelled = [classify_result(r) for r in results]
    return SweepResult(model.name, np.asarray(learning_rates, float), results,
                       [lab for lab, _ in labelled], [per for _, per in labelled],
                       sum(r.seconds for r in results))
