import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.model import grade_output


@pytest.fixture(scope="module")
def problem():
    return mg.image_regression(mg.load_image("camera", size=16))


def _numpy_grade(p, x):
    """Independent NumPy forward pass of one grade: (features, output)."""
    for W, b in p.hidden:
        x = np.maximum(x @ np.asarray(W) + np.asarray(b), 0.0)
    return x, x @ np.asarray(p.head.W) + np.asarray(p.head.b)


def test_architecture_bookkeeping():
    m = mg.mgdl([[8, 8], [6], [5, 4]])
    assert m.num_grades == 3 and m.depth == 5
    assert m.layer_sizes(0, 2) == [2, 8, 8, 1]
    assert m.layer_sizes(1, 2) == [8, 6, 1]
    assert m.layer_sizes(2, 2) == [6, 5, 4, 1]
    s = mg.sgdl([8] * 4)
    assert s.num_grades == 1 and s.depth == 4


@pytest.mark.parametrize("grades", [[], [[]], [[4, 0]]])
def test_bad_architectures_are_refused(grades):
    with pytest.raises(ValueError):
        mg.mgdl(grades)


def test_one_grade_mgdl_equals_sgdl(problem, key):
    kwargs = dict(optimizer=optax.adam(1e-2), epochs=40, key=key)
    a = mg.fit(mg.mgdl([[12, 12, 12]]), problem, **kwargs)
    b = mg.fit(mg.sgdl([12, 12, 12]), problem, **kwargs)
    np.testing.assert_array_equal(_flat(a.params), _flat(b.params))
    x = problem.x["test"]
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    np.testing.assert_array_equal(a.history["val_loss"], b.history["val_loss"])


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def test_later_grades_leave_earlier_grades_unchanged(problem, key):
    kwargs = dict(optimizer=optax.adam(1e-2), epochs=30, key=key)
    one = mg.fit(mg.mgdl([[10, 10]]), problem, **kwargs)
    three = mg.fit(mg.mgdl([[10, 10], [10, 10], [10, 10]]), problem, **kwargs)
    # Grade 1 trained alone and grade 1 of the three-grade run are bit-for-bit equal.
    np.testing.assert_array_equal(_flat(one.params[0]), _flat(three.params[0]))
    # Later grades did train (they differ from their initialisation).
    init = three.model.init_grade(three.model.grade_key(key, 1), 1, 2)
    assert not np.allclose(_flat(init), _flat(three.params[1]))
    # The prediction is the sum of grade outputs, each grade fed the previous features.
    x = np.asarray(problem.x["test"])
    total, feats = 0.0, x
    for p in three.params:
        feats, out = _numpy_grade(p, feats)
        total = total + out
    np.testing.assert_allclose(three.predict(x), total, rtol=1e-10, atol=1e-12)
    # And the stored per-grade predictions are the partial sums.
    np.testing.assert_allclose(three.predictions[0], one.predict(x), rtol=1e-12)


def test_grade_output_matches_numpy(key):
    m = mg.mgdl([[7, 5]])
    p = m.init_params(key, 3)[0]
    x = np.asarray(jr.normal(jr.key(2), (11, 3)))
    np.testing.assert_allclose(grade_output(p, jnp.asarray(x)), _numpy_grade(p, x)[1],
                               rtol=1e-12)


def test_shared_grade_key_starts_later_grades_like_the_papers_code(key):
    import jax

    shared = mg.mgdl([[8, 8, 8]] * 3, shared_grade_key=True).init_params(key, 2)
    own = mg.mgdl([[8, 8, 8]] * 3).init_params(key, 2)
    for k in (1, 2):
        # the first hidden layer differs in shape (input 2 vs 8); the others start equal
        for i in (1, 2):
            np.testing.assert_array_equal(shared[k].hidden[i].W, shared[0].hidden[i].W)
        np.testing.assert_array_equal(shared[k].head.W, shared[0].head.W)
        assert not np.allclose(own[k].hidden[1].W, own[0].hidden[1].W)
    # grade 1 is the same either way
    for a, b in zip(jax.tree_util.tree_leaves(shared[0]), jax.tree_util.tree_leaves(own[0])):
        np.testing.assert_array_equal(a, b)


def test_module_functions_refuse_grades_they_cannot_evaluate():
    """The module-level `grade_features` / `grade_output` / `predict` compute ReLU grades;
    a Fourier or SIREN grade is refused (its model knows σ, seed, ω₀), never evaluated as
    if it were ReLU."""
    x = jnp.linspace(0, 1, 6).reshape(3, 2)
    for arch in ("fourier", "siren"):
        model = mg.mgdl([[8]], archs=(arch,))
        params = [model.init_grade(jax.random.key(0), 0, 2)]
        with pytest.raises(TypeError, match="evaluated by its model|GradeParams"):
            mg.predict(params, x)
        assert model.predict(params, x).shape == (3, 1)
    relu = mg.mgdl([[8]])
    params = [relu.init_grade(jax.random.key(0), 0, 2)]
    np.testing.assert_array_equal(mg.predict(params, x), relu.predict(params, x))
