"""`fit`: the one training loop, for MGDL, SGDL and every problem.

Grades train one after another. For grade k the earlier grades are frozen: their features
φ_{k-1} and their summed prediction P_{k-1} on every split are computed once, when grade
k-1 finishes, and passed to grade k's compiled program as constants. Grade k therefore
costs what a shallow network costs, and never back-propagates into earlier grades.

Epochs run inside `jit` in chunks: a chunk is `window` records of `record_every` epochs
(`lax.scan` in `lax.scan`), so Python is touched once per `window · record_every` epochs,
when the stopping rule of SPEC §3 is checked and the progress bar moves.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from multigrade._types import Array, PRNGKeyArray, PyTree, as_float, float_dtype
from multigrade.model import Model, blocked, grade_output

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


# ---------------------------------------------------------------------------------------
# Results


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

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs, 1)


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

    model: Model
    params: list[PyTree]  # GradeParams per grade (MultiGrade), sub-networks (MultiScale)
    scales: list[float]
    grades: list[GradeSummary]
    history: dict[str, np.ndarray]
    predictions: list[np.ndarray]
    aux: Any
    problem: Any
    probes: list[dict] = dataclasses.field(default_factory=list)

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

    def predict(self, x, grades: int | None = None) -> Array:
        """Prediction of the first `grades` grades (all by default) at inputs `x` `(n, d)`."""
        k = len(self.params) if grades is None else grades
        x = as_float(x)
        return self.model.predict(self.params[:k], x, self.scales[:k])


# ---------------------------------------------------------------------------------------
# Compiled pieces


class GradeState(NamedTuple):
    params: PyTree
    opt_state: optax.OptState
    aux: PyTree


def make_epoch(problem, tx: optax.GradientTransformation, feats: Array, base: Array,
               scale, block: int | None = None, apply: Callable = grade_output
               ) -> Callable[[GradeState], tuple[GradeState, Array]]:
    """One epoch of the current grade: aux update, then one optimiser step.

    One forward pass serves both: `jax.vjp` evaluates the grade once, the auxiliary state
    (u) is updated from that prediction, and the loss gradient with respect to the
    prediction is pulled back through the same linearisation. The grade (`apply(params,
    x)`, a model's `grade_output`) is evaluated in row blocks of `block` samples (see
    `model.blocked`).
    """

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


def make_grade_loss(model, problem, feats: Array, base: Array, scale, aux,
                    block: int | None = None) -> Callable[[PyTree], Array]:
    """The current grade's loss as a function of its parameters alone (earlier grades and
    the auxiliary state u held fixed): what the Hessian analysis differentiates."""
    def loss(params):
        g = blocked(functools.partial(model.grade_output, params), feats, block)
        return problem.loss(base + scale * g, aux)
    return loss


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


def _freeze(params, problem, aux, feats: dict, base: dict, scale, *, model, block):
    """After a grade: next features φ_k, cumulative predictions P_k and metrics, every split."""
    preds = _split_predictions(model, params, feats, base, scale, block)
    phi = functools.partial(model.grade_features, params)
    next_feats = {s: blocked(phi, feats[s], block) for s in feats}
    return next_feats, preds, problem.metrics(preds, aux), problem.next_scale(preds["train"])


# A sweep trains B members at once: the same functions, vmapped over a leading axis of the
# state, features, predictions and scale (the problem is shared).
_STATIC = ("model", "tx", "num_records", "record_every", "block")
_train_chunk = jax.jit(_chunk, static_argnames=_STATIC)
_train_chunk_batched = jax.jit(
    lambda state, problem, feats, base, scale, **kw: jax.vmap(
        functools.partial(_chunk, **kw), in_axes=(0, None, 0, 0, 0))(
            state, problem, feats, base, scale),
    static_argnames=_STATIC)
_freeze_single = jax.jit(_freeze, static_argnames=("model", "block"))
_freeze_batched = jax.jit(
    lambda params, problem, aux, feats, base, scale, **kw: jax.vmap(
        functools.partial(_freeze, **kw), in_axes=(0, None, 0, 0, 0, 0))(
            params, problem, aux, feats, base, scale),
    static_argnames=("model", "block"))


# ---------------------------------------------------------------------------------------
# The loop


def _per_grade(value, num_grades: int, what: str) -> list:
    # An Optax transformation is itself a tuple: it is one value, not one per grade.
    if isinstance(value, (list, tuple)) and not isinstance(value, optax.GradientTransformation):
        if len(value) != num_grades:
            raise ValueError(f"{what}: {len(value)} values given for {num_grades} grades")
        return list(value)
    return [value] * num_grades
def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                    disable=not enabled)


def _info(metrics: dict[str, float]) -> str:
    keys = [k for k in ("train_loss", "val_loss", "train_psnr", "val_psnr", "psnr")
            if k in metrics]
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys)


def _validate(model, problem, budgets, record_every, window, tol, block):
    if block == "auto":
        block = 4096 if jax.default_backend() == "cpu" else None
    elif block is not None and (not isinstance(block, int) or block < 1):
        raise ValueError(f"block must be a positive integer, None or 'auto', got {block!r}")
    if record_every < 1 or window < 1:
        raise ValueError("record_every and window must be at least 1")
    for k, e in enumerate(budgets):
        if e < 1:
            raise ValueError(f"grade {k + 1}: epochs must be at least 1, got {e}")
        if e % record_every:
            raise ValueError(f"grade {k + 1}: epochs ({e}) must be a multiple of "
                             f"record_every ({record_every})")
    if tol is not None and tol < 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    if problem.out_dim != model.out_dim:
        raise ValueError(f"the problem has {problem.out_dim} outputs, the model {model.out_dim}")
    return block


def fit(
    model: Model,
    problem,
    *,
    optimizer: optax.GradientTransformation | Sequence[optax.GradientTransformation],
    epochs: int | Sequence[int],
    key: PRNGKeyArray,
    record_every: int = 10,
    window: int = 20,
    tol: float | None = None,
    progress: bool = True,
    label: str | None = None,
    block: int | None | str = "auto",
    probe: Callable | None = None,
    probe_every: int | None = None,
) -> FitResult:
    """Trains `model` on `problem`, grade by grade.

    Args:
        model: a `MultiGrade` (SGDL is a one-grade model) or a `MultiScale`.
        problem: a problem object (`multigrade.problems`).
        optimizer: any Optax transformation (plain GD is `optax.sgd(lr)`), or one per grade.
        epochs: the maximum number of epochs (full-batch steps), or one per grade; each must
            be a multiple of `record_every`.
        key: initialises grade k with `fold_in(key, k)`.
        record_every: epochs between records of the metrics (SPEC's r).
        window: records per comparison of the stopping rule (20 in the paper).
        tol: the stopping rule's tolerance; None trains every grade for its full budget.
        progress: show a Rich progress bar per grade.
        label: the progress bar's name (default: the model's name).
        block: evaluate grades on row blocks of this many samples (faster on CPUs, same
            numbers up to summation order); None evaluates all samples at once; `"auto"`
            is 4096 on a CPU and None on an accelerator.
        probe: called as `probe(grade, epoch, params, grade_loss)` at epoch 0 and every
            `probe_every` epochs of each grade, where `grade_loss(params)` is the current
            grade's loss with everything else fixed; what it returns (a dict) is collected
            in `FitResult.probes` with `grade`, `epoch` and `step` added.
        probe_every: epochs between probes, a multiple of `record_every`.

    Returns:
        A `FitResult`. A grade whose loss becomes NaN or inf is recorded as `"diverged"` and
        no later grade is trained.
    """
    k_grades = model.num_grades
    txs = _per_grade(optimizer, k_grades, "optimizer")
    budgets = [int(e) for e in _per_grade(epochs, k_grades, "epochs")]
    block = _validate(model, problem, budgets, record_every, window, tol, block)
    if probe is not None and (probe_every is None or probe_every < 1
                              or probe_every % record_every):
        raise ValueError(f"probe_every must be a positive multiple of record_every "
                         f"({record_every}), got {probe_every}")
    return _run(model, problem, txs, budgets, key, record_every=record_every, window=window,
                tol=tol, progress=progress, label=label, block=block, probe=probe,
                probe_every=probe_every)[0]


def fit_sweep(
    model: Model,
    problem,
    learning_rates: Sequence[float],
    *,
    epochs: int | Sequence[int],
    key: PRNGKeyArray,
    optimizer: Callable[..., optax.GradientTransformation] = optax.sgd,
    record_every: int = 10,
    progress: bool = True,
    label: str | None = None,
    block: int | None | str = "auto",
) -> list[FitResult]:
    """Trains one model per learning rate, all in one compiled, vmapped program.

    Every member starts from the same initialisation (`key`) and differs only in its
    learning rate; the results equal separate `fit` runs with `optimizer(lr)`. Members
    whose loss becomes NaN keep their history; the others train on.

    Args:
        optimizer: an Optax optimiser factory taking `learning_rate` (default `optax.sgd`,
            plain gradient descent).

    Returns:
        One `FitResult` per learning rate, in order; each reports the sweep's seconds
        divided by the number of members.
    """
    lrs = np.asarray(learning_rates, dtype=float)
    if lrs.ndim != 1 or lrs.size == 0 or not np.all(lrs > 0):
        raise ValueError(f"learning rates must be a non-empty list of positive numbers, "
                         f"got {learning_rates}")
    budgets = [int(e) for e in _per_grade(epochs, model.num_grades, "epochs")]
    block = _validate(model, problem, budgets, record_every, 1, None, block)
    tx = optax.inject_hyperparams(optimizer)(learning_rate=float(lrs[0]))
    return _run(model, problem, [tx] * model.num_grades, budgets, key,
                record_every=record_every, window=20, tol=None, progress=progress,
                label=label, block=block, probe=None, probe_every=None, lrs=lrs)


def _broadcast(tree, b: int):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (b, *jnp.shape(a))), tree)


def _run(model, problem, txs, budgets, key, *, record_every, window, tol, progress, label,
         block, probe, probe_every, lrs=None) -> list[FitResult]:
    """The grade loop; with `lrs`, every quantity carries a leading axis of members."""
    members = None if lrs is None else len(lrs)
    chunk_fn = _train_chunk if members is None else _train_chunk_batched
    freeze_fn = _freeze_single if members is None else _freeze_batched
    dtype = float_dtype()
    feats = {s: jnp.asarray(v, dtype) for s, v in problem.inputs.items()}
    base = {s: jnp.zeros((v.shape[0], model.out_dim), dtype) for s, v in feats.items()}
    aux = problem.init_aux(base["train"])
    scale = jnp.asarray(1.0, dtype)
    if members is not None:
        feats, base, aux, scale = _broadcast((feats, base, aux, scale), members)
    rec = tuple(problem.record_splits)
    rec = rec if "train" in rec else ("train", *rec)
    m = 1 if members is None else members

    params_out, scales, summaries, probes = [], [], [], []
    rows = [[] for _ in range(m)]
    renders = [[] for _ in range(m)]
    alive = np.ones(m, bool)
    compiled: dict = {}
    step0 = 0
    with _progress(progress) as bar:
        for k in range(model.num_grades):
            tx, budget = txs[k], budgets[k]
            params = model.init_grade(model.grade_key(key, k), k, problem.in_dim)
            if members is None:
                opt_state = tx.init(params)
            else:
                params = _broadcast(params, members)
                opt_state = jax.vmap(tx.init)(params)
                opt_state.hyperparams["learning_rate"] = jnp.asarray(lrs, dtype)
            state = GradeState(params, opt_state, aux)
            rfeats = {s: feats[s] for s in rec}
            rbase = {s: base[s] for s in rec}
            task = bar.add_task(f"{label or model.name} grade {k + 1}/{model.num_grades}",
                                total=budget, info="")
            total_records = budget // record_every
            done, status, records, seconds, compile_s = 0, "max_epochs", [], 0.0, 0.0
            status_m = np.where(alive, "max_epochs", "diverged").astype(object)

            def run_probe(state, epoch, k=k, feats=feats, base=base, scale=scale, step0=step0):
                loss = make_grade_loss(model, problem, feats["train"], base["train"], scale,
                                       state.aux, block)
                found = probe(k + 1, epoch, state.params, loss)
                probes.append({"grade": k + 1, "epoch": epoch, "step": step0 + epoch, **found})

            if probe is not None:
                run_probe(state, 0)
            while done < total_records:
                # chunks end at every window boundary (stopping rule) and probe point
                n = min(window - done % window, total_records - done)
                if probe is not None:
                    n = min(n, probe_every // record_every - done % (probe_every // record_every))
                sig = (n, id(tx), str(jax.tree_util.tree_structure(state)),
                       tuple(a.shape for a in jax.tree_util.tree_leaves((state, rfeats))))
                if sig not in compiled:
                    t0 = time.perf_counter()
                    compiled[sig] = chunk_fn.lower(
                        state, problem, rfeats, rbase, scale, model=model, tx=tx,
                        num_records=n, record_every=record_every, block=block).compile()
                    compile_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                state, metrics = compiled[sig](state, problem, rfeats, rbase, scale)
                metrics = jax.device_get(metrics)
                seconds += time.perf_counter() - t0
                for j in range(m):
                    for i in range(n):
                        row = {name: float(v[i] if members is None else v[j, i])
                               for name, v in metrics.items()}
                        epoch = (done + i + 1) * record_every
                        rows[j].append({"grade": k + 1, "epoch": epoch, "step": step0 + epoch,
                                        **row})
                done += n
                finite = np.ones(m, bool)
                for v in metrics.values():
                    finite &= np.all(np.isfinite(np.asarray(v).reshape(m, -1)), axis=1)
                newly = alive & ~finite
                status_m[newly] = "diverged"
                alive &= finite
                if members is None:
                    records.extend(r[problem.monitor] for r in rows[0][-n:])
                bar.update(task, completed=done * record_every, info=_info(rows[0][-1]))
                if not alive.any():
                    status = "diverged"
                    break
                if members is None and should_stop(records, window, tol):
                    status = "stopped"
                    break
                if probe is not None and done % (probe_every // record_every) == 0:
                    run_probe(state, done * record_every)
            epochs_run = done * record_every
            bar.update(task, total=epochs_run)

            feats, preds, final, next_scale = freeze_fn(
                state.params, problem, state.aux, feats, base, scale, model=model, block=block)
            final = jax.device_get(final)
            summaries.append([GradeSummary(
                grade=k + 1, epochs=epochs_run,
                status=status if members is None else str(status_m[j]),
                seconds=seconds / m, compile_seconds=compile_s / m,
                scale=float(np.asarray(scale).reshape(-1)[j]),
                metrics={name: float(np.asarray(v).reshape(-1)[j]) for name, v in final.items()})
                for j in range(m)])
            params_out.append(state.params)
            scales.append(np.asarray(scale).reshape(-1))
            render = np.asarray(preds[problem.render_split])
            for j in range(m):
                renders[j].append(render if members is None else render[j])
            step0 += epochs_run
            base, aux, scale = preds, state.aux, jnp.asarray(next_scale, dtype)
            if status == "diverged":
                break

    results = []
    for j in range(m):
        history = {name: np.asarray([r.get(name, np.nan) for r in rows[j]])
                   for name in (rows[j][0] if rows[j] else {})}
        params_j = params_out if members is None else [
            jax.tree_util.tree_map(lambda a, j=j: a[j], p) for p in params_out]
        aux_j = aux if members is None else jax.tree_util.tree_map(lambda a, j=j: a[j], aux)
        results.append(FitResult(
            model, params_j, [float(s[j]) for s in scales], [g[j] for g in summaries],
            history, renders[j], aux_j, problem, probes if members is None else []))
    return results
