"""The compiled pieces of one grade: an epoch, a chunk of records, the freeze after a grade."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from multigrade._types import Array
from multigrade.model import GradeModel, blocked
from multigrade.problems import Problem
from multigrade.problems.minibatch import MiniBatch
from multigrade.train._results import GradeState

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


def make_batch_epoch(problem, tx: optax.GradientTransformation, feats: Array, base: Array,
                     scale, apply: Callable | None = None
                     ) -> Callable[[GradeState, Array], tuple[GradeState, Array]]:
    """One step of the current grade on a random mini-batch (`problem` a
    `problems.MiniBatch`): `epoch(state, step)` draws step `step`'s anchors, evaluates the
    grade at their stencils only, updates the auxiliary state there and takes one
    optimiser step along the batch loss's gradient (an unbiased estimate of the full
    epoch's)."""
    if apply is None:
        from multigrade.model import grade_output as apply

    def epoch(state: GradeState, step) -> tuple[GradeState, Array]:
        anchors, points = problem.draw(step)
        rows = points.reshape(-1)
        g, pullback = jax.vjp(lambda p: apply(p, feats[rows]), state.params)
        pred = (base[rows] + scale * g).reshape(*points.shape, -1)
        aux = problem.aux_at(state.aux, anchors, pred)
        loss, dpred = jax.value_and_grad(problem.batch_loss)(pred, aux, anchors)
        (grads,) = pullback(scale * dpred.reshape(g.shape))
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


class ChunkSpec(NamedTuple):
    """What a chunk's program is compiled for (its static argument): `num_records`
    records of `record_every` epochs of `model`'s current grade under `tx`."""

    model: GradeModel
    tx: optax.GradientTransformation
    num_records: int
    record_every: int
    block: int | None


def _chunk(state: GradeState, problem, feats: dict, base: dict, scale, step0, *,
           spec: ChunkSpec):
    """`spec.num_records` records of `spec.record_every` epochs; returns the state and the
    metrics. `step0` is the run's step index of the chunk's first epoch (what a
    mini-batch problem draws its batches from)."""
    model, block = spec.model, spec.block
    if isinstance(problem, MiniBatch):
        epoch = make_batch_epoch(problem, spec.tx, feats["train"], base["train"], scale,
                                 model.grade_output)
    else:
        full = make_epoch(problem, spec.tx, feats["train"], base["train"], scale, block,
                          model.grade_output)

        def epoch(s, _):
            return full(s)

    def record(carry, _):
        state, step = carry
        state, _ = jax.lax.scan(lambda s, i: (epoch(s, i)[0], None), state,
                                step + jnp.arange(spec.record_every))
        preds = _split_predictions(model, state.params, feats, base, scale, block)
        return (state, step + spec.record_every), problem.metrics(preds, state.aux)

    (state, _), metrics = jax.lax.scan(record, (state, step0), None,
                                       length=spec.num_records)
    return state, metrics


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

