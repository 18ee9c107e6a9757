"""Image inpainting with TV splitting: the restoration of SPEC §2.2 with A a pixel mask.

The observation is y = M ⊙ (I + n): the pixels where the mask M is 1 are seen (with noise
n ~ N(0, σ²)), the others are missing (y = 0 there). The loss of a grade is the
restoration loss with A(P) = M ⊙ P,

    L(θ, u) = ½‖M ⊙ P_θ − y‖² + (β/2)‖D P_θ − u‖² + λ‖u‖₁,

so only the seen pixels pull on the network, and the TV term fills the gaps. The residual
the discrepancy principle reads, the grade scale factor s_{k+1} and the held-out pixels of
`--select holdout` are all taken over the seen pixels only.
"""

from __future__ import annotations

import jax.random as jr
import numpy as np

from multigrade._types import PRNGKeyArray
from multigrade.operators import Mask
from multigrade.problems.restoration import Restoration, _as_hwc, _make, _noise


def random_mask(shape: tuple[int, int], missing: float, key: PRNGKeyArray) -> np.ndarray:
    """An `(H, W)` mask with exactly `round(missing·H·W)` pixels missing (0), drawn from `key`."""
    if not 0 <= missing < 1:
        raise ValueError(f"the missing fraction must be in [0, 1), got {missing}")
    h, w = shape
    gone = round(missing * h * w)
    if gone >= h * w:
        raise ValueError(f"{missing:g} of {h * w} pixels missing leaves none observed")
    mask = np.ones(h * w)
    mask[np.asarray(jr.permutation(key, h * w))[:gone]] = 0.0
    return mask.reshape(h, w)


def inpainting(image, missing: float = 0.5, sigma: float = 0.0, *, key: PRNGKeyArray,
               mask=None, beta: float = 0.1, lam: float = 0.01, alpha: float = 0.99,
               name: str = "image") -> Restoration:
    """Inpainting: y = M ⊙ (I + n), n ~ N(0, σ²).

    Args:
        image: clean `(H, W)` or `(H, W, C)` image in [0, 1].
        missing: the fraction of pixels missing, drawn at random from `key` (ignored when
            `mask` is given).
        sigma: noise standard deviation in image units.
        key: draws the noise (`key`) and the random mask (`fold_in(key, 1)`).
        mask: an `(H, W)` array, nonzero (or > 0.5 for a grey image) where a pixel is seen.
    """
    clean = _as_hwc(image)
    h, w, _ = clean.shape
    if mask is None:
        seen = random_mask((h, w), missing, jr.fold_in(key, 1))
        settings = {"missing": missing, "noise_sigma": sigma}
    else:
        seen = np.asarray(mask, dtype=np.float64)
        seen = seen[..., 0] if seen.ndim == 3 else seen
        if seen.shape != (h, w):
            raise ValueError(f"a mask of shape {seen.shape} for an image of {h} × {w} pixels")
        seen = (seen > 0.5 * seen.max()).astype(np.float64) if seen.max() > 0 else seen
        if not seen.any():
            raise ValueError("the mask observes no pixel (it must be nonzero where a pixel "
                             "is seen)")
        settings = {"missing": float(1 - seen.mean()), "noise_sigma": sigma}
    observed = seen[..., None] * (clean + _noise(sigma, key, clean.shape))
    return _make("inpaint", clean, observed, Mask(seen[..., None]), beta, lam, alpha,
                 settings, name)


def estimate_sigma(observed, sample) -> float:
    """The noise level of an inpainting observation from its seen pixels alone: the median
    absolute deviation of the differences of horizontally and vertically adjacent seen
    pixels, over √2 (each difference holds two noise values) and 0.6745 (the MAD of a
    standard normal). Robust to edges, which few differences cross; biased up where the
    image varies within a pixel's step. A wavelet estimate would mix in the zeros of the
    missing pixels."""
    y = np.asarray(observed, dtype=np.float64)
    s = np.asarray(sample, dtype=bool)[..., 0]
    diffs = [(y[:, 1:] - y[:, :-1])[s[:, 1:] & s[:, :-1]],
             (y[1:] - y[:-1])[s[1:] & s[:-1]]]
    d = np.concatenate([x.ravel() for x in diffs])
    if d.size < 10:
        raise ValueError("too few pairs of adjacent seen pixels to estimate the noise level: "
                         "give it (--noise-level)")
    return float(np.median(np.abs(d - np.median(d))) / 0.6745 / np.sqrt(2))
