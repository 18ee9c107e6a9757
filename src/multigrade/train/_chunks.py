"""A grade's chunks: how many records the next compiled chunk holds (`ChunkPlan`: up to the
next window, probe, checkpoint or step-size boundary; one record at a time under a
selector), running one (its program compiled once per shape and kept, `_COMPILED`), and
its records as history rows and divergence flags."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from multigrade.train._engine import _COMPILED
from multigrade.train._programs import ChunkSpec


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """Chunk lengths in records of `record_every` epochs: up to the next multiple of
    `window` (the stopping rule's) and of each of `boundaries` (epochs: probes, checkpoints,
    step-size re-estimates; None: none); `every_record`: one record per chunk (a selector
    may keep the state of any record)."""

    record_every: int
    window: int
    every_record: bool
    boundaries: tuple[int | None, ...] = ()

    def length(self, done: int, total: int) -> int:
        """Records in the next chunk: up to the next window, probe or checkpoint boundary."""
        r = self.record_every
        if self.every_record:
            return 1
        n = min(self.window - done % self.window, total - done)
        for every in self.boundaries:
            if every is not None:
                stride = max(1, -(-every // r))  # records
                n = min(n, stride - done % stride)
        return n

    def next(self, done: int, total: int, rest: int) -> tuple[int, int]:
        """`(records, epochs per record)` of the next chunk; a budget that is not a
        multiple of `record_every` ends with a short record of `rest` epochs, alone."""
        n = self.length(done, total)
        if done + n == total and rest:
            return (n - 1, self.record_every) if n > 1 else (1, rest)
        return n, self.record_every


def run_chunk(engine, model, block, tx, problem, state, tstate, frozen, rfeats, rbase, step,
              n, epochs_per_record, probes_b=None, probe_eps=None):
    """One compiled chunk from the run's step `step`: `(state, tstate, metrics, seconds,
    compile seconds)`."""
    if tstate is None:
        args = (state, problem, rfeats, rbase, frozen.scale,
                jnp.asarray(step, jnp.int32))
        jitted = engine.chunk
    else:
        t = frozen.tangent
        args = (state, tstate, problem, probes_b, (rfeats, rbase, frozen.scale),
                ({s: t["feats"][s] for s in rfeats}, {s: t["base"][s] for s in rbase},
                 t["scale"]))
        jitted = engine.chunk_jvp
    extra = {} if tstate is None else {"eps": probe_eps}
    sig = (engine.members, tstate is None, probe_eps, n, epochs_per_record, tx,
           model, block, jax.config.jax_enable_x64,
           jax.tree_util.tree_structure(args),
           tuple((jnp.shape(a), jnp.result_type(a))
                 for a in jax.tree_util.tree_leaves(args)))
    program, compile_s = _COMPILED.get(sig), 0.0
    if program is None:
        t0 = time.perf_counter()
        spec = ChunkSpec(model, tx, n, epochs_per_record, block)
        program = jitted.lower(*args, spec=spec, **extra).compile()
        compile_s = time.perf_counter() - t0
        _COMPILED.put(sig, program)
    t0 = time.perf_counter()
    out = program(*args)
    state, metrics = out[0], jax.device_get(out[-1])
    tstate = out[1] if tstate is not None else None
    return state, tstate, metrics, time.perf_counter() - t0, compile_s


def diverged(engine, metrics: dict, loss0: np.ndarray, factor: float) -> np.ndarray:
    """Per member: a non-finite metric, or a training loss beyond `factor` times the
    grade's initial loss."""
    eng, m = engine, engine.m
    bad = np.zeros(m, bool)
    for v in metrics.values():
        bad |= ~np.all(np.isfinite(eng.rows(v).reshape(m, -1)), axis=1)
    train = eng.rows(metrics["train_loss"]).reshape(m, -1)
    with np.errstate(invalid="ignore"):
        bad |= np.any(train > factor * np.abs(loss0)[:, None], axis=1)
    return bad


def append_rows(engine, rows, metrics: dict, k: int, epoch_before: int, per: int,
                step0: int, coarse: int | None = None) -> None:
    """A chunk's records as history rows, per member; on a coarser grid than the fit's
    last (`coarse`: its factor), each row says so in `coarse` (its metrics are that grid's)."""
    eng = engine
    where = {} if coarse is None else {"coarse": coarse}
    for j in range(eng.m):
        for i in range(len(eng.rows(metrics["train_loss"])[j])):
            epoch = epoch_before + (i + 1) * per
            rows[j].append({"grade": k + 1, "epoch": epoch, "step": step0 + epoch, **where,
                            **{name: float(eng.rows(v)[j][i])
                               for name, v in metrics.items()}})
