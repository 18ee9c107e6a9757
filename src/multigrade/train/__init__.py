"""`fit`: the one training loop, for MGDL, SGDL and every problem.

Grades train one after another. For grade k the earlier grades are frozen: their features
φ_{k-1} and their summed prediction P_{k-1} on every split are computed once, when grade
k-1 finishes, and passed to grade k's compiled program as arguments. Grade k therefore
costs what a shallow network costs, and never back-propagates into earlier grades.

Epochs run inside `jit` in chunks: a chunk is at most `window` records of `record_every`
epochs (`lax.scan` in `lax.scan`), so Python is touched once per chunk, when the stopping
rule of SPEC §3 is checked and the callbacks run. Chunks end at fixed epochs (window,
probe and checkpoint boundaries), so a run continued from a checkpoint takes exactly the
steps of an uninterrupted one.

A sweep (`fit_sweep`) runs the same loop with a leading member axis (`vmap`); a plain fit
is the one-member case with unbatched programs (`_Engine`).

The package's modules are private; what they offer is named here:
- `_fit`: `fit` and `fit_sweep`, their arguments checked;
- `_loop`: grades one after another, chunks within a grade;
- `_programs`, `_engine`: the compiled pieces and their cache;
- `_divergence`: derivatives along the observation (SURE's divergence);
- `_rules`: what is decided between chunks (stopping, selection, gains, step sizes);
- `_results`: summaries, states, checkpoints, callbacks and the result.
"""

from multigrade.train._divergence import zero_tangent
from multigrade.train._fit import fit, fit_sweep
from multigrade.train._loop import TRY_RULES
from multigrade.train._programs import grade_loss, make_epoch
from multigrade.train._results import (
    Best,
    Callback,
    Checkpoint,
    FitInterrupted,
    FitResult,
    GradeState,
    GradeSummary,
    Held,
    Pending,
)
from multigrade.train._rules import (
    DIVERGENCE_FACTOR,
    AdaptiveGrades,
    Divergence,
    Probe,
    Selector,
    StepSize,
    grade_gain,
    learning_rate,
    should_stop,
    stop_index,
    tries_at,
    with_learning_rate,
)

__all__ = [
    "DIVERGENCE_FACTOR",
    "AdaptiveGrades",
    "Best",
    "Callback",
    "Checkpoint",
    "Divergence",
    "TRY_RULES",
    "fit",
    "fit_sweep",
    "FitInterrupted",
    "FitResult",
    "grade_gain",
    "grade_loss",
    "GradeState",
    "GradeSummary",
    "Held",
    "learning_rate",
    "make_epoch",
    "Pending",
    "Probe",
    "Selector",
    "should_stop",
    "StepSize",
    "stop_index",
    "tries_at",
    "with_learning_rate",
    "zero_tangent",
]
