"""Classical restoration baselines, tuned by oracle (PSNR against the clean image).

They show where the networks stand. Like the networks' hyper-parameters in the paper,
their one weight is chosen from a grid by PSNR against the clean image, so they are
labelled "oracle": an upper bound on what each method gives, not a blind result.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multigrade.operators import gaussian_kernel

TV_WEIGHTS = np.geomspace(0.005, 1.0, 25)
WIENER_BALANCES = np.geomspace(1e-4, 1.0, 17)


@dataclasses.dataclass
class Baseline:
    name: str
    parameter: str
    value: float
    psnr: float
    ssim: float
    image: np.ndarray


def _psnr(a, b) -> float:
    return float(-10 * np.log10(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _best(name, parameter, grid, restore, clean) -> Baseline:
    from multigrade.metrics import ssim

    scores = [(_psnr(im := restore(v), clean), v, im) for v in grid]
    psnr, value, image = max(scores, key=lambda s: s[0])
    return Baseline(name, parameter, float(value), psnr, ssim(image, clean), image)


def tv_denoise_oracle(observed: np.ndarray, clean: np.ndarray,
                      weights=TV_WEIGHTS) -> Baseline:
    """Chambolle's TV denoising (scikit-image) with the weight of best PSNR."""
    from skimage.restoration import denoise_tv_chambolle

    axis = -1 if observed.ndim == 3 else None
    return _best("TV (Chambolle), oracle", "weight", weights,
                 lambda w: denoise_tv_chambolle(observed, weight=w, channel_axis=axis), clean)


def wiener_oracle(observed: np.ndarray, clean: np.ndarray, blur_sigma: float,
                  balances=WIENER_BALANCES) -> Baseline:
    """Wiener deconvolution (scikit-image, periodic boundary) with the balance of best PSNR."""
    from skimage.restoration import wiener

    psf = gaussian_kernel(blur_sigma)

    def restore(balance):
        channels = observed[..., None] if observed.ndim == 2 else observed
        out = np.stack([wiener(channels[..., c], psf, balance, clip=False)
                        for c in range(channels.shape[-1])], axis=-1)
        return np.clip(out if observed.ndim == 3 else out[..., 0], 0, 1)

    return _best("Wiener, oracle", "balance", balances, restore, clean)
