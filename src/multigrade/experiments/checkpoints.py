"""A fit's checkpoint on disk (`checkpoint.npz`): `fit`'s `Checkpoint` as named arrays and
back, every array shaped and checked against the model, the problem and the optimisers."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from multigrade import runs
from multigrade.problems import Problem
from multigrade.problems.curriculum import Curriculum, final_problem
from multigrade.train import (
    Best,
    Checkpoint,
    GradeState,
    GradeSummary,
    Held,
    Pending,
    zero_tangent,
)

_HELD_META = ("loss", "trial", "rows", "summary", "status", "losses", "seconds",
              "compile_seconds", "features", "curves")


def checkpoint_arrays(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    """A `Checkpoint` as the named arrays of checkpoint.npz (its metadata as JSON in
    `meta`); `load_checkpoint` reads them back."""
    pending = None if ckpt.pending is None else {
        k: getattr(ckpt.pending, k) for k in
        ("grade", "epochs", "seconds", "compile_seconds", "initial_loss")}
    best = None if ckpt.pending is None else ckpt.pending.best
    if best is not None:
        pending["best"] = {"score": best.score, "epoch": best.epoch}
    held = None if ckpt.pending is None else ckpt.pending.held
    if ckpt.pending is not None and (ckpt.pending.trial or held is not None):
        pending["trial"] = ckpt.pending.trial
        pending["held"] = None if held is None else {k: getattr(held, k) for k in _HELD_META}
    meta = {"finished": ckpt.finished, "grades": [dataclasses.asdict(g) for g in ckpt.grades],
            "pending": pending}
    arrays = {"meta": np.asarray(json.dumps(runs.strict(meta), allow_nan=False))}
    for k, p in enumerate(ckpt.params, start=1):
        arrays.update(runs.tree_to_arrays(p, f"params/grade{k}"))
    if ckpt.aux is not None:
        arrays.update(runs.tree_to_arrays(ckpt.aux, "aux"))
    if ckpt.tangent is not None:  # SURE's derivatives along the probes
        arrays.update(runs.tree_to_arrays(ckpt.tangent, "tangent"))
    if ckpt.pending is not None:
        arrays.update(runs.tree_to_arrays(ckpt.pending.state, "pending"))
        arrays.update(runs.tree_to_arrays(ckpt.pending.tangent, "pending_tangent"))
    if best is not None:
        arrays.update(runs.tree_to_arrays((best.state, best.tangent), "pending_best"))
    if held is not None:
        arrays.update(runs.tree_to_arrays((held.state, held.tangent), "pending_held"))
    names = list(dict.fromkeys(n for r in ckpt.history for n in r))
    for n in names:
        arrays[f"history/{n}"] = np.asarray([r.get(n, np.nan) for r in ckpt.history])
    return arrays


def _none_to_nan(d: dict) -> dict:
    return {k: float("nan") if v is None else v for k, v in d.items()}


def _columns_nan(columns: dict) -> dict:
    """Records as columns (a try's: `GradeSummary.tries_history`) with JSON's nulls as NaN."""
    return {k: [float("nan") if v is None else v for v in col] for k, col in columns.items()}


def _summary(g: dict) -> GradeSummary:
    """A grade's summary from its JSON (a missing metric or scale written as null)."""
    return GradeSummary(**{
        **g, "metrics": _none_to_nan(g["metrics"]),
        "scale": float("nan") if g["scale"] is None else g["scale"],
        "tries_history": None if g.get("tries_history") is None else
        [_columns_nan(c) for c in g["tries_history"]]})


def load_checkpoint(run_dir: Path, model, problem: Problem | Curriculum | Sequence,
                    optimizers: Sequence, *, probes: int = 0) -> Checkpoint:
    """The checkpoint of a run directory, its arrays shaped and checked against the model,
    the problem (or one per grade, as `fit` took them) and the optimisers (one per grade);
    with `probes`, also the derivatives along that many divergence probes (SURE)."""
    path = Path(run_dir) / runs.CHECKPOINT
    if not path.is_file():
        raise ValueError(f"{run_dir} has no checkpoint yet: nothing to continue "
                         "(start it again with `mgdl run`)")
    arrays = runs.read_npz(path)
    meta = json.loads(str(arrays.pop("meta")))
    key = jax.random.key(0)

    given = list(problem) if isinstance(problem, (list, tuple)) \
        else [problem] * model.num_grades
    problems = [final_problem(p) for p in given]

    def like(k):
        return jax.eval_shape(lambda: model.init_grade(key, k, problems[k].in_dim))

    def aux_of(k, epochs=None):  # u's shape on grade k's grid (after `epochs` of a curriculum)
        p = given[k].at(epochs) if isinstance(given[k], Curriculum) and epochs is not None \
            else problems[k]
        return jax.eval_shape(p.init_aux, jnp.zeros((p.inputs["train"].shape[0], p.out_dim)))

    src = str(path)
    params = [runs.arrays_to_tree(arrays, f"params/grade{k + 1}", like(k), source=src)
              for k in range(meta["finished"])]
    # u as the next grade starts: on the pending grade's grid (a checkpoint within a grade),
    # else on the last finished grade's
    pending = meta["pending"]
    aux_like = aux_of(max(len(params) - 1, 0)) if pending is None else aux_of(
        pending["grade"] - 1, pending["epochs"])
    aux = runs.arrays_to_tree(arrays, "aux", aux_like, source=src) if params else None
    tangent = None
    if probes and params:
        tangent = _tangent_from(arrays, probes, aux_like, src)
    if pending is not None:
        pending = _pending_from(arrays, pending, like(pending["grade"] - 1),
                                optimizers[pending["grade"] - 1], aux_like, probes, src)
    cols = {n[len("history/"):]: v for n, v in arrays.items() if n.startswith("history/")}
    n_rows = len(next(iter(cols.values()))) if cols else 0
    history = [{n: v[i].item() for n, v in cols.items()} for i in range(n_rows)]
    grades = [_summary(g) for g in meta["grades"]]
    return Checkpoint(params, [g.scale for g in grades], grades, history, aux, pending,
                      tangent)


def _pending_from(arrays: dict, p: dict, p_like, optimizer, aux_like, probes: int,
                  source: str) -> Pending:
    """The unfinished grade (`Checkpoint.pending`): its state, and with them a selector's
    best record and, for a grade of several tries, the best finished try."""
    state_like = GradeState(p_like, jax.eval_shape(optimizer.init, p_like), aux_like)
    state = runs.arrays_to_tree(arrays, "pending", state_like, source=source)
    t_like = jax.eval_shape(lambda: zero_tangent(state_like, probes)) if probes else None

    def pair(prefix):
        return runs.arrays_to_tree(arrays, prefix, (state_like, t_like), source=source)

    best = None if p.get("best") is None else Best(p["best"]["score"], p["best"]["epoch"],
                                                   *pair("pending_best"))
    held = None if p.get("held") is None else _held(p["held"], *pair("pending_held"))
    tangent = runs.arrays_to_tree(arrays, "pending_tangent", t_like, source=source) \
        if probes else None
    return Pending(p["grade"], state, p["epochs"], p["seconds"], p["compile_seconds"],
                   p["initial_loss"], tangent, best, p.get("trial", 0), held)


def _held(meta: dict, state: GradeState, tangent) -> Held:
    """A grade's best finished try (`Pending.held`) from its JSON (a diverged try's loss,
    and a missing metric, were written as null) and arrays."""
    def nan(rows):
        return [_none_to_nan(r) for r in rows]
    losses = tuple(math.inf if v is None else v for v in meta["losses"])
    curves = tuple(_columns_nan(c) for c in meta.get("curves", ()))
    curves += ({},) * (len(losses) - len(curves))  # an older checkpoint's: not recorded
    return Held(math.inf if meta["loss"] is None else meta["loss"], meta["trial"], state,
                tangent, nan(meta["rows"]), meta["summary"], meta["status"], losses,
                meta["seconds"], meta["compile_seconds"],
                tuple(_none_to_nan(f) for f in meta.get("features", ())), curves)


def _tangent_from(arrays: dict, probes: int, aux_like, source: str) -> dict:
    """The frozen grades' derivatives (`Checkpoint.tangent`), shaped from the file: their
    features' width is the last finished grade's."""
    def stored(prefix):
        names = [n for n in arrays if n.startswith(prefix + "/")]
        return {n[len(prefix) + 1:]: jax.ShapeDtypeStruct(arrays[n].shape, arrays[n].dtype)
                for n in names}

    like = {"feats": stored("tangent/feats"), "base": stored("tangent/base"),
            "scale": jax.ShapeDtypeStruct((probes,), arrays["tangent/scale"].dtype),
            "aux": jax.eval_shape(lambda: zero_tangent(aux_like, probes))}
    return runs.arrays_to_tree(arrays, "tangent", like, source=source)


