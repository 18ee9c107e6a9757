"""What `fit` returns and continues from: grade summaries, states, checkpoints, callbacks."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import optax

from multigrade._types import Array, PyTree, as_float
from multigrade.model import GradeModel
from multigrade.problems import Problem

# ---------------------------------------------------------------------------------------
# Results and checkpoints


@dataclasses.dataclass
class GradeSummary:
    """How one grade's training went."""

    grade: int  # 1-based
    epochs: int
    status: str  # "stopped" (stopping rule), "max_epochs" or "diverged"
    seconds: float  # training, compilation excluded
    compile_seconds: float
    scale: float  # s_k, the factor of this grade's output
    metrics: dict[str, float]  # every split, after this grade
    # with a Selector: the epoch whose state the grade kept, and its score
    selected_epoch: int | None = None
    criterion: float | None = None
    # with a StepSize: the grade's starting rate and the λ_max it came from
    lr: float | None = None
    lambda_max: float | None = None
    # trained several times (`fit(tries=...)`): each try's training loss, in order, and
    # which try (1-based) the grade kept
    tries: list[float] | None = None
    kept_try: int | None = None
    # and each try's features on the grade's grid: the fraction of dead units and the
    # effective rank (`analysis.feature_stats`; what the next grade learns from)
    tries_dead: list[float] | None = None
    tries_erank: list[float] | None = None
    # and each try's records, as columns (`epoch`, `train_loss`, ... as in the history):
    # how the tries compared along the way, the kept one's rows being in the history too
    tries_history: list[dict[str, list[float]]] | None = None

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs, 1)


class GradeState(NamedTuple):
    """What one epoch of a grade carries: its parameters, optimiser state and the
    problem's auxiliary state (u for restoration)."""

    params: PyTree
    opt_state: optax.OptState
    aux: PyTree


@dataclasses.dataclass
class Pending:
    """A grade stopped part-way, to be continued: its state after `epochs` epochs."""

    grade: int  # 1-based
    state: GradeState
    epochs: int
    seconds: float
    compile_seconds: float
    initial_loss: float
    tangent: GradeState | None = None  # d(state)/dy along the divergence probes
    best: Best | None = None  # a Selector's best record so far in this grade
    trial: int = 0  # a grade trained several times (`fit(tries=...)`): the try (0-based)
    held: Held | None = None  # and the best of its finished tries


class Held(NamedTuple):
    """The best finished try so far of a grade trained several times (`fit(tries=...)`):
    its training loss, index (0-based), kept state, history rows, summary and status,
    with every finished try's loss, the seconds they all took, every finished try's
    `analysis.feature_stats` (dead units, effective rank) and records (as columns)."""

    loss: float
    trial: int
    state: GradeState
    tangent: GradeState | None
    rows: list[dict]
    summary: dict
    status: str
    losses: tuple[float, ...]
    seconds: float
    compile_seconds: float
    features: tuple[dict, ...] = ()
    curves: tuple[dict, ...] = ()


class Best(NamedTuple):
    """The lowest-scoring record of a grade so far, and its state."""

    score: float
    epoch: int
    state: GradeState
    tangent: GradeState | None


@dataclasses.dataclass
class Checkpoint:
    """Everything `fit(start=...)` needs to continue a run: the finished grades, the
    auxiliary state after them, the history so far and the unfinished grade, if any.

    Features and partial predictions of the finished grades are not stored: they are
    recomputed from the parameters, with the same compiled programs, so they are the same.
    """

    params: list[PyTree]
    scales: list[float]
    grades: list[GradeSummary]
    history: list[dict[str, float]]
    aux: PyTree | None  # after the last finished grade; None before grade 1
    pending: Pending | None = None
    # with divergence probes: d/dy of the frozen features, predictions, next scale and aux
    # after the last finished grade (they cannot be recomputed from the parameters)
    tangent: dict | None = None

    @property
    def finished(self) -> int:
        return len(self.params)


class FitInterrupted(Exception):  # noqa: N818 (it is not an error: the run was asked to stop)
    """Raised by `fit` when a callback asked it to stop; `.checkpoint` continues the run
    (None for a sweep of members, `lr_sweep`, which keeps no checkpoint)."""

    def __init__(self, checkpoint: Checkpoint | None):
        super().__init__("interrupted (a sweep of members keeps no checkpoint)"
                         if checkpoint is None else
                         f"interrupted after {checkpoint.finished} finished grade(s)")
        self.checkpoint = checkpoint


class Callback:
    """Hooks that `fit` calls on the host between compiled chunks. Override what you need.

    Progress bars (the CLI), checkpointing (the run store) and interruption (signals) are
    callbacks: the training loop itself prints and writes nothing.
    """

    def on_grade_start(self, grade: int, epochs: int, done: int) -> None:
        """Grade `grade` (1-based) starts (or resumes after `done` epochs) of `epochs`."""

    def on_records(self, grade: int, rows: list[dict[str, float]]) -> None:
        """New history rows of a grade (of the first member, in a sweep)."""

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Every `checkpoint_every` epochs of a grade, and before an interruption."""

    def on_grade_end(self, checkpoint: Checkpoint) -> None:
        """A grade finished; `checkpoint` holds it (its summary is `grades[-1]`)."""

    def stop_requested(self) -> bool:
        """Checked after every chunk; True ends `fit` with `FitInterrupted`."""
        return False


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        model: the architecture.
        params: trained parameters, one `GradeParams` per trained grade.
        scales: s_k per grade.
        grades: a `GradeSummary` per trained grade.
        history: columns `grade`, `epoch` (within the grade), `step` (all grades) and every
            recorded metric, one row per record.
        predictions: the cumulative prediction on the problem's `render_split` after each
            grade, `(n, m)` NumPy arrays.
        aux: the problem's auxiliary state at the end (u for restoration).
        problem: what was fitted.
        probes: what `fit`'s `probe` returned along training, with grade, epoch and step.
    """

    model: GradeModel
    params: list[PyTree]  # GradeParams per grade (MultiGrade), sub-networks (MultiScale)
    scales: list[float]
    grades: list[GradeSummary]
    history: dict[str, np.ndarray]
    predictions: list[np.ndarray]
    aux: Any
    problem: Problem
    probes: list[dict] = dataclasses.field(default_factory=list)
    dropped: list[GradeSummary] = dataclasses.field(default_factory=list)
    dropped_params: list[PyTree] = dataclasses.field(default_factory=list)
    tangent: dict | None = None  # Checkpoint.tangent after the last grade

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics of the whole model (after its last trained grade), every split."""
        return self.grades[-1].metrics

    @property
    def diverged(self) -> bool:
        return any(g.status == "diverged" for g in self.grades)

    @property
    def epochs(self) -> int:
        return sum(g.epochs for g in self.grades)

    @property
    def seconds(self) -> float:
        return sum(g.seconds for g in self.grades)

    def predict(self, x, *, grades: int | None = None) -> Array:
        """Prediction of the first `grades` grades (all by default) at inputs `x` `(n, d)`."""
        k = len(self.params) if grades is None else grades
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
                or not 1 <= k <= len(self.params):
            raise ValueError(f"grades must be an integer from 1 to {len(self.params)}, "
                             f"got {grades!r}")
        x = as_float(x)
        return self.model.predict(self.params[:k], x, self.scales[:k])

    def checkpoint(self) -> Checkpoint:
        """The finished run as a checkpoint (to add grades with `fit(start=...)`)."""
        n = len(self.history.get("step", ()))
        rows = [{k: v[i].item() for k, v in self.history.items()} for i in range(n)]
        return Checkpoint(list(self.params), list(self.scales), list(self.grades), rows,
                          self.aux, tangent=self.tangent)



def _rows_to_history(rows: list[dict]) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(n for r in rows for n in r))
    return {n: np.asarray([r.get(n, np.nan) for r in rows]) for n in names}
