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
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from multigrade._types import Array, PRNGKeyArray, PyTree, as_float, float_dtype
from multigrade.model import GradeModel, blocked
from multigrade.problems import ObservedProblem, Problem

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
    opt = state.opt_state
    rate = learning_rate(opt)
    new = jnp.asarray(lr, jnp.result_type(rate)).reshape(jnp.shape(rate))
    return state._replace(opt_state=opt._replace(hyperparams={**opt.hyperparams,
                                                              "learning_rate": new}))


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
    """Raised by `fit` when a callback asked it to stop; `.checkpoint` continues the run."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__(f"interrupted after {checkpoint.finished} finished grade(s)")
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


# ---------------------------------------------------------------------------------------
# Compiled pieces


def make_epoch(problem: Problem, tx: optax.GradientTransformation, feats: Array, base: Array,
               scale, block: int | None = None, apply: Callable | None = None
               ) -> Callable[[GradeState], tuple[GradeState, Array]]:
    """One epoch of the current grade: aux update, then one optimiser step.

    One forward pass serves both: `jax.vjp` evaluates the grade once, the auxiliary state
    (u) is updated from that prediction, and the loss gradient with respect to the
    prediction is pulled back through the same linearisation. The grade (`apply(params,
    x)`, a model's `grade_output`; by default a multi-grade one) is evaluated in row blocks
    of `block` samples (see `model.blocked`).
    """
    if apply is None:
        from multigrade.model import grade_output as apply

    def epoch(state: GradeState) -> tuple[GradeState, Array]:
        g, pullback = jax.vjp(
            lambda p: blocked(functools.partial(apply, p), feats, block), state.params)
        pred = base + scale * g
        aux = problem.update_aux(state.aux, pred)
        loss, dpred = jax.value_and_grad(problem.loss)(pred, aux)
        (grads,) = pullback(scale * dpred)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return GradeState(optax.apply_updates(state.params, updates), opt_state, aux), loss

    return epoch


def grade_loss(model: GradeModel, block: int | None, problem: Problem, feats: Array,
               base: Array, scale, aux, params) -> Array:
    """The current grade's loss as a function of its parameters (the last argument), with
    the earlier grades and the auxiliary state u fixed: what the Hessian analysis
    differentiates. `fit` hands probes `jax.tree_util.Partial(grade_loss, ...)`, a pytree
    whose arrays are arguments, so compiled Hessian programs are reused across probes."""
    g = blocked(functools.partial(model.grade_output, params), feats, block)
    return problem.loss(base + scale * g, aux)


def _split_predictions(model, params, feats: dict, base: dict, scale, block) -> dict:
    out = functools.partial(model.grade_output, params)
    return {s: base[s] + scale * blocked(out, feats[s], block) for s in feats}


def _chunk(state: GradeState, problem, feats: dict, base: dict, scale, *, model, tx,
           num_records: int, record_every: int, block: int | None):
    """`num_records` records of `record_every` epochs; returns the state and the metrics."""
    epoch = make_epoch(problem, tx, feats["train"], base["train"], scale, block,
                       model.grade_output)

    def record(state, _):
        state, _ = jax.lax.scan(lambda s, _: epoch(s), state, None, length=record_every)
        preds = _split_predictions(model, state.params, feats, base, scale, block)
        return state, problem.metrics(preds, state.aux)

    return jax.lax.scan(record, state, None, length=num_records)


def _initial_loss(params, problem, aux, feats: dict, base: dict, scale, *, model, block):
    """The training loss at the grade's initial parameters (the divergence reference)."""
    aux = problem.update_aux(aux, base["train"] + scale * blocked(
        functools.partial(model.grade_output, params), feats["train"], block))
    return grade_loss(model, block, problem, feats["train"], base["train"], scale, aux, params)


def _freeze(params, problem, aux, feats: dict, base: dict, scale, *, model, block):
    """After a grade: next features φ_k, cumulative predictions P_k and metrics, every split."""
    preds = _split_predictions(model, params, feats, base, scale, block)
    phi = functools.partial(model.grade_features, params)
    next_feats = {s: blocked(phi, feats[s], block) for s in feats}
    return next_feats, preds, problem.metrics(preds, aux), problem.next_scale(preds["train"])


_STATIC = ("model", "tx", "num_records", "record_every", "block")


# -- Derivatives along the observation (SURE's divergence) ------------------------------
# The trained prediction is a function of the observation y through every epoch. Beside
# the state, the loop carries, per probe b (leading axis), either its derivative along b
# (`eps` None: exact, a JVP of every epoch) or a twin trained on y + eps·b in lockstep
# (a finite difference, read as (twin − state)/eps). Integer leaves (optimiser step
# counts) are shared, and None in the carried tree.


def _is_int(a) -> bool:
    return not jnp.issubdtype(jnp.result_type(a), jnp.inexact)


def _split_ints(tree):
    """`(float leaves, int leaves, rebuild)`; `rebuild(floats, ints)` is the tree again."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    kinds = [_is_int(a) for a in leaves]

    def rebuild(floats, ints):
        fl, it = iter(floats), iter(ints)
        return treedef.unflatten([next(it) if k else next(fl) for k in kinds])

    return ([a for a, k in zip(leaves, kinds) if not k],
            [a for a, k in zip(leaves, kinds) if k], rebuild)


def zero_tangent(tree, probes: int, twin: bool = False):
    """What the loop carries beside `tree` at the start, one per probe (leading axis):
    zero derivatives, or (`twin`) copies of `tree`; None for integer leaves."""
    return jax.tree_util.tree_map(
        lambda a: None if _is_int(a) else jnp.broadcast_to(
            a if twin else jnp.zeros_like(a), (probes, *jnp.shape(a))), tree)


def _along(f, primals, carried, eps):
    """`(f(primals)[0], what is carried after f, f(primals)[1])` for `f` returning
    `(differentiated, aux)`: the JVP along the batch of tangents `carried` (`eps` None),
    or f of the batch of twins `carried`. A JVP that comes out NaN is 0·∞ (Adam's √v has an
    infinite derivative where a gradient is exactly zero, on a ReLU unit dead on every
    sample, and there the map is locally constant): NaNs are set to 0."""
    if eps is None:
        out, t_out, aux = jax.vmap(lambda t: jax.jvp(f, primals, t, has_aux=True),
                                   out_axes=(None, 0, None))(carried)
        return out, jax.tree_util.tree_map(lambda t: jnp.where(jnp.isnan(t), 0.0, t),
                                           t_out), aux
    out, aux = f(*primals)
    return out, jax.vmap(lambda t: f(*t)[0])(carried), aux


def _derivative(out, carried, eps):
    """d(out) along the probes from what `_along` carried."""
    return carried if eps is None else (carried - out[None]) / eps


def _chunk_jvp(state, tstate, problem, probes, feats, tfeats, base, tbase, scale, tscale, *,
               model, tx, num_records, record_every, block, eps):
    """`_chunk` with the derivative of every epoch along each probe b of the observation
    (`_along`); the metrics gain `divergence`, the mean over probes of bᵀ(∂P/∂y)b, at
    every record."""
    _, _, rebuild = _split_ints(state)
    y = problem.observed
    ty = probes if eps is None else y[None] + eps * probes

    def step(fl, ints, y, fe, ba, sc):  # one epoch, as a function of y and the inputs
        epoch = make_epoch(problem.with_observation(y), tx, fe["train"], ba["train"], sc,
                           block, model.grade_output)
        fl_out, ints_out, _ = _split_ints(epoch(rebuild(fl, ints))[0])
        return fl_out, ints_out

    def epoch(carry, _):
        fl, ints, tfl = carry
        out, tout, ints = _along(lambda *a: step(a[0], ints, *a[1:]),
                                 (fl, y, feats, base, scale),
                                 (tfl, ty, tfeats, tbase, tscale), eps)
        return (out, ints, tout), None

    def predict(params, fe, ba, sc):
        return _split_predictions(model, params, {"train": fe["train"]},
                                  {"train": ba["train"]}, sc, block)["train"], None

    def record(carry, _):
        carry, _ = jax.lax.scan(epoch, carry, None, length=record_every)
        fl, ints, tfl = carry
        st = rebuild(fl, ints)
        tparams = rebuild(tfl, [None] * len(ints)).params
        pred, tpred, _ = _along(predict, (st.params, feats, base, scale),
                                (tparams, tfeats, tbase, tscale), eps)
        dpred = _derivative(pred, tpred, eps)
        metrics = problem.metrics(_split_predictions(model, st.params, feats, base, scale,
                                                     block), st.aux)
        div = jnp.sum(probes.reshape(probes.shape[0], -1) * dpred.reshape(dpred.shape[0], -1),
                      axis=1)
        return carry, {**metrics, "divergence": jnp.mean(div)}

    floats, ints, _ = _split_ints(state)
    (fl, ints, tfl), metrics = jax.lax.scan(
        record, (floats, ints, jax.tree_util.tree_leaves(tstate)), None, length=num_records)
    return rebuild(fl, ints), rebuild(tfl, [None] * len(ints)), metrics


def _freeze_jvp(params, tparams, problem, probes, aux, taux, feats, tfeats, base, tbase,
                scale, tscale, *, model, block, eps):
    """`_freeze` and the derivatives of its features, predictions and next scale."""

    def f(p, y, a, fe, ba, sc):
        nf, preds, metrics, ns = _freeze(p, problem.with_observation(y), a, fe, ba, sc,
                                         model=model, block=block)
        return (nf, preds, ns), metrics

    y = problem.observed
    ty = probes if eps is None else y[None] + eps * probes
    (nf, preds, ns), (tnf, tpreds, tns), metrics = _along(
        f, (params, y, aux, feats, base, scale), (tparams, ty, taux, tfeats, tbase, tscale),
        eps)
    return (nf, preds, metrics, ns), (tnf, tpreds, tns)


def _vmapped(fn, in_axes, static):
    return jax.jit(lambda *args, **kw: jax.vmap(functools.partial(fn, **kw),
                                                in_axes=in_axes)(*args),
                   static_argnames=static)


class _ProgramCache:
    """Compiled chunk programs, kept across fits of one process (least recently used
    dropped beyond `size`): later grades of equal shape, and later runs of the same model,
    problem structure, optimiser object and shapes (the seeds of a sweep), compile nothing.
    Keys hold the optimiser object itself, so a program is only reused with that very
    transformation (`experiments.make_optimizer` returns one object per name and rate)."""

    def __init__(self, size: int = 32):
        self.size, self.programs = size, {}

    def get(self, key):
        program = self.programs.pop(key, None)
        if program is not None:
            self.programs[key] = program  # most recently used last
        return program

    def put(self, key, program) -> None:
        self.programs[key] = program
        while len(self.programs) > self.size:
            self.programs.pop(next(iter(self.programs)))


_COMPILED = _ProgramCache()


@dataclasses.dataclass(frozen=True)
class _Engine:
    """The compiled programs of a plain fit (`members` None) or of a vmapped sweep (a
    leading axis of `members` on the state, features, predictions and scale; the problem
    is shared). The loop above it is the same for both."""

    members: int | None

    @property
    def m(self) -> int:
        return 1 if self.members is None else self.members

    @functools.cached_property
    def chunk(self):
        if self.members is None:
            return jax.jit(_chunk, static_argnames=_STATIC)
        return _vmapped(_chunk, (0, None, 0, 0, 0), _STATIC)

    @functools.cached_property
    def freeze(self):
        if self.members is None:
            return jax.jit(_freeze, static_argnames=("model", "block"))
        return _vmapped(_freeze, (0, None, 0, 0, 0, 0), ("model", "block"))

    @functools.cached_property
    def chunk_jvp(self):
        return jax.jit(_chunk_jvp, static_argnames=(*_STATIC, "eps"))

    @functools.cached_property
    def freeze_jvp(self):
        return jax.jit(_freeze_jvp, static_argnames=("model", "block", "eps"))

    @functools.cached_property
    def initial_loss(self):
        if self.members is None:
            return jax.jit(_initial_loss, static_argnames=("model", "block"))
        return _vmapped(_initial_loss, (0, None, 0, 0, 0, 0), ("model", "block"))

    def expand(self, tree):
        """A shared value, given every member its copy."""
        if self.members is None:
            return tree
        return jax.tree_util.tree_map(
            lambda a: jnp.broadcast_to(a, (self.members, *jnp.shape(a))), tree)

    def rows(self, v) -> np.ndarray:
        """Host values with the member axis first: `(m, ...)`."""
        v = np.asarray(v)
        return v.reshape(self.m, *v.shape[self.members is not None:])

    def member(self, tree, j: int):
        if self.members is None:
            return tree
        return jax.tree_util.tree_map(lambda a: a[j], tree)


# ---------------------------------------------------------------------------------------
# The loop


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
    problem: Problem,
    *,
    optimizer: optax.GradientTransformation | Sequence[optax.GradientTransformation],
    epochs: int | Sequence[int],
    key: PRNGKeyArray,
    record_every: int = 10,
    window: int = 20,
    tol: float | None = None,
    block: int | None | str = "auto",
    probe: Callable | None = None,
    probe_every: int | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_every: int | None = None,
    start: Checkpoint | None = None,
    init_params: Sequence[PyTree | None] | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
    select: Selector | None = None,
    divergence_probes: Array | None = None,
    divergence_eps: float | None = None,
    step_size: StepSize | None = None,
    min_gain: float | None = None,
    gain_metric: str = "val_loss",
) -> FitResult:
    """Trains `model` on `problem`, grade by grade.

    Args:
        model: a `MultiGrade` (SGDL is a one-grade model) or a `MultiScale`.
        problem: a problem object (`multigrade.problems`).
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
        probe: called as `probe(grade, epoch, params, loss)` at epoch 0 and every
            `probe_every` epochs of each grade, where `loss(params)` is the current grade's
            loss with everything else fixed (a `jax.tree_util.Partial`); what it returns
            (a dict) is collected in `FitResult.probes` with `grade`, `epoch` and `step`.
        probe_every: epochs between probes, a multiple of `record_every`.
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
            the records alone (see `multigrade.selection`). Records then end chunks.
        divergence_probes: `(p, *observation shape)` probe vectors b for a problem with an
            observation y (restoration): the derivative of the training along each b is
            carried beside it (forward mode, about 2–3× the cost of an epoch), and every
            record gets `divergence`, the mean of bᵀ(∂P/∂y)b over the probes: the
            Monte-Carlo divergence of the whole training, as a map from y to the
            prediction P, that SURE needs.
        divergence_eps: None: those derivatives are exact (forward mode, a JVP of every
            epoch, about 3× an epoch's cost); a number ε: finite differences, each probe a
            twin trained on y + εb in lockstep (about 2×). Training at the edge of
            stability (Adam too) is chaotic: its exact derivative grows without bound
            along training, while a difference at the scale of the noise stays finite
            (`multigrade.selection`).
        step_size: choose (and watch) GD's rate from each grade's Hessian (`StepSize`).
        min_gain: adaptive grades: a grade that does not lower `gain_metric` (after it)
            by at least `min_gain` decibels, 10·log10(before / after), is dropped and ends
            the fit (its parameters in `FitResult.dropped_params`); the model's number of
            grades is the most that are tried. On the validation loss of an image this
            is the validation PSNR's gain.
        gain_metric: a recorded loss (lower is better), by default the validation loss.

    Returns:
        A `FitResult`. A diverged grade keeps its history and no later grade is trained.

    Raises:
        FitInterrupted: a callback asked to stop; its `checkpoint` continues the run.
    """
    k_grades = model.num_grades
    txs = [_transformation(t) for t in _per_grade(optimizer, k_grades, "optimizer")]
    budgets = [_whole(e, "epochs") for e in _per_grade(epochs, k_grades, "epochs")]
    block = _validate(model, problem, budgets, record_every, window, tol, block,
                      checkpoint_every)
    if probe is not None and (probe_every is None or probe_every < 1
                              or probe_every % record_every):
        raise ValueError(f"probe_every must be a positive multiple of record_every "
                         f"({record_every}), got {probe_every}")
    if init_params is not None and len(init_params) != k_grades:
        raise ValueError(f"init_params: {len(init_params)} entries for {k_grades} grades")
    if start is not None and start.finished > k_grades:
        raise ValueError(f"the checkpoint has {start.finished} grades, the model {k_grades}")
    probes_b = _check_probes(problem, divergence_probes)
    if select is not None and select.needs_divergence and probes_b is None:
        raise ValueError(f"{type(select).__name__} needs divergence_probes")
    if step_size is not None and step_size.every is not None \
            and step_size.every % record_every:
        raise ValueError(f"sharpness estimates every {step_size.every} epochs: must be a "
                         f"multiple of record_every ({record_every})")
    if min_gain is not None and not (math.isfinite(min_gain) and min_gain >= 0):
        raise ValueError(f"min_gain must be a finite non-negative number, got {min_gain}")
    loop = _Loop(model=model, problem=problem, engine=_Engine(None), txs=txs, budgets=budgets,
                 key=key, record_every=record_every, window=window, tol=tol, block=block,
                 probe=probe, probe_every=probe_every, callbacks=tuple(callbacks),
                 checkpoint_every=checkpoint_every, divergence_factor=divergence_factor,
                 init_params=init_params, select=select, probes_b=probes_b,
                 probe_eps=divergence_eps, step_size=step_size,
                 gain=None if min_gain is None else (gain_metric, float(min_gain)))
    return loop.run(start)[0]


def _check_probes(problem: Problem, probes) -> Array | None:
    if probes is None:
        return None
    if not isinstance(problem, ObservedProblem):
        raise ValueError("divergence probes need a problem with an observation "
                         "(denoising or deblurring)")
    observed = problem.observed
    probes = as_float(probes)
    if probes.ndim != observed.ndim + 1 or probes.shape[1:] != observed.shape \
            or probes.shape[0] < 1:
        raise ValueError(f"divergence probes must have shape (p, *{tuple(observed.shape)}), "
                         f"got {tuple(probes.shape)}")
    return probes


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


def _rows_to_history(rows: list[dict]) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(n for r in rows for n in r))
    return {n: np.asarray([r.get(n, np.nan) for r in rows]) for n in names}


@dataclasses.dataclass
class _Frozen:
    """The frozen grades' contribution, on every split: features φ, prediction P, the
    next grade's scale and the auxiliary state (member axis first in a sweep)."""

    feats: dict
    base: dict
    scale: Array
    aux: PyTree
    tangent: dict | None = None  # d/dy of feats, base, scale and aux (divergence probes)


@dataclasses.dataclass(kw_only=True)
class _Loop:
    model: GradeModel
    problem: Problem
    engine: _Engine
    txs: list
    budgets: list[int]
    key: PRNGKeyArray
    record_every: int
    window: int
    tol: float | None
    block: int | None
    probe: Callable | None
    probe_every: int | None
    callbacks: tuple
    checkpoint_every: int | None
    divergence_factor: float
    init_params: Sequence | None
    lrs: np.ndarray | None = None
    select: Selector | None = None
    probes_b: Array | None = None  # (p, *observation shape): divergence probes
    probe_eps: float | None = None  # None: exact derivatives; else finite differences
    step_size: StepSize | None = None
    gain: tuple[str, float] | None = None  # adaptive grades: (metric, least gain)

    def __post_init__(self):
        self.probes: list[dict] = []
        # one function object for every probe's loss: compiled Hessians are reused
        self.loss_fn = functools.partial(grade_loss, self.model, self.block)

    # -- the grades ---------------------------------------------------------------------
    def run(self, start: Checkpoint | None) -> list[FitResult]:
        eng, m = self.engine, self.engine.m
        frozen = self._initial_frozen()
        params_out, scales, summaries, renders = [], [], [[] for _ in range(m)], []
        rows: list[list[dict]] = [[] for _ in range(m)]
        if start is not None:
            frozen = self._replay(start, frozen, params_out, scales, summaries[0], renders)
            rows[0] = self._start_rows(start)
        step0 = sum(g.epochs for g in summaries[0])
        alive = np.ones(m, bool)
        dropped, dropped_params = [], []
        for k in range(len(params_out), self.model.num_grades):
            pending = start.pending if start is not None and start.pending is not None \
                and start.pending.grade == k + 1 else None
            state, tstate, status, summary_k = self._train_grade(
                k, frozen, step0, pending, rows, alive, params_out, scales, summaries)
            summary = {**summary_k, "grade": k + 1, "seconds": summary_k["seconds"] / m,
                       "compile_seconds": summary_k["compile_seconds"] / m}
            no_gain = self._no_gain(summary.get("criterion"), summaries[0])
            if not no_gain:
                frozen_next, render, final = self._freeze(state.params, frozen, None,
                                                          state.aux, tstate)
            if no_gain or self._too_little(final, summaries[0], status[0]):
                dropped.append(GradeSummary(
                    **summary, status="dropped", scale=float(frozen.scale),
                    metrics={} if no_gain else {n: float(v) for n, v in final.items()}))
                dropped_params.append(state.params)
                break
            for j in range(m):
                summaries[j].append(GradeSummary(
                    **summary, status=status[j],
                    scale=float(eng.rows(frozen.scale)[j].reshape(-1)[0]),
                    metrics={n: float(eng.rows(v)[j].reshape(-1)[0]) for n, v in final.items()}))
            params_out.append(state.params)
            scales.append(eng.rows(frozen.scale).reshape(-1))
            renders.append(render)
            step0 += summary_k["epochs"]
            frozen = frozen_next
            if eng.members is None:
                ckpt = Checkpoint(list(params_out), [float(s[0]) for s in scales],
                                  list(summaries[0]), rows[0], state.aux,
                                  tangent=frozen.tangent)
                for cb in self.callbacks:
                    cb.on_grade_end(ckpt)
            if not alive.any() or (eng.members is None and status[0] in ("diverged",
                                                                          "selected")):
                break

        return [FitResult(self.model, [eng.member(p, j) for p in params_out],
                          [float(s[j]) for s in scales], summaries[j], _rows_to_history(rows[j]),
                          [eng.rows(r)[j] for r in renders], eng.member(frozen.aux, j),
                          self.problem, self.probes if eng.members is None else [], dropped,
                          dropped_params, frozen.tangent) for j in range(m)]

    def _start_rows(self, start: Checkpoint) -> list[dict]:
        """The checkpoint's history rows; those of a grade a rule dropped go, when that
        grade is trained again (`grow`)."""
        last = start.finished + (start.pending is not None
                                 or start.finished == self.model.num_grades)
        return [dict(r) for r in start.history if r["grade"] <= last]

    def _replay(self, start: Checkpoint, frozen: _Frozen, params_out, scales, summaries,
                renders) -> _Frozen:
        """The checkpoint's finished grades, frozen again (same programs, same numbers);
        appends to the lists and returns what they leave frozen."""
        eng = self.engine
        for k, p in enumerate(start.params):
            frozen, render, _ = self._freeze(p, frozen, start.grades[k].scale)
            frozen.aux = eng.expand(start.aux if k == start.finished - 1 else frozen.aux)
            params_out.append(p)
            scales.append(eng.rows(start.grades[k].scale).reshape(-1))
            summaries.append(start.grades[k])
            renders.append(render)
        if start.finished < self.model.num_grades and start.finished \
                and start.grades[-1].status == "diverged":
            raise ValueError("the checkpoint's last grade diverged: no grade can follow it")
        if self.probes_b is not None and start.finished:
            if start.tangent is None:
                raise ValueError("the checkpoint holds no derivatives along the "
                                 "divergence probes: it was made without them")
            frozen.tangent = start.tangent
        return frozen

    def _no_gain(self, criterion: float | None, done: list[GradeSummary]) -> bool:
        """A keep-best selector's grade that did not lower the previous grade's score."""
        if self.select is None or not self.select.keep_best or not done:
            return False
        previous = done[-1].criterion
        if criterion is None or previous is None:
            return False
        return not criterion < previous

    def _too_little(self, final: dict, done: list[GradeSummary], status: str) -> bool:
        """Adaptive grades: this grade lowered the watched loss by less than the least
        gain, in dB (a first grade, or one that diverged, is judged elsewhere)."""
        if self.gain is None or not done or status == "diverged":
            return False
        name, least = self.gain
        if name not in final:
            raise ValueError(f"adaptive grades watch {name!r}, which the problem does not "
                             f"record (it records {', '.join(sorted(final))})")
        return not grade_gain(done[-1].metrics[name], float(final[name])) >= least

    def _initial_frozen(self) -> _Frozen:
        dtype = float_dtype()
        feats = {s: jnp.asarray(v, dtype) for s, v in self.problem.inputs.items()}
        base = {s: jnp.zeros((v.shape[0], self.model.out_dim), dtype) for s, v in feats.items()}
        aux = self.problem.init_aux(base["train"])
        frozen = _Frozen(*self.engine.expand((feats, base, jnp.asarray(1.0, dtype), aux)))
        if self.probes_b is not None:
            frozen.tangent = zero_tangent({"feats": feats, "base": base,
                                           "scale": jnp.asarray(1.0, dtype), "aux": aux},
                                          self.probes_b.shape[0], self.probe_eps is not None)
        return frozen

    def _freeze(self, params, frozen: _Frozen, scale=None, aux=None, tstate=None):
        """Freezes a grade: `(next _Frozen, render-split prediction, final metrics)`;
        with the grade's derivatives `tstate`, the next _Frozen carries its own."""
        dtype = float_dtype()
        if scale is not None:  # replaying a checkpoint: its recorded scale is s_k
            frozen.scale = self.engine.expand(jnp.asarray(scale, dtype))
        aux = frozen.aux if aux is None else aux
        args = dict(model=self.model, block=self.block)
        tangent = None
        if tstate is None:
            feats, preds, final, next_scale = self.engine.freeze(
                params, self.problem, aux, frozen.feats, frozen.base, frozen.scale, **args)
        else:
            t = frozen.tangent
            (feats, preds, final, next_scale), (tfeats, tpreds, tscale) = \
                self.engine.freeze_jvp(params, tstate.params, self.problem, self.probes_b, aux,
                                       tstate.aux, frozen.feats, t["feats"], frozen.base,
                                       t["base"], frozen.scale, t["scale"], **args,
                                       eps=self.probe_eps)
            tangent = {"feats": tfeats, "base": tpreds, "scale": tscale, "aux": tstate.aux}
        render = np.asarray(preds[self.problem.render_split])
        return (_Frozen(feats, preds, jnp.asarray(next_scale, dtype), aux, tangent), render,
                jax.device_get(final))

    def _init_tangent(self, state: GradeState, frozen: _Frozen,
                      pending: Pending | None) -> GradeState | None:
        if self.probes_b is None:
            return None
        if pending is not None:
            if pending.tangent is None:
                raise ValueError("the checkpoint's pending grade holds no derivatives along "
                                 "the divergence probes")
            return pending.tangent
        p, twin = self.probes_b.shape[0], self.probe_eps is not None
        return GradeState(zero_tangent(state.params, p, twin),
                          zero_tangent(state.opt_state, p, twin), frozen.tangent["aux"])

    def _init_state(self, k: int, pending: Pending | None, aux) -> GradeState:
        eng, tx = self.engine, self.txs[k]
        if pending is not None:
            return pending.state
        given = None if self.init_params is None else self.init_params[k]
        if given is not None:
            params = jax.tree_util.tree_map(as_float, given)
        else:
            params = self.model.init_grade(self.model.grade_key(self.key, k), k,
                                           self.problem.in_dim)
        params = eng.expand(params)
        if eng.members is None:
            return GradeState(params, tx.init(params), aux)
        opt_state = jax.vmap(tx.init)(params)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(self.lrs, float_dtype())
        return GradeState(params, opt_state, aux)

    def _chunk_length(self, done: int, total: int) -> int:
        """Records in the next chunk: up to the next window, probe or checkpoint boundary."""
        r = self.record_every
        if self.select is not None:
            return 1  # a selector may keep the state of any record
        n = min(self.window - done % self.window, total - done)
        watch = None if self.step_size is None else self.step_size.every
        for every in (self.probe_every, self.checkpoint_every, watch):
            if every is not None:
                stride = max(1, -(-every // r))  # records
                n = min(n, stride - done % stride)
        return n

    def _run_chunk(self, k, state, tstate, frozen, rfeats, rbase, n, epochs_per_record):
        """One compiled chunk: `(state, tstate, metrics, seconds, compile seconds)`."""
        tx = self.txs[k]
        if tstate is None:
            args, jitted = (state, self.problem, rfeats, rbase, frozen.scale), self.engine.chunk
        else:
            t = frozen.tangent
            args = (state, tstate, self.problem, self.probes_b, rfeats,
                    {s: t["feats"][s] for s in rfeats}, rbase, {s: t["base"][s] for s in rbase},
                    frozen.scale, t["scale"])
            jitted = self.engine.chunk_jvp
        extra = {} if tstate is None else {"eps": self.probe_eps}
        sig = (self.engine.members, tstate is None, self.probe_eps, n, epochs_per_record, tx,
               self.model, self.block, jax.config.jax_enable_x64,
               jax.tree_util.tree_structure(args),
               tuple((jnp.shape(a), jnp.result_type(a))
                     for a in jax.tree_util.tree_leaves(args)))
        program, compile_s = _COMPILED.get(sig), 0.0
        if program is None:
            t0 = time.perf_counter()
            program = jitted.lower(*args, model=self.model, tx=tx, num_records=n,
                                   record_every=epochs_per_record, block=self.block,
                                   **extra).compile()
            compile_s = time.perf_counter() - t0
            _COMPILED.put(sig, program)
        t0 = time.perf_counter()
        out = program(*args)
        state, metrics = out[0], jax.device_get(out[-1])
        tstate = out[1] if tstate is not None else None
        return state, tstate, metrics, time.perf_counter() - t0, compile_s

    def _next_chunk(self, done: int, total: int, rest: int) -> tuple[int, int]:
        """`(records, epochs per record)` of the next chunk; a budget that is not a
        multiple of `record_every` ends with a short record of `rest` epochs, alone."""
        n = self._chunk_length(done, total)
        if done + n == total and rest:
            return (n - 1, self.record_every) if n > 1 else (1, rest)
        return n, self.record_every

    def _diverged(self, metrics: dict, loss0: np.ndarray) -> np.ndarray:
        """Per member: a non-finite metric, or a training loss beyond the divergence
        factor times the grade's initial loss."""
        eng, m = self.engine, self.engine.m
        bad = np.zeros(m, bool)
        for v in metrics.values():
            bad |= ~np.all(np.isfinite(eng.rows(v).reshape(m, -1)), axis=1)
        train = eng.rows(metrics["train_loss"]).reshape(m, -1)
        with np.errstate(invalid="ignore"):
            bad |= np.any(train > self.divergence_factor * np.abs(loss0)[:, None], axis=1)
        return bad

    def _train_grade(self, k, frozen: _Frozen, step0, pending, rows, alive, params_out,
                     scales, summaries):
        eng, r, budget = self.engine, self.record_every, self.budgets[k]
        state = self._init_state(k, pending, frozen.aux)
        tstate = self._init_tangent(state, frozen, pending)
        rec = tuple(self.problem.record_splits)
        rec = rec if "train" in rec else ("train", *rec)
        rfeats = {s: frozen.feats[s] for s in rec}
        rbase = {s: frozen.base[s] for s in rec}
        full, rest = divmod(budget, r)
        total = full + (rest > 0)  # records
        done, seconds, compile_s, best, loss0 = self._grade_start(state, frozen, pending)
        state, rate = self._start_rate(k, state, frozen, pending, rows[0])
        status = np.where(alive, "max_epochs", "diverged").astype(object)
        monitor = [row[self.problem.monitor] for row in rows[0] if row["grade"] == k + 1]
        last_score = None
        for cb in self.callbacks:
            cb.on_grade_start(k + 1, budget, min(done * r, budget))
        if self.probe is not None and done == 0:
            self._probe(k, state, frozen, 0, step0)
        while done < total:
            n, per = self._next_chunk(done, total, rest)
            state, tstate, metrics, sec, csec = self._run_chunk(k, state, tstate, frozen,
                                                                rfeats, rbase, n, per)
            seconds, compile_s = seconds + sec, compile_s + csec
            self._append_rows(rows, metrics, k, min(done * r, budget), per, step0)
            done += n
            epochs_done = min(done * r, budget)
            bad = self._diverged(metrics, loss0)
            status[alive & bad] = "diverged"
            alive &= ~bad
            state, steep = self._watch_rate(k, state, frozen, rows[0][-n:], epochs_done,
                                            bool(alive[0]))
            selected = False
            if self.select is not None and alive[0]:
                last_score, best, selected = self._score(rows[0][-1], best, epochs_done,
                                                         state, tstate)
            monitor.extend(row[self.problem.monitor] for row in rows[0][-n:])
            for cb in self.callbacks:
                cb.on_records(k + 1, rows[0][-n:])
            if not alive.any():
                break
            if selected or steep:
                status[0] = "selected" if selected else "eig_stop"
                break
            if eng.members is None and should_stop(monitor, self.window, self.tol):
                status[0] = "stopped"
                break
            if self.probe is not None and epochs_done % self.probe_every == 0:
                self._probe(k, state, frozen, epochs_done, step0)
            if eng.members is None and done < total:
                pending = Pending(k + 1, state, epochs_done, seconds, compile_s,
                                  float(loss0[0]), tstate, best)
                self._maybe_checkpoint(done, Checkpoint(
                    list(params_out), [float(s[0]) for s in scales], list(summaries[0]),
                    rows[0], frozen.aux if params_out else None, pending,
                    frozen.tangent if params_out else None))
        summary = {"epochs": min(done * r, budget), "seconds": seconds,
                   "compile_seconds": compile_s, **rate}
        state, tstate = self._keep(state, tstate, status[0], best, last_score, summary)
        return state, tstate, list(status), summary

    def _keep(self, state, tstate, status: str, best: Best | None, last_score, summary: dict):
        """What a grade keeps: with a selector, its best record's state (unless it
        diverged), whose epoch and score go into `summary`; else its last state."""
        if self.select is None:
            return state, tstate
        if best is not None and status != "diverged":
            summary.update(selected_epoch=best.epoch, criterion=best.score)
            return best.state, best.tangent
        summary.update(selected_epoch=summary["epochs"], criterion=last_score)
        return state, tstate

    def _sharpness(self, k: int, state: GradeState, frozen: _Frozen) -> float:
        """λ_max of the current grade's loss Hessian (the step size rule's estimate)."""
        loss = jax.tree_util.Partial(self.loss_fn, self.problem, frozen.feats["train"],
                                     frozen.base["train"], frozen.scale, state.aux)
        return self.step_size.sharpness(loss, state.params,
                                        jax.random.fold_in(self.key, 7919 + k))

    def _start_rate(self, k: int, state: GradeState, frozen: _Frozen,
                    pending: Pending | None, rows: list[dict]):
        """`(state, {"lr", "lambda_max"})` at a grade's start: η = c·2/λ_max with a
        `StepSize` of factor c; a continued grade's from its first record."""
        ss = self.step_size
        if ss is None or self.engine.members is not None:
            return state, {}
        if pending is not None:
            first = next((r for r in rows if r["grade"] == k + 1), None)
            lr = float(learning_rate(state.opt_state)) if first is None else first["lr"]
        elif ss.c is not None:
            lam = self._sharpness(k, state, frozen)
            if not (math.isfinite(lam) and lam > 0):
                raise ValueError(f"grade {k + 1}: the loss Hessian's largest eigenvalue is "
                                 f"{lam:.3g}; no step can be chosen from it")
            lr = ss.c * 2.0 / lam
            state = with_learning_rate(state, lr)
        else:
            lr = float(learning_rate(state.opt_state))
        return state, {"lr": lr, "lambda_max": None if ss.c is None else 2.0 * ss.c / lr}

    def _watch_rate(self, k: int, state: GradeState, frozen: _Frozen, new_rows: list[dict],
                    epochs_done: int, alive: bool) -> tuple[GradeState, bool]:
        """After a chunk with a `StepSize`: its rows get `lr` (and `sharpness`, where λ_max
        is estimated); at a re-estimate, η is lowered past the edge if asked, and the
        grade ends (True) where 1 − η·λ_max is below the eigenvalue stop."""
        ss = self.step_size
        if ss is None or self.engine.members is not None:
            return state, False
        lr = float(learning_rate(state.opt_state))
        for row in new_rows:
            row.update(lr=lr, sharpness=math.nan)
        if not alive or ss.every is None or epochs_done % ss.every:
            return state, False
        lam = self._sharpness(k, state, frozen)
        new_rows[-1]["sharpness"] = lam
        if ss.eig_stop is not None and 1.0 - lr * lam < ss.eig_stop:
            return state, True
        if ss.lower and lam * lr > 2.0:
            state = with_learning_rate(state, ss.c * 2.0 / lam)
        return state, False

    def _grade_start(self, state, frozen: _Frozen, pending: Pending | None):
        """`(records done, seconds, compile seconds, best record, initial loss)` of a grade
        starting fresh or continuing `pending`."""
        eng = self.engine
        if pending is not None:
            return (-(-pending.epochs // self.record_every), pending.seconds,
                    pending.compile_seconds, pending.best, np.full(eng.m, pending.initial_loss))
        loss0 = eng.rows(eng.initial_loss(
            state.params, self.problem, state.aux, frozen.feats, frozen.base, frozen.scale,
            model=self.model, block=self.block)).reshape(-1)
        return 0, 0.0, 0.0, None, loss0

    def _append_rows(self, rows, metrics: dict, k: int, epoch_before: int, per: int,
                     step0: int) -> None:
        """A chunk's records as history rows, per member."""
        eng = self.engine
        for j in range(eng.m):
            for i in range(len(eng.rows(metrics["train_loss"])[j])):
                epoch = epoch_before + (i + 1) * per
                rows[j].append({"grade": k + 1, "epoch": epoch, "step": step0 + epoch,
                                **{name: float(eng.rows(v)[j][i])
                                   for name, v in metrics.items()}})

    def _score(self, row: dict, best: Best | None, epoch: int, state, tstate):
        """The selector on the latest record: `(score, best record so far, done)`."""
        score = self.select.score(row)
        if self.select.keep_best and math.isfinite(score) and (best is None
                                                               or score < best.score):
            best = Best(score, epoch, state, tstate)
        return score, best, self.select.done(row)

    def _maybe_checkpoint(self, done: int, ckpt: Checkpoint) -> None:
        """Hands `ckpt` to the callbacks at checkpoint boundaries and when a stop is
        requested; then stops with `FitInterrupted`."""
        due = self.checkpoint_every is not None and \
            done % max(1, -(-self.checkpoint_every // self.record_every)) == 0
        stop = any(cb.stop_requested() for cb in self.callbacks)
        if due or stop:
            for cb in self.callbacks:
                cb.on_checkpoint(ckpt)
            if stop:
                raise FitInterrupted(ckpt)

    def _probe(self, k, state, frozen: _Frozen, epoch, step0):
        loss = jax.tree_util.Partial(self.loss_fn, self.problem, frozen.feats["train"],
                                     frozen.base["train"], frozen.scale, state.aux)
        found = self.probe(k + 1, epoch, state.params, loss)
        self.probes.append({"grade": k + 1, "epoch": epoch, "step": step0 + epoch, **found})
