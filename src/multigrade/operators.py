"""Linear operators and proximal maps of the restoration problems (SPEC §2.2).

The degradation A of a restoration (y = A(I) + n) is an operator object (the model is
deepinv's `physics`): it maps an image on the image grid to an observation on its own grid,
has an adjoint, and says what the training may do with it. `Identity` (denoising),
`Separable` (`R P Cᵀ` with 1-D matrices: `Blur`, and downsampling, built in
`experiments.superres`), `Mask` (inpainting: a pixel
selection). Each is a pytree (its arrays are leaves), so a problem holding one goes through
`jax.jit` whole, and a class attribute answers the capabilities asked before any array
exists (config validation): `pixelwise` (A keeps each pixel apart: mini-batches of pixels
apply), `tiles` (A reads a bounded neighbourhood, `Blur`: mini-batches of tiles apply) and
`coarsens` (the operator restricts to a coarser grid: coarse-to-fine grades).

- Gaussian blur with numpy-"symmetric" padding and valid convolution, applied as two
  1-D operator matrices: `blur(P) = B_v P B_hᵀ`. The Gaussian kernel is separable and so is
  the padding, so this equals the 2-D definition exactly (tests compare with a direct NumPy
  loop); autodiff gives the adjoint `B_vᵀ R B_h` for free.
- Forward differences with the last row / column repeated (last difference 0).
- Soft-thresholding, the prox of t‖·‖₁.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import ClassVar

import jax
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


# ---------------------------------------------------------------------------------------
# Degradation operators


def _operator(cls=None, *, data=()):
    """A frozen dataclass registered as a pytree with `data` as its array leaves."""
    def wrap(c):
        c = typing.no_type_check(dataclasses.dataclass(frozen=True)(c))
        meta = [f.name for f in dataclasses.fields(c) if f.name not in data]
        return jax.tree_util.register_dataclass(c, data_fields=list(data), meta_fields=meta)
    return wrap if cls is None else wrap(cls)


@_operator
class Identity:
    """A = I: the observation is the image (denoising)."""

    pixelwise: ClassVar[bool] = True
    coarsens: ClassVar[bool] = True
    tiles: ClassVar[bool] = False

    def __call__(self, image: Float[Array, "h w c"]) -> Float[Array, "h w c"]:
        return image

    def adjoint(self, obs: Float[Array, "h w c"]) -> Float[Array, "h w c"]:
        return obs

    def observation_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def seen(self) -> Array | None:
        """The observed pixels `(h, w, 1)` on the observation grid (None: every one)."""
        return None

    def coarse(self, factor: int) -> Identity:
        return self

    def describe(self) -> dict:
        return {}


@_operator(data=("rows", "cols"))
class Separable:
    """A separable linear operator `A(P) = R P Cᵀ` per channel, with `rows` `(h', h)` and
    `cols` `(w', w)`: a Gaussian blur (square matrices, `blur`) or a downsampling
    (`experiments.superres.downsample`: h' = h // factor). `kind` and `settings` say which,
    for the record."""

    rows: Float[Array, "ho h"]
    cols: Float[Array, "wo w"]
    kind: str = "blur"
    settings: tuple = ()

    pixelwise: ClassVar[bool] = False
    coarsens: ClassVar[bool] = True
    tiles: ClassVar[bool] = False

    def __call__(self, image: Float[Array, "h w c"]) -> Float[Array, "ho wo c"]:
        return jnp.einsum("ij,jkc,lk->ilc", self.rows, image, self.cols)  # as apply_blur

    def adjoint(self, obs: Float[Array, "ho wo c"]) -> Float[Array, "h w c"]:
        return jnp.einsum("ji,jkc,kl->ilc", self.rows, obs, self.cols)

    def observation_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.rows.shape[0], self.cols.shape[0], *shape[2:])

    def seen(self) -> Array | None:
        return None

    def coarse(self, factor: int) -> Separable:
        """The operator between grids `factor` times coarser (`coarse_operator` per axis)."""
        from multigrade._types import as_float

        return dataclasses.replace(self, **{
            name: as_float(coarse_operator(np.asarray(m, np.float64), factor))
            for name, m in (("rows", self.rows), ("cols", self.cols))})

    def describe(self) -> dict:
        return dict(self.settings)


@_operator(data=("rows", "cols"))
class Blur(Separable):
    """A blur: a `Separable` with square matrices whose output pixel reads the input
    within `band` pixels along each axis only (counted from the matrices: `matrix_band`).
    So mini-batches apply as tiles: a tile's blurred values read the tile and a margin
    of `band` pixels around it (`problems.tiles`)."""

    band: int = 0

    tiles: ClassVar[bool] = True

    def coarse(self, factor: int) -> Blur:
        """The blur between grids `factor` times coarser, with the band of its matrices."""
        op = super().coarse(factor)
        return dataclasses.replace(op, band=matrix_band(op.rows, op.cols))


def matrix_band(*matrices) -> int:
    """The least b with `m[i, j] = 0` wherever |i − j| > b, over the given matrices."""
    band = 0
    for m in matrices:
        i, j = np.nonzero(np.asarray(m))
        band = max(band, int(np.max(np.abs(i - j), initial=0)))
    return band


@_operator(data=("sample",))
class Mask:
    """A = M ⊙ ·: keeps the pixels where `sample` `(h, w, 1)` is 1, zeroes the others
    (inpainting). The observation keeps the image's grid."""

    sample: Float[Array, "h w 1"]

    pixelwise: ClassVar[bool] = True
    coarsens: ClassVar[bool] = False
    tiles: ClassVar[bool] = False

    def __call__(self, image: Float[Array, "h w c"]) -> Float[Array, "h w c"]:
        return self.sample * image

    def adjoint(self, obs: Float[Array, "h w c"]) -> Float[Array, "h w c"]:
        return self.sample * obs

    def observation_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def seen(self) -> Array:
        return self.sample

    def coarse(self, factor: int):
        raise ValueError("coarse grades need every pixel observed: a mask has gaps")

    def describe(self) -> dict:
        return {"missing": 1 - float(jnp.mean(self.sample))}


def blur(shape: tuple[int, ...], sigma: float) -> Blur:
    """The Gaussian blur of SPEC §2.2 on an `(h, w, …)` image (kernel `2·ceil(3σ) + 1`,
    symmetric padding, valid convolution)."""
    from multigrade._types import as_float

    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"blur sigma must be a positive finite number, got {sigma}")
    size = 2 * math.ceil(3 * sigma) + 1  # gaussian_kernel_1d's support
    if min(shape[:2]) < size:
        raise ValueError(f"deblurring at σ_b = {sigma:g} (a {size}-pixel kernel) needs an "
                         f"image of at least {size} × {size} pixels, got "
                         f"{shape[0]} × {shape[1]}")
    rows, cols = blur_matrix(shape[0], sigma), blur_matrix(shape[1], sigma)
    return Blur(as_float(rows), as_float(cols), "blur", (("blur_sigma", sigma),),
                matrix_band(rows, cols))


def coarse_operator(matrix: np.ndarray, factor: int) -> np.ndarray:
    """The matrix `R M E` of a 1-D operator M `(n_out, n_in)` between grids `factor` times
    coarser, `(n_out // factor, n_in // factor)`: E `(n_in, n_in // factor)` gives each fine
    pixel the value of its block (pixels past the last whole block that of the last block),
    R `(n_out // factor, n_out)` takes each whole block's mean. For the identity it is the
    identity."""
    n_out, n_in = matrix.shape
    return _reduce(n_out, factor) @ matrix @ _expand(n_in, factor)


def _blocks(n: int, factor: int) -> tuple[np.ndarray, int]:
    m = n // factor
    return np.minimum(np.arange(n) // factor, m - 1), m


def _expand(n: int, factor: int) -> np.ndarray:
    blocks, m = _blocks(n, factor)
    out = np.zeros((n, m))
    out[np.arange(n), blocks] = 1.0
    return out


def _reduce(n: int, factor: int) -> np.ndarray:
    blocks, m = _blocks(n, factor)
    out = np.zeros((m, n))
    out[blocks[: m * factor], np.arange(m * factor)] = 1.0 / factor
    return out
