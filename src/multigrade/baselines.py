"""Classical restoration baselines, their one weight chosen three ways.

They show where the networks stand. Each has one weight (TV's, Wiener's balance), chosen
from a grid:

- "oracle": by PSNR against the clean image, as the networks' hyper-parameters are in the
  paper: an upper bound on what the method gives, not a blind result;
- "SURE" (denoising): by Monte-Carlo SURE (`selection.mc_sure`), from the observation and
  σ alone;
- "discrepancy": the largest weight whose residual ‖A(f(y)) − y‖²/N is at most τσ²
  (Morozov; `selection.discrepancy_tau`), from the observation and σ alone; the smallest
  weight when none is. For Wiener the residual is taken on the pixels at least twice the
  blur's radius from the border: Wiener assumes a periodic boundary, the observation was
  blurred with a symmetric one, and only far from the border do the two agree (with the
  whole image, the boundary mismatch alone exceeds τσ² at σ_n = 3/255 for every balance).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from multigrade.operators import gaussian_kernel

TV_WEIGHTS = np.geomspace(0.005, 1.0, 25)
WIENER_BALANCES = np.geomspace(1e-4, 1.0, 17)
CHOICES = ("oracle", "sure", "discrepancy")
_LABELS = {"oracle": "oracle", "sure": "SURE", "discrepancy": "discrepancy"}


@dataclasses.dataclass
class Baseline:
    """A classical baseline's result: its `name`, the `parameter` it was tuned over and
    the `value` kept (chosen by `choice`), with the PSNR, SSIM and image at that value."""
    name: str
    parameter: str
    value: float
    psnr: float
    ssim: float
    image: np.ndarray
    choice: str = "oracle"  # how `value` was chosen: one of CHOICES


def _psnr(a, b) -> float:
    return float(-10 * np.log10(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _choose(method: str, parameter: str, grid, restore: Callable, clean: np.ndarray,
            choice: str, *, observed=None, sigma=None, forward=None,
            region: np.ndarray | None = None) -> Baseline:
    """The grid value `choice` picks (larger weights regularise more); the discrepancy
    principle reads the residual on the pixels of `region` (`(H, W)` bool; None: all)."""
    from multigrade import selection
    from multigrade.metrics import ssim

    if choice == "oracle":
        value = max(grid, key=lambda v: _psnr(restore(v), clean))
    elif choice == "sure":
        value = min(grid, key=lambda v: selection.mc_sure(lambda y: restore(v, y), observed,
                                                          sigma))
    elif choice == "discrepancy":
        inner = np.ones(observed.shape[:2], bool) if region is None else region
        tau = selection.discrepancy_tau(np.asarray(observed)[inner].size)
        fits = [v for v in grid if np.mean(
            (forward(restore(v))[inner] - observed[inner]) ** 2) <= tau * sigma**2]
        value = max(fits) if fits else min(grid)
    else:
        raise ValueError(f"unknown choice {choice!r}; choose one of {', '.join(CHOICES)}")
    image = restore(value)
    return Baseline(f"{method}, {_LABELS[choice]}", parameter, float(value),
                    _psnr(image, clean), ssim(image, clean), image, choice)


def tv_denoise(observed: np.ndarray, clean: np.ndarray, *, choice: str = "oracle",
               sigma: float | None = None, weights=TV_WEIGHTS) -> Baseline:
    """Chambolle's TV denoising (scikit-image), its weight chosen by `choice` (SURE and
    discrepancy need the noise level `sigma`)."""
    from skimage.restoration import denoise_tv_chambolle

    axis = -1 if observed.ndim == 3 else None

    def restore(w, y=observed):
        return denoise_tv_chambolle(y, weight=w, channel_axis=axis)

    return _choose("TV (Chambolle)", "weight", weights, restore, clean, choice,
                   observed=observed, sigma=sigma, forward=lambda x: x)


def wiener(observed: np.ndarray, clean: np.ndarray, blur_sigma: float, *,
           choice: str = "oracle", sigma: float | None = None,
           balances=WIENER_BALANCES) -> Baseline:
    """Wiener deconvolution (scikit-image, periodic boundary), its balance chosen by
    `choice` ("oracle" or "discrepancy", the residual through the problem's blur)."""
    from skimage.restoration import wiener as skimage_wiener

    from multigrade.operators import blur_matrix

    psf = gaussian_kernel(blur_sigma)

    def restore(balance, y=observed):
        channels = y[..., None] if y.ndim == 2 else y
        out = np.stack([skimage_wiener(channels[..., c], psf, balance, clip=False)
                        for c in range(channels.shape[-1])], axis=-1)
        return np.clip(out if y.ndim == 3 else out[..., 0], 0, 1)

    rows, cols = (blur_matrix(n, blur_sigma) for n in observed.shape[:2])

    def forward(x):
        return np.einsum("ij,jk...,lk->il...", rows, x, cols)

    margin = 2 * (len(psf) // 2)
    if choice == "discrepancy" and min(observed.shape[:2]) <= 2 * margin:
        raise ValueError(f"an image of {observed.shape[0]} × {observed.shape[1]} pixels has "
                         f"no pixels {margin} away from its border for the discrepancy "
                         f"principle at σ_b = {blur_sigma:g}")
    inner = np.zeros(observed.shape[:2], bool)
    inner[margin:observed.shape[0] - margin, margin:observed.shape[1] - margin] = True
    return _choose("Wiener", "balance", balances, restore, clean, choice,
                   observed=observed, sigma=sigma, forward=forward, region=inner)



def inpaint(observed: np.ndarray, clean: np.ndarray, seen: np.ndarray, *,
            choices=("oracle",), sigma: float | None = None,
            weights=TV_WEIGHTS) -> list[Baseline]:
    """Biharmonic inpainting (scikit-image; Damelin & Hoang 2018) of the missing pixels,
    which keeps the seen ones as observed, then the same with TV (Chambolle) denoising of
    the filled image, its weight chosen by each of `choices` ("oracle" or "discrepancy":
    the residual on the seen pixels)."""
    from skimage.restoration import inpaint_biharmonic

    from multigrade.metrics import ssim

    axis = -1 if observed.ndim == 3 else None
    filled = np.clip(inpaint_biharmonic(observed, ~seen, channel_axis=axis), 0, 1)
    out = [Baseline("biharmonic", "weight", 0.0, _psnr(filled, clean), ssim(filled, clean),
                    filled, "oracle")]
    keep = seen if observed.ndim == 2 else seen[..., None]

    def restore(w, y=filled):
        from skimage.restoration import denoise_tv_chambolle

        return denoise_tv_chambolle(y, weight=w, channel_axis=axis)

    for c in choices:
        if c == "sure":
            raise ValueError("SURE needs a denoising observation, not an inpainting one")
        out.append(_choose("biharmonic + TV", "weight", weights, restore, clean, c,
                           observed=observed, sigma=sigma, forward=lambda x: keep * x,
                           region=seen))
    return out
