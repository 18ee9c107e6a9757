"""The loop: grades one after another, chunks within a grade, the rules between chunks.

Its neighbours do the rest: `_frozen` (what finished grades leave for the next),
`_chunks` (how long a chunk is, running it, its records), `_stepsize` (GD's rate from
λ_max) and `_programs` / `_engine` (the compiled pieces)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from multigrade._types import Array, PRNGKeyArray, as_float, float_dtype
from multigrade.metrics import feature_stats
from multigrade.model import GradeModel
from multigrade.problems import Problem
from multigrade.problems.minibatch import unbatched
from multigrade.train._chunks import ChunkPlan, append_rows, diverged, run_chunk
from multigrade.train._engine import _Engine
from multigrade.train._frozen import Freezer, _Frozen
from multigrade.train._programs import grade_loss
from multigrade.train._results import (
    Best,
    Checkpoint,
    FitInterrupted,
    FitResult,
    GradeState,
    GradeSummary,
    Held,
    Pending,
    _rows_to_history,
)
from multigrade.train._rules import Selector, StepSize, no_gain_of, should_stop, too_little
from multigrade.train._stepsize import RateRule


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
    # per grade: its stages (problem, first epoch, end epoch); several for a curriculum
    # (`problems.Curriculum`), whose last is the grade's problem
    stages: Sequence[Sequence[tuple]] | None = None
    tries: Sequence[int] | None = None  # per grade: initialisations tried (None: one each)
    try_rule: str = "loss"  # which try a grade keeps: least training loss, or highest erank

    def __post_init__(self):
        self.probes: list[dict] = []
        if self.problems is None:
            self.problems = [self.problem] * self.model.num_grades
        if self.stages is None:
            self.stages = [[(p, 0, b)] for p, b in zip(self.problems, self.budgets)]
        self.problem = self.problems[0]
        # one function object for every probe's loss: compiled Hessians are reused
        self.loss_fn = functools.partial(grade_loss, self.model, self.block)
        self.freezer = Freezer(self.model, self.engine, self.block, self.probes_b,
                               self.probe_eps)
        self.rates = RateRule(self.step_size, self.engine, self.loss_fn, self.key)
        watch = None if self.step_size is None else self.step_size.every
        self.plan = ChunkPlan(self.record_every, self.window, self.select is not None,
                              (self.probe_every, self.checkpoint_every, watch))

    # -- the grades ---------------------------------------------------------------------
    def run(self, start: Checkpoint | None) -> list[FitResult]:
        eng, m = self.engine, self.engine.m
        frozen = self.freezer.initial(self.problem)
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
            state, tstate, status, summary_k = self._train_tries(
                k, frozen, step0, pending, rows, alive, params_out, scales, summaries)
            summary = {**summary_k, "grade": k + 1, "seconds": summary_k["seconds"] / m,
                       "compile_seconds": summary_k["compile_seconds"] / m}
            no_gain = no_gain_of(self._selector(k), summary.get("criterion"), summaries[0])
            if not no_gain:
                frozen_next, render, final = self.freezer.freeze(
                    self.problem, state.params, frozen, None, state.aux, tstate)
            if no_gain or too_little(self.gain, final, summaries[0], status[0]):
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
            renders = self.freezer.measure_on(self.problem, self.problems, params_out,
                                              summaries[0], renders)
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
            frozen, render, _ = self.freezer.freeze(self.problem, p, frozen, start.grades[k].scale)
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
        return frozen if same else self._frozen_on(self.problem, params, scales)

    def _frozen_on(self, problem, params: Sequence, scales: Sequence[float]) -> _Frozen:
        """The finished grades frozen on `problem`'s grid, from a first grade's start."""
        frozen = self.freezer.initial(problem)
        for p, s in zip(params, scales):
            frozen, _, _ = self.freezer.freeze(problem, p, frozen, s)
        return frozen

    def _init_state(self, k: int, pending: Pending | None, aux, trial: int = 0) -> GradeState:
        eng, tx = self.engine, self.txs[k]
        if pending is not None:
            return pending.state
        given = None if self.init_params is None else self.init_params[k]
        if given is not None:
            params = jax.tree_util.tree_map(as_float, given)
        else:
            key = self.model.grade_key(self.key, k)
            params = self.model.init_grade(jax.random.fold_in(key, trial) if trial else key,
                                           k, self.problem.in_dim)
        params = eng.expand(params)
        if eng.members is None:
            return GradeState(params, tx.init(params), aux)
        opt_state = jax.vmap(tx.init)(params)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(self.lrs, float_dtype())
        return GradeState(params, opt_state, aux)

    def _train_tries(self, k, frozen: _Frozen, step0, pending, rows, alive, params_out,
                     scales, summaries):
        """Grade k trained `tries[k]` times, from its own initialisation and then from
        `fold_in(grade key, t)` for try t: the try whose kept state is best by `try_rule`
        (least training loss, or highest effective rank of its features; no reference
        needed) is the grade; the history keeps its rows, the summary every try's loss,
        features' dead fraction and effective rank, and records. Each try is a grade's training as
        `_train_grade` runs it; a checkpoint within a try holds the best finished try so
        far (`Pending.held`)."""
        n = 1 if self.tries is None else self.tries[k]
        if n == 1:
            return self._train_grade(k, frozen, step0, pending, rows, alive, params_out,
                                     scales, summaries)
        first, held = (0, None) if pending is None else (pending.trial, pending.held)
        mark = sum(row["grade"] <= k for row in rows[0])  # where this try's rows start
        alive0 = alive.copy()
        for t in range(first, n):
            alive[:] = alive0
            state, tstate, status, summary = self._train_grade(
                k, frozen, step0, pending if t == first else None, rows, alive, params_out,
                scales, summaries, trial=t, held=held)
            mine = rows[0][mark:]
            del rows[0][mark:]
            loss = _kept_loss(mine, summary, status[0])
            feats = feature_stats(self.model.grade_features(state.params,
                                                            frozen.feats["train"]))
            before = () if held is None else held.losses
            seen = () if held is None else held.features
            curves = (() if held is None else held.curves) + (_columns(mine),)
            sec = summary["seconds"] + (0.0 if held is None else held.seconds)
            csec = summary["compile_seconds"] + (0.0 if held is None else held.compile_seconds)
            score = _try_score(self.try_rule, loss, feats)
            if held is None or score < _try_score(self.try_rule, held.loss,
                                                  held.features[held.trial]):
                held = Held(loss, t, state, tstate, mine, summary, status[0], before + (loss,),
                            sec, csec, seen + (feats,), curves)
            else:
                held = held._replace(losses=before + (loss,), seconds=sec, compile_seconds=csec,
                                     features=seen + (feats,), curves=curves)
        rows[0].extend(held.rows)
        alive[:] = alive0 & (held.status != "diverged")
        summary = {**held.summary, "seconds": held.seconds,
                   "compile_seconds": held.compile_seconds, "tries": list(held.losses),
                   "kept_try": held.trial + 1,
                   "tries_dead": [f["dead"] for f in held.features],
                   "tries_erank": [f["erank"] for f in held.features],
                   "tries_history": list(held.curves)}
        return held.state, held.tangent, [held.status], summary

    def _train_grade(self, k, frozen: _Frozen, step0, pending, rows, alive, params_out,
                     scales, summaries, trial: int = 0, held: Held | None = None):
        """Grade k from its start or `pending`, stage by stage (one stage but for a
        curriculum: the same state stepping on coarser grids first, each stage's u, initial
        loss and stopping rule its own): `(state, tstate, status per member, summary)`."""
        stages, budget = self.stages[k], self.budgets[k]
        s0 = 0 if pending is None else max(
            i for i, (_, first, _) in enumerate(stages) if first < pending.epochs)
        run = _GradeRun(status=np.where(alive, "max_epochs", "diverged").astype(object),
                        epochs=0 if pending is None else pending.epochs)
        for cb in self.callbacks:
            cb.on_grade_start(k + 1, budget, 0 if pending is None else pending.epochs)
        for s in range(s0, len(stages)):
            problem, first, end = stages[s]
            self.problem = problem
            here = frozen if problem is self.problems[k] else self._frozen_on(
                problem, params_out, [float(c[0]) for c in scales])
            resumed = pending if s == s0 else None
            if run.state is None:
                run.state = self._init_state(k, resumed, here.aux, trial)
                run.tstate = self.freezer.init_tangent(run.state, here, resumed)
            elif resumed is None:  # a new grid: u afresh, as at a coarse-to-fine grade
                run.state = run.state._replace(aux=here.aux)
            last = s == len(stages) - 1
            if self._train_stage(k, s, here, step0, resumed, rows, alive, params_out,
                                 scales, summaries, run, trial, held, last):
                break
        if self.problem is not self.problems[k]:  # ended on a coarser grid: u on the grade's
            run.state = run.state._replace(aux=frozen.aux)
        self.problem = self.problems[k]
        summary = {"epochs": run.epochs, "seconds": run.seconds,
                   "compile_seconds": run.compile_s, **run.rate}
        state, tstate = self._keep(k, run.state, run.tstate, run.status[0], run.best,
                                   run.last_score, summary)
        return state, tstate, list(run.status), summary

    def _train_stage(self, k, s, frozen: _Frozen, step0, pending, rows, alive, params_out,
                     scales, summaries, run: _GradeRun, trial, held, last: bool) -> bool:
        """Stage s of grade k (its chunks, records and rules) on `self.problem`, advancing
        `run`; True when the grade ends here (diverged, stopped or selected)."""
        eng, r = self.engine, self.record_every
        _, first, end = self.stages[k][s]
        budget = end - first
        rfeats, rbase = self._record_inputs(frozen)
        full, rest = divmod(budget, r)
        total = full + (rest > 0)  # records
        done, seconds, compile_s, best, loss0 = self._grade_start(run.state, frozen, pending,
                                                                  first)
        # a grid coarser than the last grade's: its records say so (they measure that grid)
        coarse = None if unbatched(self.problem) is unbatched(self.problems[-1]) \
            else dict(getattr(unbatched(self.problem), "settings", ())).get("coarse")
        if pending is not None or s == 0:
            run.seconds, run.compile_s, run.best = seconds, compile_s, best
        state, run.rate = self.rates.start(k, self.problem, run.state, frozen, pending,
                                           rows[0])
        tstate, status = run.tstate, run.status
        selector = self._selector(k) if last else None  # a coarser stage: another y
        monitor = [row[self.problem.monitor] for row in rows[0]
                   if row["grade"] == k + 1 and row["epoch"] > first]
        if self.probe is not None and done == 0 and s == 0:
            self._probe(k, state, frozen, 0, step0)
        ended = False
        while done < total:
            n, per = self.plan.next(done, total, rest)
            state, tstate, metrics, sec, csec = run_chunk(
                eng, self.model, self.block, self.txs[k], self.problem, state, tstate, frozen,
                rfeats, rbase, step0 + first + min(done * r, budget), n, per, self.probes_b,
                self.probe_eps)
            run.seconds, run.compile_s = run.seconds + sec, run.compile_s + csec
            append_rows(eng, rows, metrics, k, first + min(done * r, budget), per, step0,
                        coarse=coarse)
            done += n
            epochs_done = first + min(done * r, budget)
            run.epochs = epochs_done
            state, why = self._judge(k, frozen, state, tstate, metrics, loss0, alive, rows[0],
                                     n, selector, monitor, run)
            if why is not None:  # a coarser stage's rule ends that stage, not the grade
                ended = why == "diverged" or last
                if last and why != "diverged":
                    status[0] = why
                break
            if self.probe is not None and epochs_done % self.probe_every == 0:
                self._probe(k, state, frozen, epochs_done, step0)
            # a checkpoint inside a stage, and at the end of a stage but the last (the
            # grade's end has its own): a curriculum's stage ends are resume points too
            if eng.members is None and (done < total or not last):
                pending = Pending(k + 1, state, epochs_done, run.seconds, run.compile_s,
                                  float(loss0[0]), tstate, run.best, trial, held)
                self._maybe_checkpoint(done, Checkpoint(
                    list(params_out), [float(c[0]) for c in scales], list(summaries[0]),
                    rows[0], frozen.aux if params_out else None, pending,
                    frozen.tangent if params_out else None), stage_end=done >= total)
            elif done < total and any(cb.stop_requested() for cb in self.callbacks):
                raise FitInterrupted(None)  # members: no checkpoint to hand over
        run.state, run.tstate = state, tstate
        return ended

    def _judge(self, k, frozen: _Frozen, state, tstate, metrics: dict, loss0, alive,
               rows: list[dict], n: int, selector, monitor: list, run: _GradeRun):
        """The rules on a chunk's `n` records: divergence (members marked in `run.status`),
        GD's rate, the selector and the stopping rule; `(state, why the stage ends)`:
        "diverged" (every member), a status, or None."""
        bad = diverged(self.engine, metrics, loss0, self.divergence_factor)
        run.status[alive & bad] = "diverged"
        alive &= ~bad
        state, steep = self.rates.watch(k, self.problem, state, frozen, rows[-n:], run.epochs,
                                        bool(alive[0]))
        selected = False
        if selector is not None and alive[0]:
            run.last_score, run.best, selected = self._score(rows[-1], run.best, run.epochs,
                                                             state, tstate)
        monitor.extend(row[self.problem.monitor] for row in rows[-n:])
        for cb in self.callbacks:
            cb.on_records(k + 1, rows[-n:])
        if not alive.any():
            return state, "diverged"
        return state, self._ended(selected, steep, monitor)

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

    def _selector(self, k: int) -> Selector | None:
        """The selector that judges grade k: `select`, except on a coarser grid than the
        last grade's (coarse-to-fine), whose records measure another observation; such a
        grade trains its budget."""
        if self.select is None or unbatched(self.problems[k]) is not unbatched(
                self.problems[-1]):
            return None
        return self.select

    def _keep(self, k: int, state, tstate, status: str, best: Best | None, last_score,
              summary: dict):
        """What grade k keeps: with a selector, its best record's state (unless it
        diverged), whose epoch and score go into `summary`; else its last state."""
        if self._selector(k) is None:
            return state, tstate
        if best is not None and status != "diverged":
            summary.update(selected_epoch=best.epoch, criterion=best.score)
            return best.state, best.tangent
        summary.update(selected_epoch=summary["epochs"], criterion=last_score)
        return state, tstate

    def _grade_start(self, state, frozen: _Frozen, pending: Pending | None, first: int = 0):
        """`(records done, seconds, compile seconds, best record, initial loss)` of a grade
        (or its stage from epoch `first`) starting fresh or continuing `pending`."""
        eng = self.engine
        if pending is not None:
            return (-(-(pending.epochs - first) // self.record_every), pending.seconds,
                    pending.compile_seconds, pending.best, np.full(eng.m, pending.initial_loss))
        loss0 = eng.rows(eng.initial_loss(
            state.params, self.problem, state.aux, frozen.feats, frozen.base, frozen.scale,
            model=self.model, block=self.block)).reshape(-1)
        return 0, 0.0, 0.0, None, loss0

    def _score(self, row: dict, best: Best | None, epoch: int, state, tstate):
        """The selector on the latest record: `(score, best record so far, done)`."""
        score = self.select.score(row)
        if self.select.keep_best and math.isfinite(score) and (best is None
                                                               or score < best.score):
            best = Best(score, epoch, state, tstate)
        return score, best, self.select.done(row)

    def _maybe_checkpoint(self, done: int, ckpt: Checkpoint, stage_end: bool = False) -> None:
        """Hands `ckpt` to the callbacks at checkpoint boundaries (every `checkpoint_every`
        epochs of a stage, and a stage's end) and when a stop is requested; then stops with
        `FitInterrupted`."""
        due = self.checkpoint_every is not None and (stage_end or done % max(
            1, -(-self.checkpoint_every // self.record_every)) == 0)
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


@dataclasses.dataclass
class _GradeRun:
    """A grade's training so far, carried from stage to stage."""

    status: np.ndarray  # per member
    state: GradeState | None = None
    tstate: GradeState | None = None
    epochs: int = 0
    seconds: float = 0.0
    compile_s: float = 0.0
    best: Best | None = None
    last_score: float | None = None
    rate: dict = dataclasses.field(default_factory=dict)


TRY_RULES = ("loss", "erank")  # how a grade of several tries picks one (`fit(try_rule=)`)


def _try_score(rule: str, loss: float, feats: dict) -> float:
    """A finished try's score by `rule` (lower is kept): its training loss, or minus its
    features' effective rank; a diverged try's (infinite loss) is infinite either way."""
    if rule == "loss" or not math.isfinite(loss):
        return loss
    erank = feats["erank"]
    return -erank if math.isfinite(erank) else math.inf


def _columns(rows: list[dict]) -> dict[str, list[float]]:
    """A try's history rows as columns (`GradeSummary.tries_history`), its grade left out."""
    names = [n for n in dict.fromkeys(n for r in rows for n in r) if n != "grade"]
    return {n: [float(r.get(n, math.nan)) for r in rows] for n in names}


def _kept_loss(rows: list[dict], summary: dict, status: str) -> float:
    """A try's training loss at the record whose state it kept (its last, or a selector's
    pick); a diverged try's is infinite."""
    if status == "diverged" or not rows:
        return math.inf
    epoch = summary.get("selected_epoch", summary["epochs"])
    loss = next((row["train_loss"] for row in reversed(rows) if row["epoch"] == epoch),
                rows[-1]["train_loss"])
    return float(loss) if math.isfinite(loss) else math.inf
