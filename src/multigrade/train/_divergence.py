"""Derivatives of the training along the observation: the divergence SURE needs."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from multigrade._types import Array, as_float
from multigrade.problems import ObservedProblem, Problem
from multigrade.train._programs import ChunkSpec, _freeze, _split_predictions, make_epoch

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


def _chunk_jvp(state, tstate, problem, probes, frozen: tuple, tfrozen: tuple, *,
               spec: ChunkSpec, eps):
    """`_chunk` with the derivative of every epoch along each probe b of the observation
    (`_along`); the metrics gain `divergence`, the mean over probes of bᵀ(∂P/∂y)b, at
    every record. `frozen` is the earlier grades' `(feats, base, scale)`, `tfrozen` their
    derivatives (or twins)."""
    (feats, base, scale), (tfeats, tbase, tscale) = frozen, tfrozen
    model, tx, block = spec.model, spec.tx, spec.block
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
        carry, _ = jax.lax.scan(epoch, carry, None, length=spec.record_every)
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
        record, (floats, ints, jax.tree_util.tree_leaves(tstate)), None,
        length=spec.num_records)
    return rebuild(fl, ints), rebuild(tfl, [None] * len(ints)), metrics


def _freeze_jvp(params, tparams, problem, probes, frozen: tuple, tfrozen: tuple, *, model,
                block, eps):
    """`_freeze` and the derivatives of its features, predictions and next scale;
    `frozen` is `(aux, feats, base, scale)`, `tfrozen` their derivatives (or twins)."""

    def f(p, y, a, fe, ba, sc):
        nf, preds, metrics, ns = _freeze(p, problem.with_observation(y), a, fe, ba, sc,
                                         model=model, block=block)
        return (nf, preds, ns), metrics

    y = problem.observed
    ty = probes if eps is None else y[None] + eps * probes
    (nf, preds, ns), (tnf, tpreds, tns), metrics = _along(
        f, (params, y, *frozen), (tparams, ty, *tfrozen), eps)
    return (nf, preds, metrics, ns), (tnf, tpreds, tns)



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
