import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.problems import deblurring, denoising
from multigrade.train import GradeState, make_epoch


@pytest.fixture(scope="module")
def image():
    return mg.load_image("camera", size=32)


def test_loss_and_u_update_match_hand_computation(image):
    p = denoising(image, 0.1, key=jax.random.key(0), beta=0.5, lam=0.2, alpha=0.9)
    rng = np.random.default_rng(0)
    P = rng.random((32, 32))
    u = rng.normal(size=(2, 32, 32, 1))
    y = np.asarray(p.observed)[..., 0]
    Dv = np.vstack([P[1:] - P[:-1], np.zeros((1, 32))])
    Dh = np.hstack([P[:, 1:] - P[:, :-1], np.zeros((32, 1))])
    D = np.stack([Dv, Dh])[..., None]
    expected = (0.5 * np.sum((P - y) ** 2) + 0.25 * np.sum((D - u) ** 2) + 0.2 * np.abs(u).sum())
    pred = jnp.asarray(P.reshape(-1, 1))
    np.testing.assert_allclose(p.loss(pred, jnp.asarray(u)), expected, rtol=1e-12)
    v = 0.9 * D + 0.1 * u
    t = 0.9 * 0.2 / 0.5
    expected_u = np.sign(v) * np.maximum(np.abs(v) - t, 0)
    np.testing.assert_allclose(p.update_aux(jnp.asarray(u), pred), expected_u, rtol=1e-12)


def test_observation_depends_on_noise_seed_only(image):
    a = denoising(image, 20 / 255, key=jax.random.key(1))
    b = denoising(image, 20 / 255, key=jax.random.key(1))
    c = denoising(image, 20 / 255, key=jax.random.key(2))
    np.testing.assert_array_equal(a.observed, b.observed)
    assert not np.allclose(a.observed, c.observed)
    noise = np.asarray(a.observed - a.clean)
    assert abs(noise.std() - 20 / 255) < 0.1 * 20 / 255  # 1024 samples


def test_deblur_observation_is_blurred_image_plus_noise(image):

    p = deblurring(image, 2, 0.0, key=jax.random.key(0))
    np.testing.assert_allclose(p.observed, p.op(p.clean), rtol=1e-12)
    assert p.observed_psnr() < 40  # blurring changed the image


def test_one_forward_pass_gives_the_two_pass_gradient(image):
    # The paper's code evaluates the network for the u update and again for the gradient;
    # our epoch does it once. Both must give the same u and parameter update.
    p = deblurring(image, 1, 3 / 255, key=jax.random.key(0), beta=0.3, lam=0.05)
    model = mg.mgdl([[16, 16]])
    params = model.init_grade(jax.random.key(1), 0, 2)
    tx = optax.sgd(1e-3)
    u0 = jax.random.normal(jax.random.key(2), (2, 32, 32, 1))
    base = jnp.zeros((1024, 1))
    state, _ = make_epoch(p, tx, p.coords, base, 1.0)(GradeState(params, tx.init(params), u0))

    def net(q):
        return mg.grade_output(q, p.coords)

    u1 = p.update_aux(u0, net(params))
    grads = jax.grad(lambda q: p.loss(net(q), u1))(params)
    expected = jax.tree_util.tree_map(lambda a, g: a - 1e-3 * g, params, grads)
    np.testing.assert_allclose(state.aux, u1, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_grade_scale_is_rms_residual_and_u_carries_over(image):
    # λ/β small enough that the threshold leaves some of u non-zero
    p = denoising(image, 20 / 255, key=jax.random.key(0), beta=1.0, lam=1e-3)
    r = mg.fit(mg.mgdl([[8, 8]] * 3), p, optimizer=optax.adam(5e-3), epochs=20,
               key=jax.random.key(0))
    y = np.asarray(p.observed).reshape(-1, 1)
    assert r.scales[0] == 1.0
    for k in (1, 2):
        expected = np.sqrt(np.mean((r.predictions[k - 1] - y) ** 2))
        np.testing.assert_allclose(r.scales[k], expected, rtol=1e-12)
    # The prediction is P_K = Σ s_k g_k.
    np.testing.assert_allclose(r.predict(p.coords), r.predictions[-1], rtol=1e-10)
    assert r.aux.shape == (2, 32, 32, 1) and np.any(r.aux != 0)


def test_same_seed_same_result(image):
    kw = dict(optimizer=optax.adam(5e-3), epochs=20, key=jax.random.key(0))
    runs = [mg.fit(mg.mgdl([[8]] * 2), denoising(image, 0.1, key=jax.random.key(s)), **kw)
            for s in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0].history["test_psnr"], runs[1].history["test_psnr"])
    assert not np.allclose(runs[0].history["test_psnr"], runs[2].history["test_psnr"])


def test_mgdl_denoising_beats_the_noisy_observation():
    clean = mg.load_image("camera", size=64)
    p = denoising(clean, 30 / 255, key=jax.random.key(1))
    r = mg.fit(mg.mgdl([[64, 64]] * 3), p, optimizer=optax.adam(5e-3), epochs=200,
               key=jax.random.key(0))
    # measured: 18.6 dB observed, 24.3 dB after grade 3
    assert r.metrics["test_psnr"] > p.observed_psnr() + 3.0
    assert r.grades[-1].metrics["test_psnr"] > r.grades[0].metrics["test_psnr"]
    np.testing.assert_allclose(r.metrics["test_psnr"], mg.psnr(r.predictions[-1].reshape(64, 64),
                                                          clean), rtol=1e-10)


def test_colour_restores_each_channel():
    rgb = mg.load_image("astronaut", size=16, gray=False)
    assert rgb.shape == (16, 16, 3)
    p = denoising(rgb, 0.1, key=jax.random.key(0))
    assert p.out_dim == 3
    r = mg.fit(mg.mgdl([[8]] * 2, out_dim=3), p, optimizer=optax.adam(5e-3), epochs=10,
               key=jax.random.key(0))
    assert p.render(r.predictions[-1]).shape == (16, 16, 3)
    # the TV and data terms act per channel: the loss of a colour image is the sum of the
    # losses of its channels, each taken as a gray image with the same noise
    u = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
    P = jax.random.uniform(jax.random.key(4), (256, 3))
    total = 0.0
    for c in range(3):
        gray = dataclasses.replace(p, observed=p.observed[..., c:c + 1],
                                   clean=p.clean[..., c:c + 1])
        total += gray.loss(P[:, c:c + 1], u[..., c:c + 1])
    np.testing.assert_allclose(p.loss(P, u), total, rtol=1e-12)
    with pytest.raises(ValueError, match="3 outputs"):
        mg.fit(mg.mgdl([[8]]), p, optimizer=optax.adam(1e-3), epochs=10,
               key=jax.random.key(0))
