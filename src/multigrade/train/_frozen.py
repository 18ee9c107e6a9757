"""What the finished grades leave for the next one, on every split: their features φ, the
cumulative prediction P, the next grade's scale and the auxiliary state u (`_Frozen`),
made and advanced by a `Freezer` (with the derivatives along SURE's probes when asked)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from multigrade._types import Array, PyTree, float_dtype
from multigrade.model import GradeModel
from multigrade.problems.minibatch import unbatched
from multigrade.train._divergence import zero_tangent
from multigrade.train._engine import _Engine
from multigrade.train._results import GradeState, Pending


@dataclasses.dataclass
class _Frozen:
    """The frozen grades' contribution, on every split: features φ, prediction P, the
    next grade's scale and the auxiliary state (member axis first in a sweep)."""

    feats: dict
    base: dict
    scale: Array
    aux: PyTree
    tangent: dict | None = None  # d/dy of feats, base, scale and aux (divergence probes)


@dataclasses.dataclass(frozen=True)
class Freezer:
    """Makes the `_Frozen` of a first grade and freezes each finished grade into the next
    one's (compiled by the engine; `probes_b` and `probe_eps`: SURE's divergence probes)."""

    model: GradeModel
    engine: _Engine
    block: int | None
    probes_b: Array | None = None
    probe_eps: float | None = None

    def initial(self, problem) -> _Frozen:
        """Before a first grade (or on a new grid): x as features, P = 0, s = 1, u from P."""
        dtype = float_dtype()
        feats = {s: jnp.asarray(v, dtype) for s, v in problem.inputs.items()}
        base = {s: jnp.zeros((v.shape[0], self.model.out_dim), dtype) for s, v in feats.items()}
        aux = problem.init_aux(base["train"])
        frozen = _Frozen(*self.engine.expand((feats, base, jnp.asarray(1.0, dtype), aux)))
        if self.probes_b is not None:
            frozen.tangent = zero_tangent({"feats": feats, "base": base,
                                           "scale": jnp.asarray(1.0, dtype), "aux": aux},
                                          self.probes_b.shape[0], self.probe_eps is not None)
        return frozen

    def freeze(self, problem, params, frozen: _Frozen, scale=None, aux=None, tstate=None):
        """Freezes a grade of `problem`: `(next _Frozen, render-split prediction, final
        metrics)`; with the grade's derivatives `tstate`, the next _Frozen carries its own."""
        dtype = float_dtype()
        if scale is not None:  # replaying a checkpoint: its recorded scale is s_k
            frozen.scale = self.engine.expand(jnp.asarray(scale, dtype))
        aux = frozen.aux if aux is None else aux
        args = dict(model=self.model, block=self.block)
        tangent = None
        if tstate is None:
            feats, preds, final, next_scale = self.engine.freeze(
                params, unbatched(problem), aux, frozen.feats, frozen.base, frozen.scale,
                **args)
        else:
            t = frozen.tangent
            (feats, preds, final, next_scale), (tfeats, tpreds, tscale) = \
                self.engine.freeze_jvp(params, tstate.params, problem, self.probes_b,
                                       (aux, frozen.feats, frozen.base, frozen.scale),
                                       (tstate.aux, t["feats"], t["base"], t["scale"]),
                                       **args, eps=self.probe_eps)
            tangent = {"feats": tfeats, "base": tpreds, "scale": tscale, "aux": tstate.aux}
        render = np.asarray(preds[problem.render_split])
        return (_Frozen(feats, preds, jnp.asarray(next_scale, dtype), aux, tangent), render,
                jax.device_get(final))

    def init_tangent(self, state: GradeState, frozen: _Frozen,
                     pending: Pending | None) -> GradeState | None:
        """The grade's derivatives along the probes at its start (None without probes)."""
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

    def measure_on(self, problem, problems, params: list, summaries: list, renders: list
                   ) -> list:
        """Coarse-to-fine: the prediction and metrics after each grade trained on another
        grid (`problems[j]`), again on the last grade's `problem` (the full grid; u = 0
        there), so that the result's images all have its size; updates `summaries`'
        metrics and returns the renders."""
        frozen, out = self.initial(problem), list(renders)
        for j, (p, g) in enumerate(zip(params, summaries)):
            frozen, render, final = self.freeze(problem, p, frozen, g.scale)
            if unbatched(problems[j]) is not unbatched(problem):
                out[j] = render
                g.metrics = {n: float(v) for n, v in final.items()}
        return out
