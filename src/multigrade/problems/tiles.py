"""Mini-batches of tiles: a restoration whose degradation reads a bounded neighbourhood (a
blur, `operators.Blur`) trained a few square tiles at a time (`problems.minibatch`); a
pixel-wise one (denoising, inpainting) may be too (`Restoration.in_tiles`, `train.batch_tile`).

A mini-batch of pixels needs each pixel's stencil; under a blur of σ_b = 3 the stencil of
one pixel is 19 × 19, so random pixels would cost far more than the full epoch. A tile of
p × p pixels shares one window: the tile grown by the blur's `band` b on each side (moved
inwards at the image's edges, where the symmetric padding reads inside the image), whose
(p + 2b)² network values give every blurred value in the tile exactly, and with it the
forward differences of the TV split (the window reaches at least one pixel past the tile).
A pixel-wise degradation has band 0: its window is the tile and one more row and column,
(p + 1)² values for p² pixels, where scattered pixels evaluate three values each (the pixel
and the two neighbours its differences read): 1.13× the batch's pixels at p = 16 against 3×.

The image is cut into tiles of side p from its top-left corner; where p does not divide
a side, the last tile along it starts p before the end and overlaps the one before. A
batch draws k of the T tiles uniformly with replacement and its loss weighs each pixel
by 1 / (the number of tiles holding it), so with `MiniBatch`'s factor T / k

    E[(T / k) Σ_{tiles in the batch} Σ_{a in tile} t_a / c_a] = Σ_a t_a,

an unbiased estimate of the full loss, as for pixels. u is updated at the tiles' pixels,
as the full epoch's update would there.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from multigrade._types import Array

SIDE = 32  # the least tile side; wider blurs get wider tiles (`tiling`)


class Tiling(NamedTuple):
    """Where the tiles and their windows lie on an `(h, w)` image (static NumPy arrays)."""

    tile: tuple[int, int]     # (p_h, p_w), a tile's shape
    window: tuple[int, int]   # (q_h, q_w), a window's shape
    starts: tuple[np.ndarray, np.ndarray]   # the tiles' first row / column, per axis
    windows: tuple[np.ndarray, np.ndarray]  # the windows' first row / column, per axis
    weight: np.ndarray        # (h, w): 1 / the number of tiles holding each pixel

    @property
    def count(self) -> int:
        """T, the number of tiles."""
        return len(self.starts[0]) * len(self.starts[1])


def tiling(shape: tuple[int, ...], band: int, side: int | None = None) -> Tiling:
    """The tiles of an `(h, w, …)` image under an operator of band `band`: side `side`, by
    default the least power of two ≥ max(SIDE, 2·band) (so a window holds at most four
    times its tile's pixels), at most the image's. A window is its tile grown by `band`
    on each side and by at least one row and column past it (the forward differences)."""
    if side is None:
        side = max(SIDE, 1 << max(0, math.ceil(math.log2(max(1, 2 * band)))))
    tile, window, starts, windows, counts = [], [], [], [], []
    for n in shape[:2]:
        p = min(side, n)
        q = min(p + band + max(band, 1), n)
        s = np.array(sorted({min(i * p, n - p) for i in range(math.ceil(n / p))}))
        tile.append(p)
        window.append(q)
        starts.append(s)
        windows.append(np.clip(s - band, 0, n - q))
        counts.append(np.sum((np.arange(n)[None] >= s[:, None])
                             & (np.arange(n)[None] < s[:, None] + p), axis=0))
    return Tiling(tuple(tile), tuple(window), tuple(starts), tuple(windows),
                  1.0 / np.outer(counts[0], counts[1]))


def _axes(t: Tiling, ids: Array):
    """The tiles' row and column indices `(k,)` each."""
    return ids // len(t.starts[1]), ids % len(t.starts[1])


def stencil(t: Tiling, ids: Array, width: int) -> Array:
    """`(k, q_h·q_w)` pixel indices: the windows of tiles `ids` `(k,)`, row-major."""
    r, c = _axes(t, ids)
    rows = jnp.asarray(t.windows[0])[r][:, None] + jnp.arange(t.window[0])[None]
    cols = jnp.asarray(t.windows[1])[c][:, None] + jnp.arange(t.window[1])[None]
    return (rows[:, :, None] * width + cols[:, None, :]).reshape(len(ids), -1)


def pixels(t: Tiling, ids: Array, width: int) -> Array:
    """`(k·p_h·p_w,)` pixel indices: the tiles' pixels, tile by tile, row-major."""
    r, c = _axes(t, ids)
    rows = jnp.asarray(t.starts[0])[r][:, None] + jnp.arange(t.tile[0])[None]
    cols = jnp.asarray(t.starts[1])[c][:, None] + jnp.arange(t.tile[1])[None]
    return (rows[:, :, None] * width + cols[:, None, :]).reshape(-1)


def blurred(t: Tiling, ids: Array, rows: Array, cols: Array, pred: Array) -> Array:
    """`(k·p_h·p_w, c)`: `R P Cᵀ` at the tiles' pixels from `pred` `(k, q_h·q_w, c)` at
    their windows (`rows`, `cols` the operator's square matrices)."""
    r, c = _axes(t, ids)

    def band(m, starts, windows, p, q):  # (k, p, q): the tiles' rows of m, windows' columns
        i = jnp.asarray(starts)[:, None] + jnp.arange(p)[None]
        j = jnp.asarray(windows)[:, None] + jnp.arange(q)[None]
        return m[i[:, :, None], j[:, None, :]]

    R = band(rows, t.starts[0], t.windows[0], t.tile[0], t.window[0])[r]
    C = band(cols, t.starts[1], t.windows[1], t.tile[1], t.window[1])[c]
    window = pred.reshape(len(ids), *t.window, pred.shape[-1])
    return jnp.einsum("kij,kjlc,kml->kimc", R, window, C).reshape(-1, pred.shape[-1])


def values(t: Tiling, ids: Array, pred: Array) -> Array:
    """`(k·p_h·p_w, c)`: `pred` `(k, q_h·q_w, c)` at the tiles' own pixels (a pixel-wise
    degradation's A P there)."""
    k, ch = len(ids), pred.shape[-1]
    i, j = _inner(t, ids)
    return pred.reshape(k, *t.window, ch)[jnp.arange(k)[:, None, None], i[:, :, None],
                                          j[:, None, :]].reshape(-1, ch)


def differences(t: Tiling, ids: Array, pred: Array) -> Array:
    """`(2, k·p_h·p_w, c)`: the forward differences (D P) at the tiles' pixels from `pred`
    `(k, q_h·q_w, c)` at their windows (a window ends past its tile unless the image
    ends there, where the difference is 0)."""
    from multigrade.operators import forward_differences

    k, ch = len(ids), pred.shape[-1]
    d = jax.vmap(forward_differences)(pred.reshape(k, *t.window, ch))  # (k, 2, qh, qw, c)
    i, j = _inner(t, ids)
    d = d[jnp.arange(k)[:, None, None], :, i[:, :, None], j[:, None, :]]  # (k, ph, pw, 2, c)
    return jnp.moveaxis(d, 3, 0).reshape(2, -1, ch)


def _inner(t: Tiling, ids: Array) -> tuple[Array, Array]:
    """The tiles' rows `(k, p_h)` and columns `(k, p_w)` within their windows."""
    r, c = _axes(t, ids)
    i = jnp.asarray(t.starts[0] - t.windows[0])[r][:, None] + jnp.arange(t.tile[0])[None]
    j = jnp.asarray(t.starts[1] - t.windows[1])[c][:, None] + jnp.arange(t.tile[1])[None]
    return i, j
