"""Linear operators and proximal maps of the restoration problems (SPEC §2.2).

- Gaussian blur with numpy-"symmetric" padding and valid convolution, applied as two
  1-D operator matrices: `blur(P) = B_v P B_hᵀ`. The Gaussian kernel is separable and so is
  the padding, so this equals the 2-D definition exactly (tests compare with a direct NumPy
  loop); autodiff gives the adjoint `B_vᵀ R B_h` for free.
- Forward differences with the last row / column repeated (last difference 0).
- Soft-thresholding, the prox of t‖·‖₁.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from multigrade._types import Array, Float


def gaussian_kernel_1d(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of size `2·ceil(3σ) + 1` (= 6σ + 1 for integer σ)."""
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    r = math.ceil(3 * sigma)
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The 2-D kernel k(i, j) ∝ exp(−(i² + j²)/(2σ²)), normalised to sum 1."""
    g = gaussian_kernel_1d(sigma)
    return np.outer(g, g)


def blur_matrix(n: int, sigma: float) -> np.ndarray:
    """The `(n, n)` matrix of 1-D Gaussian blur: symmetric padding, valid convolution.

    Built by blurring the columns of the identity, so it is the definition itself.
    """
    g = gaussian_kernel_1d(sigma)
    r = len(g) // 2
    if r > n:
        raise ValueError(f"a blur of σ_b = {sigma:g} (kernel {len(g)} pixels) needs an image "
                         f"side of at least {r} pixels, got {n}")
    padded = np.pad(np.eye(n), ((r, r), (0, 0)), mode="symmetric")
    # valid convolution along axis 0 (the kernel is symmetric: convolution = correlation)
    return sum(g[t] * padded[t : t + n] for t in range(len(g)))


def apply_blur(blur: tuple[Array, Array] | None, image: Float[Array, "h w c"]) -> Array:
    """`B_v P B_hᵀ` per channel; `None` is the identity (denoising)."""
    if blur is None:
        return image
    rows, cols = blur
    return jnp.einsum("ij,jkc,lk->ilc", rows, image, cols)


def forward_differences(image: Float[Array, "h w c"]) -> Float[Array, "2 h w c"]:
    """`[D_v P; D_h P]`: forward differences, last row / column repeated (difference 0)."""
    dv = jnp.concatenate([image[1:] - image[:-1], jnp.zeros_like(image[:1])], axis=0)
    dh = jnp.concatenate([image[:, 1:] - image[:, :-1], jnp.zeros_like(image[:, :1])], axis=1)
    return jnp.stack([dv, dh])


def soft_threshold(v: Array, t) -> Array:
    """S_t(v) = sign(v)·max(|v| − t, 0), the prox of t‖·‖₁."""
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - t, 0.0)
