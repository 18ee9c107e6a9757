"""The fast scale (`mgdl reproduce NAME --scale fast`): the restoration experiments at the
paper's sizes, each method with a training recipe of its own (`presets.FAST`)."""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from multigrade import runs
from multigrade.experiments import load_config
from multigrade.experiments import runner as runner_module
from multigrade.experiments.optimizers import make_optimizer
from multigrade.experiments.presets import (
    AUTHORS,
    EXPERIMENTS,
    FAST,
    FAST_ALL,
    FAST_GROUPS,
    select,
)
from multigrade.experiments.reproduce import Watch, reproduce, run_dir_of
from multigrade.problems.curriculum import Curriculum
from multigrade.problems.minibatch import MiniBatch
from multigrade.train import Callback
from procs import mgdl_here

pytestmark = pytest.mark.xdist_group("reproduce")

# 32² (coarse grids 8² and 16²), narrow and shallow, a few dozen steps per grade
TINY = ["problem.image=camera", "problem.size=32", "model.width=8", "model.layers_per_grade=1",
        "train.record_every=10", "train.checkpoint_every=10",
        "methods.mgdl.grade_epochs=[20, 20]", "methods.mgdl.epochs=30",
        "methods.sgdl.curriculum_epochs=[10, 10]", "methods.sgdl.epochs=40"]
SGDL_TINY = [10 + 10 + 40]  # SGDL's one grade: its curriculum's coarse stages, then 40


def test_fast_presets_give_each_method_its_own_recipe_at_the_papers_size():
    chosen = select("denoise", "fast") + select("deblur", "fast")
    assert len(chosen) == 27 and [e.name for e in select("all", "fast")] == list(FAST_ALL)
    for e in chosen:
        cfg, paper = e.config("fast"), e.config("paper")
        assert cfg.problem == paper.problem and cfg.model == paper.model  # 512², 4×[128]×3
        task = cfg.problem.task
        for method in ("mgdl", "sgdl"):
            own, recipe = cfg.for_method(method), FAST[task][method]
            assert {k: getattr(own.train, k) for k in recipe} == recipe, (e.name, method)
            authors = getattr(AUTHORS[task], method)
            assert (own.problem.beta, own.problem.lam) == (authors.beta, authors.lam)
            assert method.upper() in own.methods.of(method).source
        sgdl = cfg.for_method("sgdl").train
        assert sgdl.coarse == () and sgdl.grade_epochs == ()  # one grade
        if task == "deblur":  # a blur couples neighbourhoods: no mini-batches
            assert cfg.for_method("mgdl").train.batch is None and sgdl.batch is None
    for name in ("regression-camera", "lr-study", "msdl"):
        with pytest.raises(ValueError, match="no fast scale"):
            select(name, "fast")


def test_mgdls_fast_recipe_is_the_time_to_quality_benchmarks_best():
    # one recipe, two places: what docs/time-to-quality.md measured is what the scale runs
    import importlib.util
    from pathlib import Path

    from multigrade.experiments.building import method_config

    path = Path(__file__).parents[1] / "benchmarks" / "time_to_quality.py"
    spec = importlib.util.spec_from_file_location("time_to_quality", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for name in FAST_ALL:
        cfg = EXPERIMENTS[name].config("fast")
        recipe = dict(bench.RECIPES[bench.BEST[cfg.problem.task]])
        epochs = recipe.pop("epochs")
        train = method_config(cfg, "mgdl").train
        assert train.budgets(4) == ([epochs] * 4 if isinstance(epochs, int) else list(epochs))
        assert {k: getattr(train, k) for k in recipe} == recipe
        assert train.batch == recipe.get("batch")


def test_dump_config_shows_both_methods_recipes_and_mgdl_run_takes_it(tmp_path):
    r = mgdl_here("reproduce", "denoise-butterfly-10", "--scale", "fast", "--dump-config")
    assert r.returncode == 0, r.stderr
    dumped = runs.read_toml_text(r.stdout)["methods"]
    for method in ("mgdl", "sgdl"):
        want = {k: list(v) if isinstance(v, tuple) else v
                for k, v in FAST["denoise"][method].items()}
        assert {k: dumped[method][k] for k in want} == want, method
    (tmp_path / "fast.toml").write_text(r.stdout)
    assert load_config(tmp_path / "fast.toml") == EXPERIMENTS["denoise-butterfly-10"].config(
        "fast")
    r = mgdl_here("reproduce", "--list", "--scale", "fast")
    assert r.returncode == 0 and "regression" not in r.stdout
    sgdl = FAST["denoise"]["sgdl"]  # its budget: each coarse stage's epochs, then the last
    budget = "".join(f"{e}@{f}×+" for f, e in zip(sgdl["curriculum"],
                                                  sgdl["curriculum_epochs"]))
    row = _row(r.stdout, "denoise-butterfly-10")
    cell = row[5]  # epochs / grade
    assert re.search(rf"SGDL {re.escape(budget)}{sgdl['epochs']}$", cell), cell
    # the rate is the recipe's, not the authors' (that is the other scales' line)
    assert "fast recipe" in row[3] and "authors' lr" not in row[3], row[3]
    r = mgdl_here("reproduce", "--list", "--scale", "paper")
    assert "authors' lr" in _row(r.stdout, "denoise-butterfly-10")[3]
    for bad in (["regression-camera", "--scale", "fast"],
                ["denoise-butterfly-10", "--scale", "fast", "--protocol", "fair"],
                ["denoise-butterfly-10", "--scale", "huge"]):
        r = mgdl_here("reproduce", *bad, "--out", str(tmp_path / "x"))
        assert r.returncode != 0 and r.stderr.count("\n") == 1, (bad, r.stderr)
    assert not (tmp_path / "x").exists()


def _row(table: str, name: str) -> list[str]:
    """The cells of a printed table's row whose first cell starts with `name`, each cell's
    wrapped lines joined by spaces."""
    lines = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines()
             if line.startswith("│")]
    start = next(i for i, cells in enumerate(lines) if cells[0].startswith(name))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][0]), len(lines))
    return [" ".join(filter(None, col)) for col in zip(*lines[start:end])]


def cfg_tries(method: str, grades: int) -> list[int]:
    """The fast denoising recipe's tries per grade (`grade_tries`, then one each)."""
    own = list(FAST["denoise"][method].get("grade_tries", ()))
    return own + [1] * (grades - len(own))


class _Spy:
    """Records the arguments of every `fit` the runner makes, then fits."""

    def __init__(self, fit):
        self.fit, self.calls = fit, []

    def __call__(self, **kw):
        self.calls.append(kw)
        return self.fit(**kw)


def _same_updates(a: optax.GradientTransformation, b: optax.GradientTransformation,
                  steps: int) -> None:
    """`a` and `b` move the same parameters alike for `steps` steps (rate, schedule and
    its length included)."""
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    sa, sb = a.init(params), b.init(params)
    for i in range(steps):
        g = {"w": jnp.cos(params["w"] * (i + 1))}
        ua, sa = a.update(g, sa, params)
        ub, sb = b.update(g, sb, params)
        np.testing.assert_array_equal(ua["w"], ub["w"], err_msg=f"step {i}")


@pytest.mark.slow
def test_the_fast_recipes_reach_fit_unchanged_for_both_methods(tmp_path, monkeypatch):
    spy = _Spy(runner_module.fit)
    monkeypatch.setattr(runner_module, "fit", spy)
    reproduce("denoise-butterfly-10", scale="fast", out=tmp_path / "r", overrides=TINY)
    mgdl, sgdl = spy.calls  # the comparison fits MGDL, then SGDL
    assert mgdl["epochs"] == [20, 20, 30, 30] and sgdl["epochs"] == SGDL_TINY
    assert mgdl["record_every"] == sgdl["record_every"] == 10
    assert mgdl["tries"] == cfg_tries("mgdl", 4) and sgdl["tries"] == [1]  # one grade, once
    # MGDL's grades 1 and 2 on the 4× and 2× coarser grids, SGDL's one network 10 epochs
    # on each of them; then MGDL's other grades, and SGDL's last stage, on mini-batches of
    # 1/16 of the 32² pixels
    problems, course = mgdl["problem"], sgdl["problem"]
    assert isinstance(course, Curriculum) and [e for _, e in course.stages] == [10, 10]
    for grids in (problems[:2], [p for p, _ in course.stages]):
        assert [p.inputs["train"].shape[0] for p in grids] == [8 * 8, 16 * 16]
    for p in [*problems[2:], course.final]:
        assert isinstance(p, MiniBatch) and p.size == round(0.0625 * 32 * 32)
    assert not any(isinstance(p, MiniBatch) for p in problems[:2])
    # each grade's optimiser: Adam warmed up to its method's peak, cosine over its budget
    for call, lr in ((mgdl, FAST["denoise"]["mgdl"]["lr"]), (sgdl, FAST["denoise"]["sgdl"]["lr"])):
        for tx, epochs in zip(call["optimizer"], call["epochs"]):
            _same_updates(tx, make_optimizer("adam", lr, "warmup-cosine", epochs), epochs)
    # what each method's run directory says it trained
    cmp = run_dir_of(tmp_path / "r", "denoise-butterfly-10", 0)
    for method, grades in (("mgdl", [20, 20, 30, 30]), ("sgdl", SGDL_TINY)):
        summary = runs.read_summary(cmp / method)
        assert [g["epochs"] for g in summary["grades"]] == grades, method


class _StopIn(Callback):
    """Asks the fit of `method` to stop at its `n`-th record."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_records(self, grade, rows):
        self.seen += len(rows)

    def stop_requested(self):
        return self.seen >= self.n


@pytest.mark.slow
def test_fast_scale_resumes_without_retraining_finished_runs(tmp_path):
    out = tmp_path / "r"
    seen = []

    def progress(method, grades):  # interrupt deblurring's SGDL after 2 records
        return _StopIn(2 if method == "sgdl" and seen[-1][0].startswith("deblur") else 10**9)

    watch = Watch(progress, lambda name, seed, what: seen.append((name, what)))
    with pytest.raises(runner_module.RunInterrupted):
        reproduce("all", scale="fast", out=out, overrides=TINY, watch=watch)
    done = run_dir_of(out, "denoise-butterfly-10", 0)
    stopped = run_dir_of(out, "deblur-butterfly-3", 0)
    assert runs.read_status(done)["state"] == "completed"
    assert runs.read_status(stopped)["state"] == "interrupted"
    before = {p: p.read_bytes() for p in done.rglob("*.npz")}
    stamp = {p: p.stat().st_mtime_ns for p in before}
    seen.clear()
    again = reproduce("all", scale="fast", out=out, overrides=TINY,
                      watch=Watch(None, lambda name, seed, what: seen.append((name, what))))
    assert seen == [("denoise-butterfly-10", "done"), ("deblur-butterfly-3", "resume")]
    assert again.ran == 1 and runs.read_status(stopped)["state"] == "completed"
    for p, data in before.items():  # the finished comparison was not touched
        assert p.read_bytes() == data and p.stat().st_mtime_ns == stamp[p]
    grades = runs.read_summary(stopped / "mgdl")["grades"]
    assert [g["epochs"] for g in grades] == [20, 20, 30, 30]
    assert {r["experiment"] for r in again.rows} == set(FAST_ALL)
    assert set(FAST_GROUPS) == {e.group for e in again.experiments}
