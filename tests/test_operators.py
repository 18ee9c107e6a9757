import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from multigrade.operators import (
    apply_blur,
    blur_matrix,
    forward_differences,
    gaussian_kernel,
    soft_threshold,
)


def direct_blur(image: np.ndarray, sigma: int) -> np.ndarray:
    """SPEC §2.2 literally: kernel 6σ+1 from the formula, symmetric padding, valid 2-D
    convolution as a double loop over kernel offsets."""
    size = 6 * sigma + 1
    r = size // 2
    i, j = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    k = np.exp(-(i**2 + j**2) / (2 * sigma**2))
    k /= k.sum()
    padded = np.pad(image, r, mode="symmetric")
    H, W = image.shape
    out = np.zeros_like(image)
    for a in range(size):
        for b in range(size):
            # convolution flips the kernel; it is symmetric, so the flip changes nothing
            out += k[size - 1 - a, size - 1 - b] * padded[a : a + H, b : b + W]
    return out


@pytest.mark.parametrize("sigma", [1, 3, 5])
def test_blur_equals_direct_definition(sigma):
    image = np.random.default_rng(sigma).random((37, 29))
    blur = (jnp.asarray(blur_matrix(37, sigma)), jnp.asarray(blur_matrix(29, sigma)))
    ours = np.asarray(apply_blur(blur, jnp.asarray(image)[..., None]))[..., 0]
    np.testing.assert_allclose(ours, direct_blur(image, sigma), rtol=1e-12, atol=1e-13)
    # and in float32, as training runs by default
    blur32 = tuple(jnp.asarray(b, jnp.float32) for b in blur)
    ours32 = apply_blur(blur32, jnp.asarray(image, jnp.float32)[..., None])[..., 0]
    np.testing.assert_allclose(ours32, direct_blur(image, sigma), rtol=0, atol=2e-6)


def test_kernel_is_normalised_and_has_size_6_sigma_plus_1():
    for sigma in (1, 3, 7):
        k = gaussian_kernel(sigma)
        assert k.shape == (6 * sigma + 1,) * 2
        np.testing.assert_allclose(k.sum(), 1.0)
    with pytest.raises(ValueError):
        gaussian_kernel(0)


def test_blur_adjoint_from_autodiff():
    rng = np.random.default_rng(0)
    blur = (jnp.asarray(blur_matrix(12, 2)), jnp.asarray(blur_matrix(9, 2)))
    x, y = jnp.asarray(rng.random((12, 9, 1))), jnp.asarray(rng.random((12, 9, 1)))
    _, pullback = jax.vjp(lambda v: apply_blur(blur, v), x)
    (aty,) = pullback(y)
    np.testing.assert_allclose(jnp.vdot(apply_blur(blur, x), y), jnp.vdot(x, aty), rtol=1e-12)


def test_forward_differences_match_numpy_loop():
    image = np.random.default_rng(1).random((5, 7, 2))
    D = np.asarray(forward_differences(jnp.asarray(image)))
    assert D.shape == (2, 5, 7, 2)
    for i in range(5):
        for j in range(7):
            dv = image[i + 1, j] - image[i, j] if i < 4 else 0.0
            dh = image[i, j + 1] - image[i, j] if j < 6 else 0.0
            np.testing.assert_allclose(D[0, i, j], dv)
            np.testing.assert_allclose(D[1, i, j], dh)
    np.testing.assert_array_equal(D[0, -1], 0.0)
    np.testing.assert_array_equal(D[1, :, -1], 0.0)
    np.testing.assert_array_equal(forward_differences(jnp.full((4, 4, 1), 3.0)), 0.0)


def test_soft_threshold_hand_values():
    v = jnp.array([-3.0, -0.5, 0.0, 0.2, 1.0, 2.5])
    np.testing.assert_allclose(soft_threshold(v, 1.0), [-2.0, 0.0, 0.0, 0.0, 0.0, 1.5])
    np.testing.assert_array_equal(soft_threshold(v, 0.0), v)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, 20, elements=st.floats(-10, 10)), st.floats(0.0, 5.0))
def test_soft_threshold_is_the_prox(v, t):
    x = np.asarray(soft_threshold(jnp.asarray(v), t))
    # optimality of argmin_x ½(x − v)² + t|x|: x − v + t·sign(x) = 0 where x ≠ 0, |v| ≤ t at 0
    nz = x != 0
    np.testing.assert_allclose((x - v + t * np.sign(x))[nz], 0.0, atol=1e-12)
    assert np.all(np.abs(v[~nz]) <= t + 1e-12)
    # non-expansive
    w = v[::-1].copy()
    y = np.asarray(soft_threshold(jnp.asarray(w), t))
    assert np.linalg.norm(x - y) <= np.linalg.norm(v - w) + 1e-12


# ---------------------------------------------------------------------------------------
# The degradation operators as objects


def _operators(shape):
    from multigrade import operators as O

    rng = np.random.default_rng(3)
    sample = (rng.uniform(size=(*shape[:2], 1)) > 0.4).astype(float)
    return {"identity": O.Identity(), "blur": O.blur(shape, 1.0), "mask": O.Mask(sample)}


@pytest.mark.parametrize("name", ["identity", "blur", "mask"])
def test_each_operators_adjoint_passes_the_dot_test(name):
    shape = (12, 9, 2)
    op = _operators(shape)[name]
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(shape), rng.standard_normal(op.observation_shape(shape))
    np.testing.assert_allclose(np.sum(op(x) * y), np.sum(x * op.adjoint(y)), rtol=1e-12)
    # a pytree: the operator goes through jit whole, its arrays as arguments
    np.testing.assert_allclose(jax.jit(lambda o, v: o(v))(op, x), op(x), rtol=1e-12)


def test_the_blur_operator_is_the_literal_blur_and_says_what_it_supports():
    from multigrade import operators as O

    image = np.random.default_rng(5).uniform(size=(16, 16))
    op = O.blur((16, 16, 1), 2.0)
    np.testing.assert_allclose(op(image[..., None])[..., 0], direct_blur(image, 2), rtol=1e-10)
    assert not O.Separable.pixelwise and O.Separable.coarsens
    assert O.Blur.tiles and not (O.Separable.tiles or O.Identity.tiles or O.Mask.tiles)
    # the band: a 2.0 blur reads 6 pixels either side, its coarse restrictions fewer
    assert op.band == 6 and op.coarse(2).band == 3 and op.coarse(4).band == 2
    for o in (op, op.coarse(2)):
        m = np.asarray(o.rows)
        i, j = np.indices(m.shape)
        assert np.all(m[np.abs(i - j) > o.band] == 0) and np.any(m[np.abs(i - j) == o.band])
    assert O.Identity.pixelwise and O.Mask.pixelwise and not O.Mask.coarsens
    with pytest.raises(ValueError, match="gaps"):
        O.Mask(np.ones((4, 4, 1))).coarse(2)
    with pytest.raises(ValueError, match="at least 13 × 13"):
        O.blur((12, 20, 1), 2.0)
