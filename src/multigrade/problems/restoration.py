"""Image restoration with TV splitting (SPEC §2.2): denoising, deblurring, and any other
linear degradation A given as an operator object (`multigrade.operators`: `Identity`,
`Separable` blur or downsampling, `Mask`).

The network maps every pixel's coordinates on the image grid to the restored image P. With
the observation y = A(I) + n on A's own grid (the image's, or a coarser one for
downsampling), the loss of a grade is (sums, not means)

    L(θ, u) = ½‖A(P_θ) − y‖² + (β/2)‖D P_θ − u‖² + λ‖u‖₁,

and every epoch first updates u ← S_{αλ/β}(α·D P_θ + (1 − α)·u), then takes one optimiser
step on θ with u fixed. Grades combine as P_k = P_{k−1} + s_k·g_k with s_1 = 1 and
s_{k+1} = sqrt(mean((P_k − y)²)) (with A(P_k) in place of P_k where y lives on another
grid); u carries over from grade to grade.

Colour images are restored channel by channel through one network with one output per
channel (blur, differences and the prox act per channel; PSNR is over all channels).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from multigrade._types import Array, Float, PRNGKeyArray, Scalar, as_float
from multigrade.images import check_unit_range, coordinate_grid
from multigrade.metrics import psnr_from_mse
from multigrade.operators import Identity, blur, forward_differences, soft_threshold
from multigrade.problems import tiles


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["coords", "observed", "clean", "op", "beta", "lam", "alpha", "mask"],
    meta_fields=["task", "settings", "name", "weight", "tile"],
)
@typing.no_type_check  # JAX rebuilds it with placeholders while lowering; see denoising()
@dataclasses.dataclass(frozen=True)
class Restoration:
    """The restoration of an image by a coordinate network from an observation y = A(I) + n.

    Attributes:
        coords: `(H·W, 2)` pixel coordinates of the image grid, row-major (SPEC §2.1's grid).
        observed: y on the observation grid, `op.observation_shape((H, W, C))`.
        clean: `(H, W, C)` clean image I (for PSNR only; never seen by the loss).
        op: the degradation A (`operators.Identity`, `Separable`, `Mask`, …).
        beta, lam, alpha: the splitting weights β, λ and the relaxation α (arrays, so that
            sweeps over them do not recompile).
        mask: 1 for the observed values the loss sees, 0 for those held out as a validation
            set (`holdout`), `(H', W', 1)` on the observation grid; None: every one in the loss.
        task: the task's name (`"denoise"`, `"deblur"`, …).
        settings: the noise / degradation levels, for the record.
        weight: the loss's factor (1: the paper's sum over pixels). A curriculum's coarse
            stage counts each block as its pixels (`weighted`), so that its loss, and an
            optimiser's estimates of its scale, carry to the next grid.
        tile: mini-batches of square tiles of this side (`in_tiles`) rather than of
            scattered pixels; a blur's are always tiles (None: its band's default side).
    """

    coords: Float[Array, "n 2"]
    observed: Float[Array, "ho wo c"]
    clean: Float[Array, "h w c"]
    op: typing.Any
    beta: Scalar
    lam: Scalar
    alpha: Scalar
    mask: Float[Array, "ho wo 1"] | None = None
    task: str = "denoise"
    settings: tuple = ()
    name: str = "image"
    weight: float = 1.0
    tile: int | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """The image grid's `(H, W, C)`: what the network restores."""
        return tuple(self.clean.shape)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """The observation grid's `(H', W', C)` (the image's unless A changes the grid)."""
        return tuple(self.observed.shape)

    @property
    def inputs(self) -> dict[str, Array]:
        return {"train": self.coords}

    @property
    def in_dim(self) -> int:
        return 2

    @property
    def out_dim(self) -> int:
        return self.shape[2]

    record_splits = ("train",)
    render_split = "train"

    @property
    def monitor(self) -> str:
        """The stopping rule watches the held-out pixels' loss when some are held out."""
        return "train_loss" if self.mask is None else "val_loss"

    def image(self, pred: Float[Array, "n c"]) -> Float[Array, "h w c"]:
        return pred.reshape(self.shape)

    def forward(self, image: Float[Array, "h w c"]) -> Float[Array, "ho wo c"]:
        """The degradation A (`op`)."""
        return self.op(image)

    def init_aux(self, pred_train) -> Float[Array, "2 h w c"]:
        return jnp.zeros((2, *self.shape), self.observed.dtype)

    def update_aux(self, u, pred_train):
        Dp = forward_differences(self.image(pred_train))
        return soft_threshold(self.alpha * Dp + (1 - self.alpha) * u,
                              self.alpha * self.lam / self.beta)

    def loss(self, pred_train, u) -> Scalar:
        P = self.image(pred_train)
        r2 = (self.forward(P) - self.observed) ** 2
        w = self._fidelity()
        fidelity = 0.5 * jnp.sum(r2 if w is None else w * r2)
        coupling = 0.5 * self.beta * jnp.sum((forward_differences(P) - u) ** 2)
        return self._weigh(fidelity + coupling + self.lam * jnp.sum(jnp.abs(u)))

    def _weigh(self, loss: Scalar) -> Scalar:
        return loss if self.weight == 1 else self.weight * loss

    def weighted(self, weight: float) -> Restoration:
        """The same problem, its loss multiplied by `weight` (e.g. f² on an f× coarser
        grid: each block's terms counted as its pixels')."""
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
            raise ValueError(f"a loss weight must be a positive number, got {weight!r}")
        return dataclasses.replace(self, weight=float(weight))

    # -- mini-batches (multigrade.problems.minibatch): the loss is Σ over pixels a of
    # t_a = ½w_a‖(A P)_a − y_a‖² + (β/2)‖(D P)_a − u_a‖² + λ‖u_a‖₁, (D P)_a reading a's
    # lower and right neighbours (a itself past the last row / column: difference 0).
    # A pixel-wise A: a batch is of pixels, each with its stencil (itself and those two
    # neighbours), or with `in_tiles` of tiles. A blur: a batch is of tiles, each with its
    # window (`problems.tiles`).

    def in_tiles(self, side: int) -> Restoration:
        """The same problem, its mini-batches drawn as square tiles of `side` pixels,
        each with its window (`problems.tiles`): (side + 1)² network values per side²
        pixels for a pixel-wise A, where scattered pixels cost three values each; the
        estimate stays unbiased, its samples are neighbours."""
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 1:
            raise ValueError(f"a tile side must be a positive integer, got {side!r}")
        self._check_batches()
        return dataclasses.replace(self, tile=int(side))

    def _check_batches(self) -> None:
        if not (self.op.tiles or self.op.pixelwise):
            raise ValueError(f"mini-batches need a pixel-wise degradation (denoising, "
                             f"inpainting) or a blur; {self.task}'s operator mixes whole "
                             "rows and columns")

    @property
    def _tiled(self) -> bool:
        return self.op.tiles or self.tile is not None

    @property
    def batch_units(self) -> int:
        """How many units a mini-batch draws from: the pixels, or the tiles."""
        h, w, _ = self.shape
        return self._tiling().count if self._tiled else h * w

    def _tiling(self) -> tiles.Tiling:
        return tiles.tiling(self.shape, getattr(self.op, "band", 0), self.tile)

    def stencil(self, anchors: Array) -> Array:
        """`(m, s)` pixel indices: each anchor pixel, its lower and its right neighbour;
        for tiles each anchor tile's window."""
        h, w, _ = self.shape
        self._check_batches()
        if self._tiled:
            return tiles.stencil(self._tiling(), anchors, w)
        r, c = anchors // w, anchors % w
        return jnp.stack([anchors, jnp.minimum(r + 1, h - 1) * w + c,
                          r * w + jnp.minimum(c + 1, w - 1)], axis=1)

    def _terms_at(self, anchors: Array, pred: Array):
        """`(pixels (m,), (A P) (m, c), (D P) (2, m, c), weights (m, 1) or None)` at the
        anchors' pixels from `pred` at their stencils; the weights are 1 / the number of
        tiles holding a pixel (None for pixels)."""
        if not self._tiled:
            differences = jnp.stack([pred[:, 1] - pred[:, 0], pred[:, 2] - pred[:, 0]])
            return anchors, pred[:, 0], differences, None
        t, w = self._tiling(), self.shape[1]
        px = tiles.pixels(t, anchors, w)
        forward = tiles.blurred(t, anchors, self.op.rows, self.op.cols, pred) \
            if self.op.tiles else tiles.values(t, anchors, pred)
        return (px, forward, tiles.differences(t, anchors, pred),
                jnp.asarray(t.weight).reshape(-1, 1)[px])

    def _at(self, a: Array, anchors: Array) -> Array:
        """The anchors' entries of a per-pixel array `(..., h, w, c)`: `(..., m, c)`."""
        h, w, c = self.shape
        return a.reshape(*a.shape[:-3], h * w, a.shape[-1])[..., anchors, :]

    def aux_at(self, u, anchors: Array, pred: Array):
        """u updated at the anchors' pixels (as `update_aux` would there), unchanged
        elsewhere."""
        h, w, c = self.shape
        px, _, differences, _ = self._terms_at(anchors, pred)
        new = soft_threshold(self.alpha * differences + (1 - self.alpha) * self._at(u, px),
                             self.alpha * self.lam / self.beta)
        return u.reshape(2, h * w, c).at[:, px].set(new).reshape(u.shape)

    def loss_at(self, pred: Array, u, anchors: Array) -> Scalar:
        """Σ over the anchors' pixels of their terms t_a (`loss` is the sum over every
        pixel), each tile's pixel weighed by 1 / the tiles holding it."""
        px, forward, differences, weight = self._terms_at(anchors, pred)

        def total(x):  # x (m, c) or (2, m, c); weight (m, 1)
            if weight is None:
                return jnp.sum(x)
            return jnp.sum((weight if x.ndim == 2 else weight[None]) * x)

        r2 = (forward - self._at(self.observed, px)) ** 2
        w = self._fidelity()
        ua = self._at(u, px)
        fidelity = 0.5 * total(r2 if w is None else self._at(w, px) * r2)
        coupling = 0.5 * self.beta * total((differences - ua) ** 2)
        return self._weigh(fidelity + coupling + self.lam * total(jnp.abs(ua)))

    def observed_pixels(self) -> Float[Array, "ho wo 1"] | None:
        """1 where the observation has a value (None: everywhere). Inpainting has gaps."""
        return self.op.seen()

    def metrics(self, preds: dict[str, Array], u) -> dict[str, Scalar]:
        """Also `residual`, mean((A(P) − y)²) over the pixels in the loss (what the
        discrepancy principle and SURE read), and with held-out pixels `val_loss`,
        ½·mean((A(P) − y)²) over them."""
        P = self.image(preds["train"])
        mse = jnp.mean((P - self.clean) ** 2)
        r2 = (self.forward(P) - self.observed) ** 2
        out = {"train_loss": self.loss(preds["train"], u), "test_loss": 0.5 * mse,
               "test_psnr": psnr_from_mse(mse), "residual": _mean(r2, self._fidelity())}
        if self.mask is None:
            return out
        held = 1 - self.mask
        seen = self.observed_pixels()
        return {**out, "val_loss": 0.5 * _mean(r2, held if seen is None else held * seen)}

    def _fidelity(self):
        """The weights of the data term: the observed pixels that are in the loss (None:
        every pixel)."""
        seen = self.observed_pixels()
        if self.mask is None:
            return seen
        return self.mask if seen is None else self.mask * seen

    def next_scale(self, pred_train) -> Scalar:
        P = self.image(pred_train)
        if self.observation_shape != self.shape:  # y on another grid: compare A(P) there
            P = self.forward(P)
        return jnp.sqrt(_mean((P - self.observed) ** 2, self.observed_pixels()))

    def observed_values(self) -> int:
        """How many values the observation has (what the discrepancy principle's τ counts)."""
        seen = self.observed_pixels()
        n = self.observed.size
        return n if seen is None else int(np.sum(np.asarray(seen))) * self.shape[2]

    def observation_as_image(self) -> Float[Array, "h w c"]:
        """y on the image grid: itself where A keeps the grid, else the normalised adjoint
        `Aᵀy / Aᵀ1` (for downsampling, each observed value spread over the pixels it
        averages: a nearest-neighbour-like upsampling), what the observation's PSNR and
        pictures show."""
        if self.observation_shape == self.shape:
            return self.observed
        weight = self.op.adjoint(jnp.ones_like(self.observed))
        return self.op.adjoint(self.observed) / jnp.where(weight > 0, weight, 1.0)

    def observed_psnr(self) -> float:
        return float(psnr_from_mse(jnp.mean((self.observation_as_image() - self.clean) ** 2)))

    def render(self, pred) -> np.ndarray:
        return _squeeze(np.asarray(pred).reshape(self.shape))

    def target_image(self) -> np.ndarray:
        """The clean image, `(H, W)` or `(H, W, C)`: what `test_psnr` compares with."""
        return _squeeze(np.asarray(self.clean))

    def observed_image(self) -> np.ndarray:
        """The observation on the image grid (`observation_as_image`), `(H, W)` or `(H, W, C)`."""
        return _squeeze(np.asarray(self.observation_as_image()))

    def observed_ssim(self) -> float:
        from multigrade.metrics import ssim

        return ssim(self.observed_image(), self.target_image())

    def references(self) -> dict[str, np.ndarray]:
        return {"clean": self.target_image(), "observed": self.observed_image()}

    def describe(self) -> dict:
        held = 0.0 if self.mask is None else 1 - float(jnp.mean(self.mask))
        grid = {} if self.observation_shape == self.shape else {
            "observation_shape": list(self.observation_shape)}
        return {"kind": self.task, "name": self.name, "shape": list(self.shape), **grid,
                **dict(self.settings), **self.op.describe(), "beta": float(self.beta),
                "lam": float(self.lam),
                "alpha": float(self.alpha), "observed_psnr": self.observed_psnr(),
                "observed_ssim": self.observed_ssim(), "held_out": held,
                **({} if self.tile is None else {"batch_tile": self.tile})}

    def with_observation(self, observed) -> Restoration:
        """The same problem with another observation y (SURE perturbs y)."""
        return dataclasses.replace(self, observed=observed)

    def coarse(self, factor: int) -> Restoration:
        """The same problem on grids `factor` times coarser: the observation (and the
        clean image, for PSNR only) averaged over `factor` × `factor` blocks (rows and
        columns past the last whole block dropped), each block at the mean of its pixels'
        coordinates, so a network fitted to it is a function on the same domain
        (coarse-to-fine grades, `fit` with one problem per grade). Averaging the noise
        lowers σ_n by `factor`; no clean value enters the loss.

        The operator restricts itself (`op.coarse`): a separable A becomes `R A E` per axis
        (`operators.coarse_operator`): E spreads each block's value over its pixels, A acts
        on the fine grids, R takes block means. For an image constant on each block it is
        exact — the coarse blur of the block means equals the block means of the fine
        blur — so a coarse grade fits the low frequencies of the same degradation."""
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) \
                or factor < 1:
            raise ValueError(f"a coarse factor must be a positive integer, got {factor!r}")
        if factor == 1:
            return self
        if self.mask is not None or self.observed_pixels() is not None \
                or not self.op.coarsens:
            raise ValueError("coarse grades need every pixel observed (none held out or "
                             f"missing) and an operator that restricts to a coarser grid, "
                             f"not {self.task}'s")
        h, w, c = self.shape
        ho, wo, _ = self.observation_shape
        if min(h, w, ho, wo) < factor:
            raise ValueError(f"a {min(h, ho)} × {min(w, wo)} grid has no {factor} × {factor} "
                             "block")

        def pool(a):
            n, m = a.shape[0] // factor, a.shape[1] // factor
            return a[: n * factor, : m * factor].reshape(n, factor, m, factor, -1).mean(
                axis=(1, 3))

        coords = pool(self.coords.reshape(h, w, 2)).reshape(-1, 2)
        return dataclasses.replace(self, coords=coords, observed=pool(self.observed),
                                   clean=pool(self.clean), op=self.op.coarse(factor),
                                   settings=(*self.settings, ("coarse", int(factor))))

    def held_out(self, fraction: float, key: PRNGKeyArray) -> Restoration:
        """The same problem with `round(fraction·H'·W')` random observed pixels (every
        channel of each) hidden from the loss: their residual is recorded as `val_loss`,
        which for independent noise has expectation ½·(error of A(P) to A(I) + σ_n²)."""
        if not 0 < fraction < 1:
            raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
        h, w, _ = self.observation_shape
        seen = self.observed_pixels()
        pool = np.arange(h * w) if seen is None else np.flatnonzero(np.asarray(seen))
        hidden = max(1, round(fraction * pool.size))
        if hidden >= pool.size:
            raise ValueError(f"holding out {fraction:g} of {pool.size} observed pixels "
                             "leaves none to fit")
        order = pool[np.asarray(jr.permutation(key, pool.size))]
        mask = np.ones(h * w)
        mask[order[:hidden]] = 0.0
        return dataclasses.replace(self, mask=as_float(mask.reshape(h, w, 1)))


def _mean(values, weights):
    """The mean of `values` (h, w, c) over the pixels of `weights` (h, w, 1), or over all."""
    if weights is None:
        return jnp.mean(values)
    w = jnp.broadcast_to(weights, values.shape)
    return jnp.sum(w * values) / jnp.sum(w)


def _squeeze(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else image


def _as_hwc(image) -> np.ndarray:
    image = check_unit_range(np.asarray(image, dtype=np.float64))
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or min(image.shape[:2]) < 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    return image


def _noise(noise: float, key: PRNGKeyArray, shape) -> np.ndarray:
    """The observation's noise, drawn once from `key` on the host and scaled in float64: the
    same key gives the same observation whatever the compute dtype. (The paper's code
    draws it in the compute precision; give the observation itself to
    `Restoration.from_observation` to use another draw.)"""
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise level must be a finite non-negative number, got {noise}")
    return noise * np.asarray(jr.normal(key, shape, jnp.float32), dtype=np.float64)


def _make(task, clean, observed, op, beta, lam, alpha, settings, name) -> Restoration:
    """The problem, checked: `op`'s arrays (NumPy, float64 while the observation is made)
    become arrays of the default float."""
    for label, v in (("beta", beta), ("lam", lam)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{label} must be positive and finite, got {v}")
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    op = Identity() if op is None else op
    expected = op.observation_shape(clean.shape)
    if observed.shape != expected:
        raise ValueError(f"observation of shape {observed.shape} for an image of shape "
                         f"{clean.shape} (expected {expected})")
    if not np.all(np.isfinite(observed)):
        raise ValueError("the observation holds NaN or infinite values")
    h, w, _ = clean.shape
    return Restoration(
        coords=as_float(coordinate_grid(h, w).reshape(-1, 2)),
        observed=as_float(observed), clean=as_float(clean),
        op=jax.tree_util.tree_map(as_float, op),
        beta=as_float(beta), lam=as_float(lam), alpha=as_float(alpha), task=task,
        settings=tuple(settings.items()), name=name)


def observe(op, clean: np.ndarray) -> np.ndarray:
    """A(I) in float64 whatever the compute precision (the observation is made once, in
    full precision, as the noise is: `_noise`)."""
    from multigrade._types import enable_x64

    with enable_x64(True):
        op64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), op)
        return np.asarray(op64(jnp.asarray(clean, jnp.float64)), np.float64)


def from_observation(image, observed, *, blur_sigma: float | None = None, beta: float = 0.1,
                     lam: float = 0.01, alpha: float = 0.99,
                     name: str = "image") -> Restoration:
    """A restoration problem from a given observation y (no noise is drawn): denoising, or
    deblurring with `blur_sigma`. For observations made elsewhere, e.g. by the paper's code.

    Args:
        image: the clean `(H, W)` or `(H, W, C)` image in [0, 1] (for PSNR only).
        observed: y, of the same shape (values may leave [0, 1]: it is noisy).
    """
    clean = _as_hwc(image)
    y = np.asarray(observed, dtype=np.float64)
    y = y[..., None] if y.ndim == 2 else y
    if blur_sigma is None:
        return _make("denoise", clean, y, None, beta, lam, alpha, {}, name)
    return _make("deblur", clean, y, blur(clean.shape, blur_sigma), beta, lam, alpha,
                 {"blur_sigma": blur_sigma}, name)


def denoising(image, sigma: float, *, key: PRNGKeyArray, beta: float = 0.1,
              lam: float = 0.01, alpha: float = 0.99, name: str = "image") -> Restoration:
    """Denoising: y = I + n, n ~ N(0, σ²) drawn from `key`.

    Args:
        image: clean `(H, W)` or `(H, W, C)` image in [0, 1].
        sigma: noise standard deviation in image units (the paper's 10/255 is `10 / 255`).
        key: draws the noise.
        beta: the splitting weight β (default: the paper's Section 4 restoration, 0.1; its
            Section 6 eigenvalue study uses 1e-3).
        lam: the TV weight λ (default 0.01; the eigenvalue study uses 1e-4).
        alpha: the relaxation α of the u update (default 0.99).
    """
    clean = _as_hwc(image)
    return _make("denoise", clean, clean + _noise(sigma, key, clean.shape), None, beta, lam,
                 alpha, {"noise_sigma": sigma}, name)


def deblurring(image, blur_sigma: float, noise: float = 3 / 255, *, key: PRNGKeyArray,
               beta: float = 0.1, lam: float = 0.01, alpha: float = 0.99,
               name: str = "image") -> Restoration:
    """Deblurring: y = k_σ ∗ I + n with the Gaussian blur of SPEC §2.2 (kernel 6σ_b + 1,
    symmetric padding, valid convolution) and n ~ N(0, noise²) drawn from `key`."""
    clean = _as_hwc(image)
    op = blur(clean.shape, blur_sigma)
    blurred = np.einsum("ij,jkc,lk->ilc", op.rows, clean, op.cols)
    return _make("deblur", clean, blurred + _noise(noise, key, clean.shape), op, beta, lam,
                 alpha, {"blur_sigma": blur_sigma, "noise_sigma": noise}, name)
