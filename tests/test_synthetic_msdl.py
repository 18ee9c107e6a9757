import jax
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.problems import synthetic
from multigrade.problems.synthetic import frequencies


def test_synthetic_data_follow_the_formula():
    p = synthetic(2)
    np.testing.assert_allclose(frequencies(2), [1, 8.25, 15.5, 22.75, 30])
    assert p.x["train"].shape == (1024, 1) and p.x["val"].shape == (1024, 1)
    assert p.x["test"].shape == (10_000, 1)
    np.testing.assert_allclose(p.x["train"][:, 0], np.linspace(0, 1, 1024))
    # recover the phases from two points of the train set is hard; check the function is a
    # sum of 5 unit sines: its values lie within ±5 and its spectrum peaks at κ
    y = np.asarray(p.y["test"][:, 0])
    assert np.abs(y).max() <= 5
    spectrum = np.abs(np.fft.rfft(y[:-1]))  # ~ integer frequencies on [0, 1)
    assert set(np.argsort(spectrum)[-2:]) <= {1, 8, 9, 15, 16, 22, 23, 30}
    # the same key gives the same data, another key other phases
    np.testing.assert_array_equal(synthetic(1).y["val"], synthetic(1).y["val"])
    assert not np.allclose(synthetic(1, key=jax.random.key(9)).y["train"],
                           synthetic(1).y["train"])
    with pytest.raises(ValueError, match="setting"):
        synthetic(3)


def test_msdl_is_a_sum_of_scaled_subnetworks(key):
    model = mg.MultiScale((1.0, 2.0, 4.0), (5, 4))
    params = model.init_grade(key, 0, 1)
    x = jax.numpy.linspace(0, 1, 7)[:, None]
    expected = 0.0
    for c, net in zip((1.0, 2.0, 4.0), params):
        h = c * np.asarray(x)
        for W, b in net[:-1]:
            h = np.maximum(h @ np.asarray(W) + np.asarray(b), 0)
        expected = expected + h @ np.asarray(net[-1].W) + np.asarray(net[-1].b)
    np.testing.assert_allclose(model.grade_output(params, x), expected, rtol=1e-12)
    r = mg.fit(model, synthetic(1), optimizer=optax.adam(1e-2), epochs=100, key=key)
    assert r.history["train_loss"][-1] < r.history["train_loss"][0]
    np.testing.assert_allclose(r.predict(x), model.grade_output(r.params[0], x), rtol=1e-12)
