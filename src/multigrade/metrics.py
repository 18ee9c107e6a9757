"""Image quality metrics."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from multigrade._types import Scalar


def psnr_from_mse(mse, peak: float = 1.0) -> Scalar:
    """PSNR in dB from a mean squared error: 10·log10(peak² / mse)."""
    return 10.0 * jnp.log10(peak**2 / mse)


def psnr(pred: ArrayLike, target: ArrayLike, peak: float = 1.0) -> Scalar:
    """Peak signal-to-noise ratio in dB, −10·log10(mean((pred − target)²)) for peak 1."""
    return psnr_from_mse(jnp.mean((jnp.asarray(pred) - jnp.asarray(target)) ** 2), peak)


def ssim(pred, target, data_range: float = 1.0) -> float:
    """Structural similarity of two `(H, W)` or `(H, W, C)` images (scikit-image's)."""
    from skimage.metrics import structural_similarity

    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    axis = -1 if pred.ndim == 3 else None
    return float(structural_similarity(pred, target, data_range=data_range, channel_axis=axis))
