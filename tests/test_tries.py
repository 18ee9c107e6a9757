"""A grade trained several times (`fit(tries=...)`): each try is the fit of that grade from
its own initialisation, the least training loss is kept, and an interrupted run resumes
inside any try (float64, exact equality)."""

import dataclasses
import json
import math

import jax
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.experiments.checkpoints import checkpoint_arrays, load_checkpoint
from multigrade.metrics import feature_stats
from multigrade.problems import denoising
from multigrade.selection import Discrepancy
from multigrade.train import FitInterrupted, tries_at
from test_checkpoint import StopAfter, assert_same_run

KW = dict(optimizer=optax.adam(5e-2), epochs=60, key=jax.random.key(0), record_every=5,
          window=4, checkpoint_every=25)


@pytest.fixture(scope="module")
def problem():
    return denoising(mg.load_image("camera", size=16), 0.1, key=jax.random.key(1), beta=1.0,
                     lam=1e-3)


@pytest.fixture(scope="module")
def model():
    return mg.mgdl([[8, 8]] * 3)


@pytest.fixture(scope="module")
def tried(model, problem):
    return mg.fit(model, problem, tries=(1, 3, 1), **KW)


def _one_try(model, problem, t):
    """Grade 2 from try t's initialisation, as a plain fit (grades 1 and 3 as in `tried`)."""
    key = model.grade_key(KW["key"], 1)
    given = model.init_grade(jax.random.fold_in(key, t) if t else key, 1, problem.in_dim)
    return mg.fit(model, problem, init_params=[None, given, None], **KW)


def test_each_try_is_the_grade_fitted_from_its_own_start_and_the_least_loss_is_kept(
        model, problem, tried):
    alone = [_one_try(model, problem, t) for t in range(3)]
    losses = [float(a.history["train_loss"][a.history["grade"] == 2][-1]) for a in alone]
    assert len(set(losses)) == 3  # three different starts
    g2 = tried.grades[1]
    assert g2.tries == losses
    assert g2.kept_try == int(np.argmin(losses)) + 1
    best = alone[g2.kept_try - 1]
    assert_same_run(tried, best)  # its history holds the kept try's records only
    assert [g.tries for g in (tried.grades[0], tried.grades[2])] == [None, None]
    assert g2.seconds > best.grades[1].seconds  # the three tries' time
    # every try's features on the grade's grid, as the try alone hands them on
    stats = [feature_stats(model.grade_features(a.params[1], model.grade_features(
        a.params[0], problem.inputs["train"]))) for a in alone]
    np.testing.assert_allclose(g2.tries_erank, [s["erank"] for s in stats], rtol=1e-9)
    assert g2.tries_dead == [s["dead"] for s in stats]
    # and every try's records, as the try alone recorded them
    for curve, a in zip(g2.tries_history, alone, strict=True):
        mine = a.history["grade"] == 2
        assert set(curve) == set(a.history) - {"grade"}
        for name, column in curve.items():
            np.testing.assert_array_equal(column, a.history[name][mine])


def test_tries_at_reads_each_try_where_a_race_would_stop_it(tried):
    curves = tried.grades[1].tries_history
    for part, epoch in ((0.25, 15), (0.5, 30), (0.3, 15), (1.0, 60)):
        expect = [c["train_loss"][c["epoch"].index(epoch)] for c in curves]
        assert tries_at(curves, part) == expect
    assert tries_at(curves, 1.0) == tried.grades[1].tries  # the end: each try's kept loss
    # a try that diverged (its loss NaN, its records ended) reads inf after its end
    cut = [{"epoch": [5, 10], "train_loss": [3.0, math.nan]},
           {"epoch": [5, 10, 15, 20], "train_loss": [4.0, 3.0, 2.0, 1.0]}]
    assert tries_at(cut, 0.25) == [3.0, 4.0] and tries_at(cut, 0.75) == [math.inf, 2.0]
    assert tries_at(cut, 0.1) == [3.0, 4.0]  # before any record: the first
    assert tries_at([{}, cut[1]], 0.5) == [math.inf, 3.0]  # a try not recorded
    with pytest.raises(ValueError, match=r"part must be in \(0, 1\], got 0"):
        tries_at(cut, 0)


def test_the_erank_rule_keeps_the_try_of_highest_effective_rank(model, problem, tried):
    res = mg.fit(model, problem, tries=(1, 3, 1), try_rule="erank", **KW)
    g2 = res.grades[1]
    assert g2.tries == tried.grades[1].tries  # the same three tries, another choice
    assert g2.tries_erank == tried.grades[1].tries_erank
    assert g2.kept_try == int(np.argmax(g2.tries_erank)) + 1
    assert_same_run(res, _one_try(model, problem, g2.kept_try - 1))


@pytest.mark.parametrize("chunks", [2, 7, 12])  # in try 1, try 2 (after try 1), try 3
def test_a_run_interrupted_inside_a_try_resumes_to_the_same_result(model, problem, tried,
                                                                   chunks, tmp_path):
    stop = StopAfter(2, chunks)  # 5 chunks per try: 20, 25, 40, 50, 60 epochs
    with pytest.raises(FitInterrupted) as info:
        mg.fit(model, problem, tries=(1, 3, 1), callbacks=[stop], **KW)
    ckpt = info.value.checkpoint
    assert (ckpt.pending.grade, ckpt.pending.trial, ckpt.pending.epochs) == \
        (2, chunks // 5, 25)
    assert (ckpt.pending.held is None) == (chunks < 5)
    assert len(ckpt.history) == 12 + 5  # grade 1 and this try's records so far
    np.savez(tmp_path / "checkpoint.npz", **checkpoint_arrays(ckpt))  # the run store's form
    read = load_checkpoint(tmp_path, model, problem, [KW["optimizer"]] * 3)
    for start in (ckpt, read):
        resumed = mg.fit(model, problem, tries=(1, 3, 1), start=start, **KW)
        assert_same_run(resumed, tried)
        assert [(g.tries, g.kept_try, g.tries_erank, g.tries_history)
                for g in resumed.grades] == \
            [(g.tries, g.kept_try, g.tries_erank, g.tries_history) for g in tried.grades]


def test_tries_with_a_selector_compare_the_kept_records_loss(model, problem):
    select = Discrepancy(sigma=0.1, tau=1.0)
    res = mg.fit(model, problem, tries=2, select=select, **{**KW, "epochs": 40})
    for g in res.grades:
        rows = [t for t in range(len(res.history["grade"])) if res.history["grade"][t] == g.grade]
        kept = [t for t in rows if res.history["epoch"][t] == g.selected_epoch]
        assert len(g.tries) == 2 and g.kept_try in (1, 2)
        assert res.history["train_loss"][kept[0]] == min(g.tries)


def test_tries_refused_where_they_cannot_differ(model, problem):
    with pytest.raises(ValueError, match="tries must be at least 1"):
        mg.fit(model, problem, tries=(1, 0, 1), **KW)
    with pytest.raises(ValueError, match="3 values given for 2 grades"):
        mg.fit(mg.mgdl([[8]] * 2), problem, tries=(1, 2, 3), **KW)
    with pytest.raises(ValueError, match="unknown try_rule 'psnr'; supported: loss, erank"):
        mg.fit(model, problem, tries=(1, 2, 1), try_rule="psnr", **KW)
    given = model.init_params(jax.random.key(3), problem.in_dim)
    with pytest.raises(ValueError, match="grade 2: 2 tries from one given initialisation"):
        mg.fit(model, problem, tries=(1, 2, 1), init_params=[None, given[1], None], **KW)


def test_a_grade_summary_with_tries_survives_the_checkpoint(model, problem, tried, tmp_path):
    np.savez(tmp_path / "checkpoint.npz", **checkpoint_arrays(tried.checkpoint()))
    read = load_checkpoint(tmp_path, model, problem, [KW["optimizer"]] * 3)
    assert [dataclasses.asdict(g) for g in read.grades] == \
        [dataclasses.asdict(g) for g in tried.grades]


def test_a_checkpoint_from_before_tries_history_resumes_with_the_lost_try_unrecorded(
        model, problem, tried, tmp_path):
    """A checkpoint written before `tries_history` existed (its held try has no `curves`)
    resumes to the same run; the finished try's records, not kept then, read empty."""
    with pytest.raises(FitInterrupted) as info:
        mg.fit(model, problem, tries=(1, 3, 1), callbacks=[StopAfter(2, 7)], **KW)
    arrays = checkpoint_arrays(info.value.checkpoint)
    meta = json.loads(str(arrays["meta"]))
    del meta["pending"]["held"]["curves"]
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(tmp_path / "checkpoint.npz", **arrays)
    read = load_checkpoint(tmp_path, model, problem, [KW["optimizer"]] * 3)
    resumed = mg.fit(model, problem, tries=(1, 3, 1), start=read, **KW)
    assert_same_run(resumed, tried)
    g2, want = resumed.grades[1], tried.grades[1]
    assert (g2.tries, g2.kept_try) == (want.tries, want.kept_try)
    assert g2.tries_history == [{}, *want.tries_history[1:]]
    assert tries_at(g2.tries_history, 0.25)[0] == math.inf
