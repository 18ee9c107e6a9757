import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from multigrade.nn import Layer, apply_mlp, count_params, hidden_features, init_mlp


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
    params = init_mlp(jr.key(1), [300, 400, 200], init)
    for (W, b), (m, n) in zip(params, [(300, 400), (400, 200)]):
        assert W.shape == (m, n) and b.shape == (n,)
        # 120 000 and 80 000 samples: the sample std is within 1 % of the target.
        np.testing.assert_allclose(np.std(W), std_fn(m, n), rtol=0.01)
        assert abs(np.mean(W)) < 3 * std_fn(m, n) / np.sqrt(W.size)
        np.testing.assert_allclose(np.std(b), bias_std, rtol=0.3, atol=1e-12)
    assert count_params(params) == 300 * 400 + 400 + 400 * 200 + 200


def test_unknown_initialiser_is_refused():
    with pytest.raises(ValueError, match="unknown initialiser"):
        init_mlp(jr.key(0), [2, 3], "xavier")


def test_same_key_same_params_other_key_other_params():
    a, b, c = (init_mlp(jr.key(s), [2, 8, 1]) for s in (0, 0, 1))
    np.testing.assert_array_equal(a[0].W, b[0].W)
    assert not np.allclose(a[0].W, c[0].W)
