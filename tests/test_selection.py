"""Choosing epochs and grades without the clean image: SURE, the discrepancy principle and
held-out pixels (float64, see conftest)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.ndimage import gaussian_filter

import multigrade as mg
from multigrade import runs, selection
from multigrade.experiments.checkpoints import checkpoint_arrays, load_checkpoint
from multigrade.problems import deblurring, denoising
from multigrade.train import Callback, FitInterrupted, Selector
from procs import mgdl_here


def _smooth_image(n=32, seed=0):
    """A piecewise-smooth test image in [0.1, 0.9]: a disc and a ramp."""
    i, j = np.mgrid[:n, :n] / n
    image = 0.3 + 0.4 * ((i - 0.5) ** 2 + (j - 0.4) ** 2 < 0.08) + 0.2 * j
    return np.clip(image, 0.1, 0.9)


# ---------------------------------------------------------------------------------------
# SURE against the true error


def test_sure_of_a_linear_smoother_is_unbiased_and_its_trace_is_exact():
    clean = _smooth_image(16)
    sigma = 0.1
    smooth = lambda y: gaussian_filter(y, 1.0, mode="reflect")
    # the smoother as a matrix: its trace is the exact divergence
    eye = np.eye(clean.size).reshape(clean.size, *clean.shape)
    trace = sum(smooth(e).reshape(-1)[k] for k, e in enumerate(eye))
    rng = np.random.default_rng(3)
    exact, true, mc = [], [], []
    for _ in range(200):
        y = clean + sigma * rng.standard_normal(clean.shape)
        residual = float(np.mean((smooth(y) - y) ** 2))
        exact.append(selection.sure(residual, trace, sigma, y.size))
        true.append(float(np.mean((smooth(y) - clean) ** 2)))
        mc.append(selection.mc_sure(smooth, y, sigma, key=len(mc), probes=4))
    # E[SURE] = E[MSE]: the mean difference is within 4 standard errors of zero
    diff = np.asarray(exact) - np.asarray(true)
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff))
    # the Monte-Carlo divergence is unbiased around the trace
    gap = np.asarray(mc) - np.asarray(exact)
    assert abs(gap.mean()) < 4 * gap.std() / math.sqrt(len(gap)) + 1e-12


def test_sure_of_tv_denoising_tracks_the_true_error_over_noise_draws():
    from skimage.restoration import denoise_tv_chambolle

    clean = _smooth_image(32)
    sigma = 0.08
    rng = np.random.default_rng(0)
    for weight in (0.03, 0.1, 0.3):
        f = lambda y, w=weight: denoise_tv_chambolle(y, weight=w)
        est, true = [], []
        for k in range(12):
            y = clean + sigma * rng.standard_normal(clean.shape)
            est.append(selection.mc_sure(f, y, sigma, key=k))
            true.append(np.mean((f(y) - clean) ** 2))
        assert abs(np.mean(est) - np.mean(true)) < 0.1 * np.mean(true) + 3e-5, weight


@pytest.mark.slow
def test_the_training_divergence_is_the_derivative_of_the_whole_fit():
    """`fit`'s divergence (exact forward mode, and a twin at a small step) equals a central
    difference of the trained prediction in the observation, through two grades."""
    problem = denoising(mg.load_image("camera", size=10), 0.1, key=jax.random.key(0))
    model = mg.mgdl([[8, 8]] * 2)
    b = jax.random.normal(jax.random.key(5), (1, *problem.observed.shape))
    kw = dict(optimizer=optax.adam(1e-2), epochs=30, key=jax.random.key(1), record_every=10)
    exact = mg.fit(model, problem, divergence=mg.Divergence(b), **kw)
    twin = mg.fit(model, problem, divergence=mg.Divergence(b, 1e-7), **kw)
    plain = mg.fit(model, problem, **kw)
    np.testing.assert_array_equal(exact.predictions[-1], plain.predictions[-1])
    h = 1e-6
    ends = []
    for grade in (0, 1):
        up = mg.fit(model, problem.with_observation(problem.observed + h * b[0]), **kw)
        down = mg.fit(model, problem.with_observation(problem.observed - h * b[0]), **kw)
        ends.append(float(jnp.sum(b[0].reshape(-1, 1) * (up.predictions[grade]
                                                         - down.predictions[grade])) / (2 * h)))
    last = exact.history["grade"] == 1
    np.testing.assert_allclose(exact.history["divergence"][last][-1], ends[0], rtol=1e-6)
    np.testing.assert_allclose(exact.history["divergence"][-1], ends[1], rtol=1e-6)
    np.testing.assert_allclose(twin.history["divergence"], exact.history["divergence"],
                               rtol=1e-4)


def test_a_twin_at_step_eps_is_a_fit_on_the_moved_observation():
    problem = denoising(mg.load_image("camera", size=10), 0.1, key=jax.random.key(0))
    model = mg.mgdl([[8]] * 2)
    b = jax.random.normal(jax.random.key(2), (2, *problem.observed.shape))
    eps = 0.05
    kw = dict(optimizer=optax.adam(1e-2), epochs=20, key=jax.random.key(1), record_every=10)
    found = mg.fit(model, problem, divergence=mg.Divergence(b, eps), **kw)
    base = mg.fit(model, problem, **kw).predictions[-1]
    div = np.mean([np.sum(np.reshape(bi, (-1, 1)) * (mg.fit(
        model, problem.with_observation(problem.observed + eps * bi), **kw).predictions[-1]
        - base)) / eps for bi in b])
    np.testing.assert_allclose(found.history["divergence"][-1], div, rtol=1e-8)


# ---------------------------------------------------------------------------------------
# Rules on hand-made sequences


class Table(Selector):
    """Scores read from a table {(grade, epoch): score}."""

    def __init__(self, scores, keep_best=True, stop_at=None):
        self.scores, self.keep_best, self.stop_at = scores, keep_best, stop_at

    def score(self, row):
        return self.scores[(row["grade"], row["epoch"])]

    def done(self, row):
        return (row["grade"], row["epoch"]) == self.stop_at


@pytest.fixture(scope="module")
def small():
    problem = denoising(mg.load_image("camera", size=10), 0.1, key=jax.random.key(0))
    kw = dict(optimizer=optax.adam(1e-2), epochs=40, key=jax.random.key(1), record_every=10)
    return problem, kw


def test_keep_best_keeps_each_grades_best_record_and_drops_a_grade_without_gain(small):
    problem, kw = small
    model = mg.mgdl([[8]] * 4)
    scores = {(1, 10): 5, (1, 20): 3, (1, 30): 4, (1, 40): 6,     # best: epoch 20
              (2, 10): 2.5, (2, 20): 2, (2, 30): 2.2, (2, 40): 9,  # best: epoch 20, gains
              (3, 10): 2.1, (3, 20): 2.0, (3, 30): 3, (3, 40): 4}  # 2.0 is no gain: dropped
    found = mg.fit(model, problem, select=Table(scores), **kw)
    assert [g.selected_epoch for g in found.grades] == [20, 20]
    assert [g.criterion for g in found.grades] == [3, 2]
    assert [g.grade for g in found.dropped] == [3] and found.dropped[0].criterion == 2.0
    assert len(found.params) == 2 and len(found.dropped_params) == 1
    # the kept state is the state at that record: a 20-epoch grade 1 from the same start
    first = mg.fit(mg.mgdl([[8]]), problem, **{**kw, "epochs": 20})
    np.testing.assert_allclose(found.predictions[0], first.predictions[0], rtol=1e-10)
    row = (found.history["grade"] == 1) & (found.history["epoch"] == 20)
    assert found.grades[0].metrics["test_psnr"] == pytest.approx(
        found.history["test_psnr"][row][0], rel=1e-10)


def test_a_selector_that_is_done_ends_the_grade_and_adds_no_more(small):
    problem, kw = small
    scores = {(g, e): 1.0 for g in (1, 2, 3) for e in (10, 20, 30, 40)}
    found = mg.fit(mg.mgdl([[8]] * 3), problem,
                   select=Table(scores, keep_best=False, stop_at=(2, 30)), **kw)
    assert [(g.epochs, g.status, g.selected_epoch) for g in found.grades] == \
        [(40, "max_epochs", 40), (30, "selected", 30)]
    assert found.history["grade"].max() == 2


def test_with_coarse_grades_a_selector_judges_the_grades_on_the_images_grid(small):
    # grades 1-2 fit block means on 4× and 2× coarser grids: their records measure another
    # observation, so they train their budgets unjudged (Table has no score for them: a
    # KeyError if asked); grades 3-4 on the image's grid keep their best records, and
    # grade 4, with no gain over grade 3, is dropped
    _, kw = small
    problem = denoising(mg.load_image("camera", size=16), 0.1, key=jax.random.key(0))
    grids = [problem.coarse(4), problem.coarse(2), problem, problem]
    scores = {(3, 10): 4, (3, 20): 2, (3, 30): 3, (3, 40): 5,
              (4, 10): 2.5, (4, 20): 2.2, (4, 30): 2.1, (4, 40): 2.4}
    found = mg.fit(mg.mgdl([[8]] * 4), grids, select=Table(scores), **kw)
    assert [(g.epochs, g.status, g.selected_epoch) for g in found.grades] == \
        [(40, "max_epochs", None), (40, "max_epochs", None), (40, "max_epochs", 20)]
    assert found.grades[-1].criterion == 2
    assert [(g.grade, g.criterion) for g in found.dropped] == [(4, 2.1)]
    # grade 3 kept its state at epoch 20: the same as a 20-epoch grade 3 after them
    short = mg.fit(mg.mgdl([[8]] * 3), grids[:3], **{**kw, "epochs": [40, 40, 20]})
    np.testing.assert_allclose(found.predictions[-1], short.predictions[-1], rtol=1e-10)


@pytest.mark.slow
def test_discrepancy_after_coarse_grades_stops_on_the_images_grid(small):
    _, kw = small
    problem = denoising(mg.load_image("camera", size=16), 0.1, key=jax.random.key(0))
    sigma = float(np.std(np.asarray(problem.observed - problem.clean)))
    rule = selection.Discrepancy(sigma, selection.discrepancy_tau(problem.observed.size))
    found = mg.fit(mg.mgdl([[16]] * 4), [problem.coarse(2), problem, problem, problem],
                   select=rule, **{**kw, "optimizer": optax.adam(3e-2), "epochs": 200})
    assert found.grades[0].status == "max_epochs" and found.grades[0].epochs == 200
    fine = found.history["grade"] >= 2
    res = found.history["residual"][fine]
    hit = np.flatnonzero(res <= rule.tau * sigma**2)
    assert hit.size, "the test needs a run that reaches the noise level"
    assert len(res) == hit[0] + 1  # nothing recorded after the first hit on the image's grid
    assert found.grades[-1].status == "selected"
    assert found.grades[-1].selected_epoch == found.history["epoch"][fine][hit[0]]

def test_discrepancy_stops_at_the_first_record_at_tau_sigma_squared():
    rule = selection.Discrepancy(sigma=0.1, tau=1.02)
    rows = [{"residual": r} for r in (0.05, 0.02, 0.0103, 0.0101, 0.009)]
    assert [rule.done(r) for r in rows] == [False, False, False, True, True]
    assert rule.score(rows[3]) == 0.0101
    assert rows[3]["discrepancy"] == pytest.approx(1.01)  # residual / σ², in the history
    assert selection.discrepancy_tau(128 * 128) == pytest.approx(1 + 2 * math.sqrt(2) / 128)


def test_discrepancy_in_fit(small):
    problem, kw = small
    sigma = float(np.std(np.asarray(problem.observed - problem.clean)))
    rule = selection.Discrepancy(sigma, selection.discrepancy_tau(problem.observed.size))
    found = mg.fit(mg.mgdl([[16]] * 4), problem, select=rule,
                   **{**kw, "optimizer": optax.adam(3e-2), "epochs": 200})
    res = found.history["residual"]
    hit = np.flatnonzero(res <= rule.tau * sigma**2)
    assert hit.size, "the test needs a run that reaches the noise level"
    assert len(res) == hit[0] + 1  # nothing recorded after the first hit
    assert found.grades[-1].status == "selected"
    assert found.grades[-1].selected_epoch == found.history["epoch"][hit[0]]


# ---------------------------------------------------------------------------------------
# Held-out pixels


def test_held_out_pixels_never_enter_the_loss():
    problem = denoising(mg.load_image("camera", size=12), 0.1, key=jax.random.key(0))
    held = problem.held_out(0.25, jax.random.key(3))
    mask = np.asarray(held.mask)[..., 0]
    assert int((mask == 0).sum()) == round(0.25 * 144)
    pred = jax.random.uniform(jax.random.key(1), (144, 1))
    u = held.init_aux(pred)

    def loss_of(y):
        return held.with_observation(y).loss(pred, u)

    grad = np.asarray(jax.grad(loss_of)(held.observed))[..., 0]
    assert np.all(grad[mask == 0] == 0) and np.all(grad[mask == 1] != 0)
    m = held.metrics({"train": pred}, u)
    r2 = (np.asarray(pred).reshape(12, 12) - np.asarray(held.observed)[..., 0]) ** 2
    assert float(m["val_loss"]) == pytest.approx(0.5 * r2[mask == 0].mean(), rel=1e-12)
    assert float(m["residual"]) == pytest.approx(r2[mask == 1].mean(), rel=1e-12)
    assert held.monitor == "val_loss" and problem.monitor == "train_loss"


def test_holdout_keeps_the_record_of_least_held_out_loss(small):
    problem, kw = small
    held = problem.held_out(0.2, jax.random.key(4))
    found = mg.fit(mg.mgdl([[8]] * 2), held, select=selection.Holdout(), **kw)
    for g in found.grades:
        rows = found.history["grade"] == g.grade
        best = np.argmin(found.history["val_loss"][rows])
        assert g.selected_epoch == found.history["epoch"][rows][best]
        assert g.metrics["val_loss"] == pytest.approx(found.history["val_loss"][rows][best])


# ---------------------------------------------------------------------------------------
# Noise level and baselines


@pytest.mark.parametrize("sigma", [5 / 255, 20 / 255, 40 / 255])
def test_the_noise_level_estimate(sigma):
    clean = mg.load_image("camera", size=128)
    y = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)
    assert selection.estimate_sigma(y) == pytest.approx(sigma, rel=0.15)






# ---------------------------------------------------------------------------------------
# Interrupted and resumed


class StopAfter(Callback):
    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_records(self, grade, rows):
        self.seen += 1

    def stop_requested(self):
        return self.seen >= self.n


@pytest.mark.slow
@pytest.mark.parametrize("eps", [None, 0.05])
def test_a_sure_run_resumes_from_disk_to_the_uninterrupted_result(tmp_path, eps):
    problem = denoising(mg.load_image("camera", size=10), 0.1, key=jax.random.key(0))
    model = mg.mgdl([[8]] * 3)
    sigma = 0.1
    probes = jax.random.normal(jax.random.key(5), (2, *problem.observed.shape))
    tx = optax.adam(1e-2)
    kw = dict(optimizer=tx, epochs=40, key=jax.random.key(1), record_every=10,
              checkpoint_every=10, select=selection.Sure(sigma, problem.observed.size),
              divergence=mg.Divergence(probes, eps))
    full = mg.fit(model, problem, **kw)
    with pytest.raises(FitInterrupted) as info:
        mg.fit(model, problem, callbacks=[StopAfter(6)], **kw)  # grade 2, epoch 20
    ckpt = info.value.checkpoint
    assert ckpt.pending.grade == 2 and ckpt.pending.best is not None
    runs.write_npz(tmp_path / runs.CHECKPOINT, checkpoint_arrays(ckpt))
    loaded = load_checkpoint(tmp_path, model, problem, [tx] * 3, probes=2)
    resumed = mg.fit(model, problem, start=loaded, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(resumed.params),
                    jax.tree_util.tree_leaves(full.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.history["sure"], full.history["sure"])
    assert [g.selected_epoch for g in resumed.grades] == [g.selected_epoch for g in full.grades]


# ---------------------------------------------------------------------------------------
# End to end


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["sure", "discrepancy", "holdout", "none"])
def test_compare_with_each_selection(tmp_path, mode):
    out = tmp_path / mode
    r = mgdl_here("compare", "denoise", "--image", "camera", "--size", "24", "--sigma", "25",
              "--grades", "3", "--layers-per-grade", "1", "--width", "12", "--lr", "0.01",
              "--epochs", "60", "--select", mode, "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "Chosen without the clean image" in r.stdout
    for method in ("mgdl", "sgdl"):
        metrics = json.loads((out / method / "metrics.json").read_text())
        sel = metrics["selection"]
        assert sel["mode"] == mode
        history = runs.read_rows(out / method / "history.csv")
        psnr = [row["test_psnr"] for row in history]
        assert sel["oracle"]["test_psnr"] == pytest.approx(max(psnr))
        assert sel["gap"] == pytest.approx(max(psnr) - metrics["metrics"]["test_psnr"])
        assert sel["grades"] == len(metrics["grades"])
        column = {"sure": "sure", "discrepancy": "discrepancy", "holdout": "val_loss",
                  "none": "residual"}[mode]
        assert column in history[0]
        if mode in ("sure", "discrepancy"):
            assert sel["noise_level_source"] == "estimated"
            assert sel["noise_level"] == pytest.approx(25, rel=0.3)
    names = [b["name"] for b in json.loads((out / "baselines.json").read_text())]
    assert names[0] == "TV (Chambolle), oracle"
    if mode != "none":
        assert names[1:] == ["TV (Chambolle), SURE", "TV (Chambolle), discrepancy"]
    page = tmp_path / "report.html"
    assert mgdl_here("report", str(out), "-o", str(page)).returncode == 0
    section = page.read_text().split("Chosen without the clean image")[1]
    table = section.split("</table>")[0]
    assert table.count("<tr>") == 3 and f"<td>{mode}</td>" in table  # header + 2 methods
    assert ("SURE&#x27;s PSNR estimate" in section or "SURE's PSNR estimate" in section) \
        == (mode != "none")


def test_sure_is_refused_for_deblurring_in_one_line(tmp_path):
    r = mgdl_here("compare", "deblur", "--image", "camera", "--size", "24", "--select", "sure",
              "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "discrepancy" in r.stderr
    problem = deblurring(mg.load_image("camera", size=24), 2.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="needs divergence probes"):
        mg.fit(mg.mgdl([[4]]), problem, optimizer=optax.sgd(0.1), epochs=10,
               key=jax.random.key(0), select=selection.Sure(0.01, 24 * 24))
