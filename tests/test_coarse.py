"""Coarse-to-fine grades: a denoising or deblurring problem on coarser grids
(`Restoration.coarse`) and `fit` with one problem per grade (`train.coarse`, `--coarse`)."""

import jax
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade import runs
from multigrade.cli import app
from multigrade.experiments.checkpoints import checkpoint_arrays, load_checkpoint
from multigrade.metrics import psnr
from multigrade.problems import deblurring, denoising
from multigrade.train import FitInterrupted
from test_checkpoint import StopAfter, assert_same_run


@pytest.fixture(scope="module")
def problem():
    return denoising(mg.load_image("camera", size=18), 0.1, key=jax.random.key(1), beta=1.0,
                     lam=1e-3)


def block_means(a, f):
    """Means over f × f blocks, written as loops."""
    h, w = a.shape[0] // f, a.shape[1] // f
    out = np.zeros((h, w, a.shape[2]))
    for i in range(h):
        for j in range(w):
            out[i, j] = a[i * f:(i + 1) * f, j * f:(j + 1) * f].mean(axis=(0, 1))
    return out


def test_a_coarse_problem_is_the_block_means_of_the_observation(problem):
    c = problem.coarse(4)  # 18 = 4 · 4 + 2: the last two rows and columns are dropped
    assert c.shape == (4, 4, 1)
    np.testing.assert_allclose(c.observed, block_means(np.asarray(problem.observed), 4))
    np.testing.assert_allclose(c.clean, block_means(np.asarray(problem.clean), 4))
    coords = np.asarray(problem.coords).reshape(18, 18, 2)
    np.testing.assert_allclose(np.asarray(c.coords).reshape(4, 4, 2), block_means(coords, 4))
    assert problem.coarse(1) is problem
    with pytest.raises(ValueError, match="every pixel observed"):
        problem.held_out(0.1, jax.random.key(0)).coarse(2)
    with pytest.raises(ValueError, match="positive integer"):
        problem.coarse(0)


@pytest.mark.parametrize("size, factor", [(30, 3), (29, 4)])
def test_a_coarse_blur_of_block_means_is_the_block_means_of_the_blur(size, factor):
    """For an image constant on each block (the pixels past the last whole block taking the
    last block's value), the coarse problem's blur of the block means equals the block
    means of the fine blur, computed here by a direct 2-D convolution."""
    from multigrade.operators import gaussian_kernel

    fine = deblurring(mg.load_image("camera", size=size), 1.0, key=jax.random.key(0))
    c = fine.coarse(factor)
    m = size // factor
    values = np.random.default_rng(0).uniform(size=(m, m, 1))
    blocks = np.minimum(np.arange(size) // factor, m - 1)
    image = values[blocks][:, blocks]  # block-constant, edge pixels = the last block
    k = gaussian_kernel(1.0)
    r = k.shape[0] // 2
    padded = np.pad(image[..., 0], r, mode="symmetric")
    blurred = np.array([[np.sum(k * padded[i:i + k.shape[0], j:j + k.shape[0]])
                         for j in range(size)] for i in range(size)])[..., None]
    np.testing.assert_allclose(c.forward(jax.numpy.asarray(values)), block_means(blurred, factor),
                               atol=1e-12)
    np.testing.assert_allclose(c.observed, block_means(np.asarray(fine.observed), factor))
    # no blur stays no blur: the identity's coarse operator is the identity
    from multigrade.operators import coarse_operator

    np.testing.assert_array_equal(coarse_operator(np.eye(size), factor), np.eye(m))


def test_a_coarse_grade_is_one_function_on_both_grids(problem):
    model = mg.mgdl([[8, 8]] * 3)
    grids = [problem.coarse(4), problem.coarse(2), problem]
    r = mg.fit(model, grids, optimizer=optax.adam(1e-2), epochs=40, key=jax.random.key(0),
               record_every=10)
    assert r.problem is problem and [p.shape for p in r.predictions] == [(324, 1)] * 3
    for k in (1, 2, 3):
        # on the grid it was fitted on: its last record, against a direct evaluation
        fitted_on = grids[k - 1]
        coarse = np.asarray(model.predict(r.params[:k], fitted_on.coords, r.scales[:k]))
        last = np.flatnonzero(r.history["grade"] == k)[-1]
        assert r.history["test_psnr"][last] == pytest.approx(
            float(psnr(coarse.reshape(fitted_on.shape), np.asarray(fitted_on.clean))), rel=1e-9)
        # on the full grid: the result's prediction and metrics are the same function's
        full = np.asarray(model.predict(r.params[:k], problem.coords, r.scales[:k]))
        np.testing.assert_allclose(r.predictions[k - 1], full, rtol=1e-12, atol=1e-12)
        assert r.grades[k - 1].metrics["test_psnr"] == pytest.approx(
            float(psnr(full.reshape(problem.shape), np.asarray(problem.clean))), rel=1e-9)


@pytest.mark.slow
def test_a_coarse_to_fine_run_resumed_from_its_checkpoint_file_equals_an_uninterrupted_one(
        problem, tmp_path):
    model = mg.mgdl([[8, 8]] * 3)
    grids = [problem.coarse(3), problem, problem]
    kw = dict(optimizer=optax.adam(1e-2), epochs=60, key=jax.random.key(0), record_every=5,
              window=4, checkpoint_every=25)
    full = mg.fit(model, grids, **kw)
    for grade in (1, 2):  # mid-grade on the coarse grid, then on the first fine one
        with pytest.raises(FitInterrupted) as info:
            mg.fit(model, grids, callbacks=[StopAfter(grade, 2)], **kw)
        runs.write_npz(tmp_path / runs.CHECKPOINT, checkpoint_arrays(info.value.checkpoint))
        start = load_checkpoint(tmp_path, model, grids, [kw["optimizer"]] * 3)
        assert_same_run(mg.fit(model, grids, start=start, **kw), full)


TINY = ["--image", "camera", "--size", "16", "--layers-per-grade", "1", "--width", "8",
        "--epochs", "20", "--quiet"]


@pytest.mark.integration
@pytest.mark.parametrize("task", [["denoise"], ["deblur", "--blur-sigma", "1"]])
def test_coarse_grades_from_the_cli(tmp_path, task):
    res = CliRunner().invoke(app, ["compare", *task, *TINY, "--grades", "3", "--coarse",
                                   "4,2", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    config = runs.read_toml(tmp_path / "c" / "config.toml")
    assert config["train"]["coarse"] == [4, 2]
    images = runs.read_npz(tmp_path / "c" / "mgdl" / runs.IMAGES)
    assert {images[f"grade{k}"].shape for k in (1, 2, 3)} == {(16, 16)}
    sgdl = runs.read_toml(tmp_path / "c" / "sgdl" / "config.toml")
    assert sgdl["train"]["coarse"] == []  # SGDL is one grade on the image's grid


@pytest.mark.integration
def test_the_fast_recipes_shape_selects_without_the_clean_image(tmp_path):
    # coarse grades and mini-batches (the fast scale's MGDL; SGDL takes the batches) with
    # --select discrepancy: only the grades on the image's grid are judged
    res = CliRunner().invoke(app, ["compare", "denoise", *TINY, "--grades", "3", "--coarse",
                                   "2", "--batch", "0.25", "--select", "discrepancy",
                                   "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    for method in ("mgdl", "sgdl"):
        metrics = runs.read_json(tmp_path / "c" / method / "metrics.json")
        assert metrics["selection"]["mode"] == "discrepancy"
        judged = [g["selected_epoch"] is not None for g in metrics["grades"]]
        assert judged == ([False, True, True] if method == "mgdl" else [True])

@pytest.mark.parametrize("args, message", [
    (["denoise", "--grades", "2", "--coarse", "2,2"], "the last grade fits the image's own"),
    (["inpaint", "--grades", "2", "--coarse", "2"], "restricts to a coarser grid"),
    (["denoise", "--grades", "2", "--coarse", "2", "--method", "sgdl"], "are MGDL's"),
    (["denoise", "--grades", "2", "--coarse", "x"], "must be whole numbers"),
    (["denoise", "--grades", "2", "--coarse", "2", "--select", "sure"],
     "SURE's divergence follows one observation"),
    (["denoise", "--grades", "2", "--coarse", "2", "--select", "holdout"],
     "would read the held-out pixels; --select discrepancy judges"),
])
def test_bad_coarse_grades_are_one_line(tmp_path, args, message):
    res = CliRunner().invoke(app, ["fit", *args, *TINY, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
