"""The loop: grades one after another, chunks within a grade, the rules between chunks."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from multigrade._types import Array, PRNGKeyArray, PyTree, as_float, float_dtype
from multigrade.model import GradeModel
from multigrade.problems import Problem
from multigrade.problems.minibatch import unbatched
from multigrade.train._divergence import zero_tangent
from multigrade.train._engine import _COMPILED, _Engine
from multigrade.train._programs import ChunkSpec, grade_loss
from multigrade.train._results import (
    Best,
    Checkpoint,
    FitInterrupted,
    FitResult,
    GradeState,
    GradeSummary,
    Pending,
    _rows_to_history,
)
from multigrade.train._rules import (
    Selector,
    StepSize,
    grade_gain,
    learning_rate,
    should_stop,
    with_learning_rate,
)


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
    # one problem per grade (coarse-to-fine); `problem` is then the current grade's
    problems: Sequence[Problem] | None = None

    def __post_init__(self):
        self.probes: list[dict] = []
        if self.problems is None:
            self.problems = [self.problem] * self.model.num_grades
        self.problem = self.problems[0]
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
            frozen = self._enter(k, frozen, params_out, [float(s[0]) for s in scales])
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

        if any(p is not self.problem for p in self.problems[:len(params_out)]):
            renders = self._measure_on_last(params_out, summaries[0], renders)
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
            frozen = self._enter(k, frozen, start.params[:k],
                                 [g.scale for g in start.grades[:k]])
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

    def _enter(self, k: int, frozen: _Frozen, params: Sequence, scales: Sequence[float]
               ) -> _Frozen:
        """Before grade k: on a grid other than the previous grade's (coarse-to-fine),
        the finished grades frozen again on grade k's problem, from its start (u as at a
        first grade: a new grid has no u yet)."""
        same = unbatched(self.problems[k]) is unbatched(self.problem)
        self.problem = self.problems[k]
        if same:  # the same grid (a mini-batch grade samples it)
            return frozen
        frozen = self._initial_frozen()
        for p, s in zip(params, scales):
            frozen, _, _ = self._freeze(p, frozen, s)
        return frozen

    def _measure_on_last(self, params: list, summaries: list[GradeSummary],
                         renders: list) -> list:
        """Coarse-to-fine: the prediction and metrics after each grade trained on another
        grid, again on the last grade's problem (the full grid; u = 0 there), so that the
        result's images all have its size."""
        frozen, out = self._initial_frozen(), list(renders)
        for j, (p, g) in enumerate(zip(params, summaries)):
            frozen, render, final = self._freeze(p, frozen, g.scale)
            if unbatched(self.problems[j]) is not unbatched(self.problem):
                out[j] = render
                g.metrics = {n: float(v) for n, v in final.items()}
        return out

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
                params, unbatched(self.problem), aux, frozen.feats, frozen.base, frozen.scale,
                **args)
        else:
            t = frozen.tangent
            (feats, preds, final, next_scale), (tfeats, tpreds, tscale) = \
                self.engine.freeze_jvp(params, tstate.params, self.problem, self.probes_b,
                                       (aux, frozen.feats, frozen.base, frozen.scale),
                                       (tstate.aux, t["feats"], t["base"], t["scale"]),
                                       **args, eps=self.probe_eps)
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

    def _run_chunk(self, k, state, tstate, frozen, rfeats, rbase, step, n, epochs_per_record):
        """One compiled chunk from the run's step `step`: `(state, tstate, metrics, seconds,
        compile seconds)`."""
        tx = self.txs[k]
        if tstate is None:
            args = (state, self.problem, rfeats, rbase, frozen.scale,
                    jnp.asarray(step, jnp.int32))
            jitted = self.engine.chunk
        else:
            t = frozen.tangent
            args = (state, tstate, self.problem, self.probes_b, (rfeats, rbase, frozen.scale),
                    ({s: t["feats"][s] for s in rfeats}, {s: t["base"][s] for s in rbase},
                     t["scale"]))
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
            spec = ChunkSpec(self.model, tx, n, epochs_per_record, self.block)
            program = jitted.lower(*args, spec=spec, **extra).compile()
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
        rfeats, rbase = self._record_inputs(frozen)
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
            state, tstate, metrics, sec, csec = self._run_chunk(
                k, state, tstate, frozen, rfeats, rbase, step0 + min(done * r, budget), n, per)
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
            ended = self._ended(selected, steep, monitor)
            if ended is not None:
                status[0] = ended
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
            elif done < total and any(cb.stop_requested() for cb in self.callbacks):
                raise FitInterrupted(None)  # members: no checkpoint to hand over
        summary = {"epochs": min(done * r, budget), "seconds": seconds,
                   "compile_seconds": compile_s, **rate}
        state, tstate = self._keep(state, tstate, status[0], best, last_score, summary)
        return state, tstate, list(status), summary

    def _record_inputs(self, frozen: _Frozen) -> tuple[dict, dict]:
        """The frozen features and predictions of the splits a record measures."""
        rec = tuple(self.problem.record_splits)
        rec = rec if "train" in rec else ("train", *rec)
        return {s: frozen.feats[s] for s in rec}, {s: frozen.base[s] for s in rec}

    def _ended(self, selected: bool, steep: bool, monitor: list[float]) -> str | None:
        """Why the grade ends after this chunk (its status), or None: it goes on."""
        if selected or steep:
            return "selected" if selected else "eig_stop"
        if self.engine.members is None and should_stop(monitor, self.window, self.tol):
            return "stopped"
        return None

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
