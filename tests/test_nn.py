import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from multigrade._types import enable_x64
from multigrade.nn import (
    Layer,
    apply_mlp,
    count_params,
    hidden_features,
    init_layer,
    init_mlp,
    init_siren,
)


def test_hand_set_weights_give_hand_computed_output():
    # x = (1, -2); hidden = relu(x W1 + b1); out = hidden W2 + b2.
    W1 = jnp.array([[1.0, -1.0, 0.5], [2.0, 0.0, -1.0]])
    b1 = jnp.array([0.0, 1.0, -0.5])
    W2 = jnp.array([[1.0], [2.0], [3.0]])
    b2 = jnp.array([0.25])
    params = [Layer(W1, b1), Layer(W2, b2)]
    x = jnp.array([[1.0, -2.0]])
    # pre-activations: (1 - 4 + 0, -1 + 0 + 1, 0.5 + 2 - 0.5) = (-3, 0, 2) -> relu (0, 0, 2)
    np.testing.assert_allclose(hidden_features(params[:1], x), [[0.0, 0.0, 2.0]])
    np.testing.assert_allclose(apply_mlp(params, x), [[6.25]])


@pytest.mark.parametrize(("init", "std_fn", "bias_std"), [
    ("glorot", lambda m, n: np.sqrt(2 / (m + n)), 0.01),
    ("he", lambda m, n: np.sqrt(2 / m), 0.0),
])
def test_initialiser_statistics(init, std_fn, bias_std):
    params = init_mlp(jr.key(1), [300, 400, 200], init=init)
    for (W, b), (m, n) in zip(params, [(300, 400), (400, 200)]):
        assert W.shape == (m, n) and b.shape == (n,)
        # 120 000 and 80 000 samples: the sample std is within 1 % of the target.
        np.testing.assert_allclose(np.std(W), std_fn(m, n), rtol=0.01)
        assert abs(np.mean(W)) < 3 * std_fn(m, n) / np.sqrt(W.size)
        np.testing.assert_allclose(np.std(b), bias_std, rtol=0.3, atol=1e-12)
    assert count_params(params) == 300 * 400 + 400 + 400 * 200 + 200


def test_glorot_is_the_truncated_normal_of_the_papers_code():
    from multigrade.nn import TRUNCATED_NORMAL_STD, init_layer

    W, b = init_layer(jr.key(2), 300, 400, init="glorot")
    std = np.sqrt(2 / 700)
    # no draw beyond the truncation: two standard deviations of the underlying N(0, 1)
    bound = 2 * std / TRUNCATED_NORMAL_STD
    assert np.max(np.abs(W)) <= bound
    assert np.max(np.abs(W)) > 0.99 * bound  # and the tails reach it (120 000 draws)
    # beyond ±2σ: a plain normal puts 4.55 % there; the rescaled truncated normal puts
    # P(1.759 < |z| < 2) / P(|z| < 2) there (z ~ N(0, 1)), 3.47 %; with 120 000 draws the
    # sample fraction is within 0.3 % of it (six standard errors)
    from scipy.stats import norm

    c = 2 * TRUNCATED_NORMAL_STD
    expected = (2 * norm.sf(c) - 2 * norm.sf(2)) / (1 - 2 * norm.sf(2))
    assert abs(np.mean(np.abs(W) > 2 * std) - expected) < 0.003
    np.testing.assert_allclose(np.var(W), std**2, rtol=0.02)
    # it is JAX's own initialiser, bit for bit (same key split)
    w_key, b_key = jr.split(jr.key(2))
    np.testing.assert_array_equal(
        W, jax.nn.initializers.glorot_normal()(w_key, (300, 400), W.dtype))
    np.testing.assert_array_equal(b, jax.nn.initializers.normal(0.01)(b_key, (400,), b.dtype))


def _direct_draws(key, fan_in, fan_out, dtype):
    """Every initialiser's draws for one layer, made for the layer's own shape."""
    w_key, b_key = jr.split(key)
    bound = 1.0 / fan_in
    return {
        "glorot": (jax.nn.initializers.glorot_normal()(w_key, (fan_in, fan_out), dtype),
                   jax.nn.initializers.normal(0.01)(b_key, (fan_out,), dtype)),
        "he": ((2.0 / fan_in) ** 0.5 * jr.normal(w_key, (fan_in, fan_out), dtype),
               jnp.zeros((fan_out,), dtype)),
        "siren": (jr.uniform(w_key, (fan_in, fan_out), dtype, -bound, bound),
                  jr.uniform(b_key, (fan_out,), dtype, -(1 / fan_in) ** 0.5,
                             (1 / fan_in) ** 0.5)),
    }


@pytest.mark.parametrize("x64", [pytest.param(False, marks=pytest.mark.slow), True])
def test_size_bucketed_draws_are_the_layer_shapes_own_draws(x64):
    # init_layer and init_siren draw the next power of two of numbers (compiled once per
    # bucket) and keep the first fan_in·fan_out: the layer's own draw, bit for bit, at a
    # bucket's edge and past it (checked in development on 40 shapes up to 300×400, both
    # precisions); under the older threefry (no prefix property) or a trace, they draw
    # the layer's own shape.
    shapes = [(8, 8), (65, 1)]  # a full bucket of 64; one past it, in a bucket of 128
    with enable_x64(x64):
        for i, (m, n) in enumerate(shapes):
            key = jr.key(10 + i)
            siren_key = jr.split(key, 1)[0]  # init_siren splits its key per layer
            direct = _direct_draws(key, m, n, jnp.zeros(()).dtype)
            (siren,) = init_siren(key, [m, n])
            direct["siren"] = _direct_draws(siren_key, m, n, jnp.zeros(()).dtype)["siren"]
            for name, got in (("glorot", init_layer(key, m, n)),
                              ("he", init_layer(key, m, n, init="he")), ("siren", siren)):
                for a, b in zip(got, direct[name]):
                    assert a.dtype == b.dtype and a.shape == b.shape, (name, m, n)
                    np.testing.assert_array_equal(a, b, err_msg=f"{name} {m}x{n}")
        shape = jax.eval_shape(lambda: init_layer(jr.key(0), 44, 44))
        assert shape.W.shape == (44, 44)
        jax.config.update("jax_threefry_partitionable", False)
        try:
            W, b = init_layer(jr.key(3), 44, 44)
            w_key, b_key = jr.split(jr.key(3))
            np.testing.assert_array_equal(
                W, jax.nn.initializers.glorot_normal()(w_key, (44, 44), W.dtype))
        finally:
            jax.config.update("jax_threefry_partitionable", True)


def test_unknown_initialiser_is_refused():
    with pytest.raises(ValueError, match="unknown initialiser"):
        init_mlp(jr.key(0), [2, 3], init="xavier")


def test_same_key_same_params_other_key_other_params():
    a, b, c = (init_mlp(jr.key(s), [2, 8, 1]) for s in (0, 0, 1))
    np.testing.assert_array_equal(a[0].W, b[0].W)
    assert not np.allclose(a[0].W, c[0].W)
