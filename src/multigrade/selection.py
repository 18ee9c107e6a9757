"""Restoration without the clean image: choose epochs, grades and baseline weights from
the observation alone, and estimate the noise level.

A user who denoises or deblurs a real photograph has no clean image to compute a PSNR
with. Three rules stand in for it (`MODES`):

- `sure`: Stein's unbiased risk estimate (denoising, Gaussian noise of level σ). For a
  denoiser f and y = x + n, n ~ N(0, σ²I) with N values,

      SURE(y) = ‖f(y) − y‖²/N − σ² + 2σ²·div f(y)/N,   E[SURE] = E‖f(y) − x‖²/N,

  with the divergence div f = Σᵢ ∂fᵢ/∂yᵢ estimated by Monte Carlo as bᵀ(∂f/∂y)b for a
  random b ~ N(0, I) (Ramani, Blu & Unser 2008). For the networks, f is the whole
  training: `fit(divergence=Divergence(...))` carries ∂(state)/∂y·b through every epoch in
  forward mode and records the divergence; for the classical baselines it is a finite
  difference (f(y + εb) − f(y))/ε.
- `discrepancy` (Morozov): stop at the first record where the residual ‖A(P) − y‖²/N falls
  to τ·σ², and add no grade after it. τ = 1 + 2·sqrt(2/N): the mean square of N values of
  pure noise is σ²·(1 ± sqrt(2/N)), so τ sits two of its standard deviations above 1
  (1.022 for 128 × 128 pixels); a rule with τ < 1 could be met by no estimate at all.
- `holdout`: a random `HOLDOUT_FRACTION` of the pixels is hidden from the loss; their
  mean squared residual, whose expectation is the error to the clean pixels plus σ² for
  independent noise, is the validation loss. The paper's stopping rule then watches it.

With `sure` and `holdout` each grade keeps the state of its best record, and the grades
stop at the first one that does not improve on the previous one (it is dropped). `none`
is the fixed budget.

σ is given, or estimated from the observation by scikit-image's wavelet estimator
(`estimate_sigma`: the median absolute deviation of the finest diagonal wavelet
coefficients, Donoho & Johnstone 1994), which for a blurred observation sees the noise,
not the blur.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from multigrade.train import Selector

MODES = ("none", "sure", "discrepancy", "holdout")
HOLDOUT_FRACTION = 0.1


def discrepancy_tau(n: int) -> float:
    """τ = 1 + 2·sqrt(2/n) for n observed values (see the module docstring)."""
    return 1.0 + 2.0 * math.sqrt(2.0 / n)


def estimate_sigma(observed: np.ndarray) -> float:
    """The noise standard deviation of an `(H, W)` or `(H, W, C)` observation (wavelet
    MAD; channels averaged)."""
    from skimage.restoration import estimate_sigma as skimage_estimate

    observed = np.asarray(observed, dtype=np.float64)
    if observed.ndim == 3 and observed.shape[-1] == 1:
        observed = observed[..., 0]
    axis = -1 if observed.ndim == 3 else None
    return float(skimage_estimate(observed, channel_axis=axis, average_sigmas=True))


def sure(residual: float, divergence: float, sigma: float, n: int) -> float:
    """SURE of the mean squared error per value: residual − σ² + 2σ²·divergence/n, with
    `residual` = ‖f(y) − y‖²/n."""
    return residual - sigma**2 + 2 * sigma**2 * divergence / n


@dataclasses.dataclass(frozen=True)
class Sure(Selector):
    """Keeps the record of least SURE (column `sure`, an estimate of the MSE to the clean
    image, and `sure_psnr`, the PSNR it predicts)."""

    sigma: float
    n: int  # values in the observation (H·W·C)
    keep_best = True
    needs_divergence = True

    def score(self, row: dict) -> float:
        estimate = sure(row["residual"], row["divergence"], self.sigma, self.n)
        row["sure"] = estimate
        row["sure_psnr"] = -10 * math.log10(estimate) if estimate > 0 else math.inf
        return estimate


@dataclasses.dataclass(frozen=True)
class Discrepancy(Selector):
    """Stops where the residual reaches τσ² (column `discrepancy` = residual/σ²)."""

    sigma: float
    tau: float
    keep_best = False

    def score(self, row: dict) -> float:
        row["discrepancy"] = row["residual"] / self.sigma**2
        return row["residual"]

    def done(self, row: dict) -> bool:
        return row["residual"] <= self.tau * self.sigma**2

    def settings(self) -> dict[str, float]:
        return {"tau": self.tau}


@dataclasses.dataclass(frozen=True)
class Holdout(Selector):
    """Keeps the record of least held-out residual (`val_loss`)."""

    keep_best = True

    def score(self, row: dict) -> float:
        return row["val_loss"]


def selector(mode: str, *, sigma: float | None, n: int) -> Selector | None:
    """The `Selector` of a mode (None for `none`)."""
    if mode not in MODES:
        raise ValueError(f"unknown selection {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "none":
        return None
    if mode == "holdout":
        return Holdout()
    if sigma is None or not sigma > 0:
        raise ValueError(f"--select {mode} needs a positive noise level, got {sigma}")
    if mode == "sure":
        return Sure(sigma, n)
    return Discrepancy(sigma, discrepancy_tau(n))


# ---------------------------------------------------------------------------------------
# The classical baselines


def mc_sure(denoise: Callable[[np.ndarray], np.ndarray], observed: np.ndarray, sigma: float,
            *, key: int = 0, eps: float | None = None, probes: int = 1) -> float:
    """Monte-Carlo SURE of any denoiser f at y: ‖f(y) − y‖²/N − σ² + 2σ²·div/N, the
    divergence by `probes` finite differences bᵀ(f(y + εb) − f(y))/ε, b ~ N(0, I).
    ε defaults to σ/100 (an iterative solver's tolerance must stay well below ε·|b|)."""
    y = np.asarray(observed, dtype=np.float64)
    eps = sigma / 100 if eps is None else eps
    fy = denoise(y)
    rng = np.random.default_rng([key, 0x5E1EC7])  # never the stream of a noise of seed `key`
    div = np.mean([np.sum(b * (denoise(y + eps * b) - fy)) / eps
                   for b in rng.standard_normal((probes, *y.shape))])
    return sure(float(np.mean((fy - y) ** 2)), float(div), sigma, y.size)
