"""Super-resolution with TV splitting: the restoration of SPEC §2.2 with A a downsampling.

The network is the high-resolution image P on the image grid (H × W); the observation is
its downsampled, noisy version on a grid `factor` times coarser,

    y = R I Cᵀ + n,   n ~ N(0, σ²),

with R `(H // factor, H)` and C `(W // factor, W)` the 1-D downsampling matrices: block
means (`"box"`), or block means of the image blurred first by a Gaussian of σ = factor / 2
(`"gaussian"`, anti-aliased). A is an `operators.Separable`, so the loss, the TV split, the
discrepancy principle and held-out pixels (both on the observation grid) and coarse grades
(`R A E` on coarser grids) all apply unchanged; SURE (a denoiser's estimate) and pixel
mini-batches (A mixes each block) do not. The classical baselines are bicubic interpolation
of y and TV (Chambolle) on it.

Everything the task is lives here: the operator, the problem, its baselines, its config
section (`Options`: `[problem.options]`, and the CLI's `--factor`, `--kernel`), `build`,
and what the task table needs to know (`SUMMARY`, `TASK`), which `experiments.tasks`
registers in one line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from multigrade._types import PRNGKeyArray
from multigrade.operators import Separable, blur_matrix
from multigrade.problems.restoration import Restoration, _as_hwc, _make, _noise, observe

KERNELS: tuple[str, ...] = ("box", "gaussian")


def downsample_matrix(n: int, factor: int, kernel: str = "box") -> np.ndarray:
    """The `(n // factor, n)` matrix of 1-D downsampling by an integer `factor`: `"box"`,
    the mean of each block of `factor` pixels (pixels past the last whole block dropped);
    `"gaussian"`, the block means of the signal blurred first by a Gaussian of σ = factor / 2
    (symmetric padding, `operators.blur_matrix`)."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"a downsampling factor must be a positive integer, got {factor!r}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown downsampling kernel {kernel!r}; choose one of "
                         f"{', '.join(KERNELS)}")
    m = n // factor
    if m < 2:
        raise ValueError(f"downsampling {n} pixels by {factor} leaves fewer than 2")
    box = np.zeros((m, n))
    for i in range(m):
        box[i, i * factor:(i + 1) * factor] = 1.0 / factor
    return box if kernel == "box" else box @ blur_matrix(n, factor / 2)


def downsample(shape: Sequence[int], factor: int, kernel: str = "box") -> Separable:
    """The downsampling of an `(h, w, …)` image by `factor` on both axes (float64 NumPy
    matrices; a problem converts them to its precision)."""
    return Separable(downsample_matrix(shape[0], factor, kernel),
                     downsample_matrix(shape[1], factor, kernel), "downsample",
                     (("factor", int(factor)), ("kernel", kernel)))


def superresolution(image, factor: int = 2, sigma: float = 5 / 255, *, key: PRNGKeyArray,
                    kernel: str = "box", beta: float = 0.1, lam: float = 0.01,
                    alpha: float = 0.99, name: str = "image") -> Restoration:
    """Super-resolution: y = A(I) + n with A the downsampling by `factor` (`downsample`).

    Args:
        image: the clean high-resolution `(H, W)` or `(H, W, C)` image in [0, 1].
        factor: the downsampling factor (the observation is `(H // factor, W // factor)`).
        sigma: noise standard deviation in image units, added on the coarse grid.
        key: draws the noise.
        kernel: `"box"` or `"gaussian"` (`downsample_matrix`).
    """
    clean = _as_hwc(image)
    op = downsample(clean.shape, factor, kernel)
    low = observe(op, clean)
    return _make("superres", clean, low + _noise(sigma, key, low.shape), op, beta, lam, alpha,
                 {"factor": int(factor), "kernel": kernel, "noise_sigma": sigma}, name)


def bicubic(observed: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """y interpolated to the image grid by cubic splines (scikit-image's `resize`, order 3:
    pixel centres aligned as block means place them); rows and columns past the last whole
    block repeat the last one."""
    from skimage.transform import resize

    h, w = shape[:2]
    ho, wo = observed.shape[:2]
    f_h, f_w = h // ho, w // wo
    up = resize(observed, (ho * f_h, wo * f_w, *observed.shape[2:]), order=3, mode="edge",
                anti_aliasing=False)
    pad = [(0, h - up.shape[0]), (0, w - up.shape[1])] + [(0, 0)] * (up.ndim - 2)
    return np.pad(up, pad, mode="edge")


def baselines(problem: Restoration, sigma: float | None, choices: Sequence[str]) -> list:
    """Bicubic interpolation, and TV (Chambolle) on it with its weight chosen by each of
    `choices` (the discrepancy principle through A, on the observation grid)."""
    from skimage.restoration import denoise_tv_chambolle

    from multigrade import baselines as classical
    from multigrade.metrics import ssim

    clean = problem.target_image()
    y = _squeeze(np.asarray(problem.observed, np.float64))
    up = bicubic(y, clean.shape)
    rows, cols = (np.asarray(m, np.float64) for m in (problem.op.rows, problem.op.cols))
    axis = -1 if clean.ndim == 3 else None

    def forward(x):
        return np.einsum("ij,jk...,lk->il...", rows, x, cols)

    def restore(weight, obs=y):
        return denoise_tv_chambolle(bicubic(obs, clean.shape), weight=weight, channel_axis=axis)

    out = [classical.Baseline("bicubic", "", 0.0, classical._psnr(up, clean), ssim(up, clean),
                              up, "oracle")]
    return out + [classical._choose("TV on bicubic", "weight", classical.TV_WEIGHTS, restore,
                                    clean, c, observed=y, sigma=sigma, forward=forward)
                  for c in choices if c != "sure"]


@dataclasses.dataclass(frozen=True)
class Options:
    """The task's own config fields, `[problem.options]` (and `--factor`, `--kernel`)."""

    factor: int = dataclasses.field(default=2, metadata={"help": (
        "The downsampling factor: the observation is (H // factor) × (W // factor).")})
    kernel: str = dataclasses.field(default="box", metadata={"help": (
        "The downsampling kernel: box (block means) or gaussian (a Gaussian of σ = factor / 2 "
        "first, then block means).")})

    def __post_init__(self):
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) \
                or self.factor < 2:
            raise ValueError(f"factor must be an integer of at least 2, got {self.factor!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown downsampling kernel {self.kernel!r}; choose one of "
                             f"{', '.join(KERNELS)}")


def build(pcfg, clean, _files) -> Restoration:
    """The task's problem from the config's problem section (`options.factor`,
    `options.kernel`, `sigma` in 1/255, the splitting weights and the noise seed)."""
    import jax

    own = pcfg.options
    return superresolution(clean, own.factor, pcfg.sigma / 255, kernel=own.kernel,
                           key=jax.random.key(pcfg.noise_seed), beta=pcfg.beta, lam=pcfg.lam,
                           alpha=pcfg.alpha, name=pcfg.image)


def _squeeze(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else image


def noise_level(problem: Restoration) -> float:
    """σ_n from the observation alone (the wavelet estimate: noise is added on its grid)."""
    from multigrade import selection

    return selection.estimate_sigma(np.asarray(problem.observed))


SUMMARY = ("Super-resolution with TV splitting: y = the image downsampled by --factor, plus "
           "noise; the network is the high-resolution image.")
#: What the task table needs beyond `build` and `SUMMARY` (`experiments.tasks.Task`'s fields)
TASK = dict(selections=("none", "discrepancy", "holdout"), adaptive=False,
            baselines=baselines, noise_level=noise_level, operator=Separable,
            defaults=(("sigma", 5.0),), reads=("sigma",), options=Options,
            model_defaults=(("layers_per_grade", 3),),
            compare="MGDL vs SGDL super-resolution, with bicubic interpolation and TV on it "
                    "as the classical baselines.")
