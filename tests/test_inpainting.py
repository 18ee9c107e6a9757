"""Inpainting: the mask operator, the loss, the held-out pixels, the noise estimate, the
baselines and the commands (`mgdl fit|compare inpaint`)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade.cli import app
from multigrade.problems.inpainting import estimate_sigma, inpainting, random_mask


@pytest.fixture(scope="module")
def image():
    return mg.load_image("camera", size=32)


def hand_loss(P, u, m, y, beta, lam):
    """½‖M ⊙ P − y‖² + (β/2)‖DP − u‖² + λ‖u‖₁ with forward differences (zero last row /
    column), in NumPy."""
    Dv = np.vstack([P[1:] - P[:-1], np.zeros((1, P.shape[1]))])
    Dh = np.hstack([P[:, 1:] - P[:, :-1], np.zeros((P.shape[0], 1))])
    D = np.stack([Dv, Dh])[..., None]
    return (0.5 * np.sum(m * (P - y) ** 2) + 0.5 * beta * np.sum((D - u) ** 2)
            + lam * np.abs(u).sum())


def test_random_mask_hides_exactly_the_fraction(image):
    m = random_mask((32, 32), 0.3, jax.random.key(0))
    assert set(np.unique(m)) == {0.0, 1.0}
    assert int((m == 0).sum()) == round(0.3 * 1024)
    assert not np.array_equal(m, random_mask((32, 32), 0.3, jax.random.key(1)))


def test_observation_is_mask_times_noisy_image(image):
    p = inpainting(image, 0.5, 0.05, key=jax.random.key(3))
    m = np.asarray(p.op.sample)[..., 0]
    y = np.asarray(p.observed)[..., 0]
    assert np.all(y[m == 0] == 0)
    noise = y[m == 1] - image[m == 1]
    assert 0.04 < noise.std() < 0.06
    # the forward operator keeps the seen pixels and zeroes the others
    x = np.random.default_rng(0).random((32, 32, 1))
    np.testing.assert_array_equal(np.asarray(p.forward(jnp.asarray(x))), m[..., None] * x)


def test_loss_and_metrics_match_hand_computation(image):
    p = inpainting(image, 0.4, 0.02, key=jax.random.key(0), beta=0.5, lam=0.2)
    rng = np.random.default_rng(1)
    P = rng.random((32, 32))
    u = rng.normal(size=(2, 32, 32, 1))
    m = np.asarray(p.op.sample)[..., 0]
    y = np.asarray(p.observed)[..., 0]
    expected = hand_loss(P, u, m, y, 0.5, 0.2)
    pred = jnp.asarray(P.reshape(-1, 1))
    np.testing.assert_allclose(p.loss(pred, jnp.asarray(u)), expected, rtol=1e-12)
    metrics = p.metrics({"train": pred}, jnp.asarray(u))
    seen = m == 1
    np.testing.assert_allclose(metrics["residual"], np.mean((P[seen] - y[seen]) ** 2),
                               rtol=1e-12)
    np.testing.assert_allclose(p.next_scale(pred), np.sqrt(np.mean((P[seen] - y[seen]) ** 2)),
                               rtol=1e-12)
    assert p.observed_values() == int(seen.sum())


def test_held_out_pixels_are_seen_ones_and_val_loss_is_theirs(image):
    p = inpainting(image, 0.5, 0.02, key=jax.random.key(0)).held_out(0.2, jax.random.key(5))
    m = np.asarray(p.op.sample)[..., 0] == 1
    held = np.asarray(p.mask)[..., 0] == 0
    assert held.sum() == round(0.2 * m.sum()) and np.all(m[held])
    P = np.random.default_rng(2).random((32, 32))
    y = np.asarray(p.observed)[..., 0]
    metrics = p.metrics({"train": jnp.asarray(P.reshape(-1, 1))}, p.init_aux(None))
    np.testing.assert_allclose(metrics["val_loss"], 0.5 * np.mean((P[held] - y[held]) ** 2),
                               rtol=1e-12)
    fit_pixels = m & ~held
    np.testing.assert_allclose(metrics["residual"],
                               np.mean((P[fit_pixels] - y[fit_pixels]) ** 2), rtol=1e-12)


def test_a_tiny_fit_records_the_hand_computed_loss(image):
    """The last recorded training loss of a fit is the loss of its final prediction P and
    final u, computed here by hand; and training lowers it."""
    p = inpainting(image, 0.5, 0.02, key=jax.random.key(0), beta=0.3, lam=0.05)
    r = mg.fit(mg.mgdl([[8]]), p, optimizer=optax.adam(1e-3), epochs=30,
               key=jax.random.key(0), record_every=10)
    P = np.asarray(r.predictions[-1]).reshape(32, 32)
    u = np.asarray(r.aux)
    expected = hand_loss(P, u, np.asarray(p.op.sample)[..., 0], np.asarray(p.observed)[..., 0],
                         0.3, 0.05)
    np.testing.assert_allclose(r.history["train_loss"][-1], expected, rtol=1e-4)
    assert r.history["train_loss"][-1] < r.history["train_loss"][0]


def test_noise_estimate_from_seen_pixels():
    x = np.linspace(0, 1, 96)
    smooth = 0.5 + 0.3 * np.outer(np.sin(3 * x), np.cos(2 * x))
    p = inpainting(smooth, 0.5, 0.04, key=jax.random.key(0))
    assert abs(estimate_sigma(p.observed, p.op.sample) - 0.04) < 0.004


def test_mask_file_sets_the_seen_pixels(tmp_path, image):
    import imageio.v3 as iio

    mask = np.zeros((32, 32), np.uint8)
    mask[:, :20] = 255
    iio.imwrite(tmp_path / "mask.png", mask)
    runner = CliRunner()
    res = runner.invoke(app, ["fit", "inpaint", "--image", "camera", "--size", "32",
                              "--mask", str(tmp_path / "mask.png"), "--grades", "1",
                              "--width", "8", "--layers-per-grade", "1", "--epochs", "20",
                              "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    np.testing.assert_allclose(metrics["problem"]["missing"], 12 / 32)
    cfg = (tmp_path / "run" / "config.toml").read_text()
    assert "mask_sha256" in cfg  # pinned like the image
    (tmp_path / "mask.png").write_bytes(b"changed")
    res = runner.invoke(app, ["resume", str(tmp_path / "run")])
    assert res.exit_code == 2 and "changed since the run read it" in res.output


@pytest.mark.integration
def test_compare_inpaint_shows_networks_baselines_and_choices(tmp_path):
    res = CliRunner().invoke(app, [
        "compare", "inpaint", "--image", "camera", "--size", "24", "--missing", "0.5",
        "--sigma", "5", "--grades", "2", "--width", "8", "--layers-per-grade", "1",
        "--epochs", "20", "--select", "discrepancy", "--out", str(tmp_path / "c"), "--quiet"])
    assert res.exit_code == 0, res.output
    base = json.loads((tmp_path / "c" / "baselines.json").read_text())
    assert [b["name"] for b in base] == ["biharmonic", "biharmonic + TV, oracle",
                                        "biharmonic + TV, discrepancy"]
    # the oracle's TV weight is the best of the grid: no other choice beats it
    assert base[1]["test_psnr"] >= base[2]["test_psnr"] - 1e-9
    comparison = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert set(comparison) == {"mgdl", "sgdl"}
    assert comparison["mgdl"]["selection"]["mode"] == "discrepancy"
    assert "Chosen without the clean image" in res.output and "biharmonic" in res.output


def test_sure_is_refused_for_inpainting(tmp_path):
    res = CliRunner().invoke(app, ["fit", "inpaint", "--image", "camera", "--size", "16",
                                   "--select", "sure", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "SURE" in res.output
    assert not (tmp_path / "r").exists()
