"""Super-resolution: the downsampling operator (its matrices, its adjoint by the dot test,
its coarse restriction), the problem on two grids, a 2× fit against bicubic, the baselines
and `mgdl compare superres`."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.experiments import ProblemConfig, RunConfig, TrainConfig, load_config
from multigrade.experiments.superres import (
    bicubic,
    downsample,
    downsample_matrix,
    superresolution,
)
from procs import mgdl_here


def disc(size: int = 32) -> np.ndarray:
    """A piecewise-constant image (a disc and a band): TV's prior, with edges that
    interpolation blurs."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    return 0.2 + 0.5 * ((xx - 0.45) ** 2 + (yy - 0.5) ** 2 < 0.09) + 0.2 * (xx > 0.75)


@pytest.mark.parametrize("kernel", ["box", "gaussian"])
@pytest.mark.parametrize("shape", [(12, 10, 1), (13, 9, 3)])
def test_downsampling_adjoint_passes_the_dot_test(kernel, shape):
    op = downsample(shape, 2, kernel)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    y = rng.standard_normal(op.observation_shape(shape))
    assert op(x).shape == (shape[0] // 2, shape[1] // 2, shape[2])
    np.testing.assert_allclose(np.sum(op(x) * y), np.sum(x * op.adjoint(y)), rtol=1e-12)


def test_box_downsampling_is_the_block_mean():
    x = np.random.default_rng(1).standard_normal((13, 10, 2))  # row 12 past the last block
    means = x[:12].reshape(6, 2, 5, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(downsample(x.shape, 2)(x), means, rtol=1e-12)
    # the gaussian kernel's matrix: the block means of the blurred signal, rows summing to 1
    g = downsample_matrix(16, 2, "gaussian")
    np.testing.assert_allclose(g.sum(axis=1), 1.0, rtol=1e-12)
    assert g.shape == (8, 16) and np.count_nonzero(g[3]) > 2


@pytest.mark.parametrize("args, message", [((16, 0), "positive integer"),
                                           ((16, 2, "lanczos"), "unknown downsampling"),
                                           ((3, 2), "fewer than 2")])
def test_bad_downsampling_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        downsample_matrix(*args)


def test_the_problem_keeps_the_two_grids_apart():
    p = superresolution(disc(16), 2, 5 / 255, key=jax.random.key(0))
    assert p.shape == (16, 16, 1) and p.observation_shape == (8, 8, 1)
    assert p.inputs["train"].shape == (256, 2)
    noise = np.asarray(p.observed) - np.asarray(p.op(p.clean))
    assert 3 / 255 < noise.std() < 7 / 255
    # the loss is ½‖A(P) − y‖² + the TV split, with A on the coarse grid (by hand)
    P = np.random.default_rng(2).uniform(size=(16, 16, 1))
    u = np.zeros((2, 16, 16, 1))
    low = P.reshape(8, 2, 8, 2, 1).mean(axis=(1, 3))
    D = np.stack([np.vstack([P[1:] - P[:-1], np.zeros((1, 16, 1))]),
                  np.hstack([P[:, 1:] - P[:, :-1], np.zeros((16, 1, 1))])])
    hand = 0.5 * np.sum((low - np.asarray(p.observed)) ** 2) + 0.5 * 0.1 * np.sum(D ** 2)
    np.testing.assert_allclose(p.loss(jnp.asarray(P.reshape(-1, 1)), u), hand, rtol=1e-12)
    # the observation as an image: each value spread over its block
    np.testing.assert_allclose(p.observed_image(),
                               np.kron(np.asarray(p.observed)[..., 0], np.ones((2, 2))))
    assert p.describe()["observation_shape"] == [8, 8, 1]


def test_a_coarse_grade_restricts_the_downsampling():
    p = superresolution(disc(32), 2, 5 / 255, key=jax.random.key(0))
    c = p.coarse(2)
    assert c.shape == (16, 16, 1) and c.observation_shape == (8, 8, 1)
    # R A E of block means by 2 is block means by 2 one grid down
    np.testing.assert_allclose(c.op.rows, downsample_matrix(16, 2), atol=1e-15)


def test_two_grades_beat_bicubic_at_2x():
    p = superresolution(disc(32), 2, 10 / 255, key=jax.random.key(0), beta=1.0, lam=0.01)
    r = mg.fit(mg.mgdl([[32, 32]] * 2), p, optimizer=optax.adam(5e-3), epochs=400,
               key=jax.random.key(1))
    clean = p.target_image()
    up = bicubic(np.asarray(p.observed)[..., 0], clean.shape)
    cubic = -10 * np.log10(np.mean((up - clean) ** 2))
    assert r.metrics["test_psnr"] > cubic + 0.5
    assert r.grades[1].metrics["test_psnr"] > r.grades[0].metrics["test_psnr"]


def test_bicubic_interpolates_a_smooth_image_closely():
    yy, xx = np.mgrid[0:32, 0:32] / 31
    smooth = 0.5 + 0.3 * np.sin(2 * xx) * np.cos(1.5 * yy)
    low = downsample(smooth.shape + (1,), 2)(smooth[..., None])[..., 0]
    up = bicubic(np.asarray(low), smooth.shape)
    err = np.abs(up - smooth)
    # block centres aligned (half a pixel off would cost ~1e-2 inside); the border extrapolates
    assert up.shape == smooth.shape and err[2:-2, 2:-2].max() < 3e-3 and err.max() < 1e-2


def test_what_superres_takes_and_refuses():
    base = dict(problem=ProblemConfig(task="superres", size=16))
    with pytest.raises(ValueError, match="pixel-wise"):
        RunConfig(train=TrainConfig(batch=0.5), **base)
    with pytest.raises(ValueError, match="SURE|select"):
        RunConfig(train=TrainConfig(select="sure"), **base)
    RunConfig(train=TrainConfig(select="discrepancy"), **base)  # allowed
    RunConfig(train=TrainConfig(coarse=(2,)), **base)  # coarse grades apply
    with pytest.raises(ValueError, match="coarser grid"):
        RunConfig(train=TrainConfig(coarse=(2,)), problem=ProblemConfig(task="inpaint"))
    with pytest.raises(ValueError, match="kernel"):
        ProblemConfig(task="superres", options={"kernel": "nearest"})
    with pytest.raises(ValueError, match="at least 2"):
        ProblemConfig(task="superres", options={"factor": 1})
    with pytest.raises(ValueError, match="no options of its own"):
        ProblemConfig(task="denoise", options={"factor": 2})


@pytest.mark.integration
def test_compare_superres_prints_networks_and_baselines(tmp_path):
    res = mgdl_here("compare", "superres", "--image", "camera", "--size", "16", "--factor", "2",
                    "--sigma", "5", "--grades", "2", "--width", "8", "--layers-per-grade", "1",
                    "--epochs", "20", "--select", "discrepancy", "--out", tmp_path / "c",
                    "--quiet")
    assert res.returncode == 0, res.stderr
    for name in ("bicubic", "TV on bicubic, oracle", "TV on bicubic, discrepancy", "mgdl",
                 "sgdl"):
        assert name in res.stdout
    base = json.loads((tmp_path / "c" / "baselines.json").read_text())
    assert [b["name"] for b in base][0] == "bicubic"
    config = load_config(tmp_path / "c")
    assert config.problem.task == "superres" and config.problem.options.factor == 2
    assert "[problem.options]" in (tmp_path / "c" / "config.toml").read_text()
