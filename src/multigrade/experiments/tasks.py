"""The tasks: the one table that turns a task name into a problem, the selection rules and
the classical baselines it allows.

A task is a `Task` in `TASKS`. Config validation (which rules and options a task takes),
the runner (building the problem, the noise level, the baselines) and the CLI read this
table, so a new task is its problem module, one `register(Task(...))` here, and its
commands. Builders import their problem modules when called: this module is imported by
the config and stays light (the operator classes, which say what a task's degradation
supports, are light too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from multigrade import operators
from multigrade.experiments import superres

if TYPE_CHECKING:
    from multigrade.problems import Problem


@dataclasses.dataclass(frozen=True)
class Task:
    """What the rest of the library needs to know of a task.

    Attributes:
        name: the config's `problem.task` and the CLI's subcommand.
        build: `(problem config, clean image or None, noise key) -> Problem`.
        summary: one line for `--help` and the docs.
        image: whether the task reads an image (`problem.image`).
        selections: the `train.select` rules it allows ("none" always).
        studies: whether the GD studies (`lr-sweep`, `spectrum`) run on it.
        adaptive: whether adaptive grades (`train.min_gain`, validation PSNR) apply.
        baselines: `(problem, σ or None, choices) -> [Baseline]`, the classical methods
            beside a comparison (None: none); `choices` are those of `baselines.CHOICES`
            the run can make.
        noise_level: `(problem) -> σ` estimated from the observation alone (restoration).
        files: config fields that name a file read by the run (pinned like the image).
        operator: the class of the degradation A (`operators.Identity`, `Blur`,
            `Separable`, `Mask`; None: no observation, a regression): what it supports
            (`pixelwise` or `tiles`: mini-batches; `coarsens`: coarse-to-fine grades) is
            asked of it.
        defaults: the task's own defaults of `ProblemConfig` fields left unset (the CLI's
            options and config files both read them).
        model_defaults: the same for `ModelConfig` fields (restoration: 3 hidden layers per
            grade, the paper's 4 × 3 network).
        reads: the shared `ProblemConfig` fields of the observation it reads (its CLI
            options, in this order; `beta`, `lam`, `alpha`, `noise_seed` with them for a
            restoration).
        options: a frozen dataclass of the task's own fields (`[problem.options]` in a
            config, `ProblemConfig.options`; each field a CLI option, its `help` in the
            field's metadata; validation in its `__post_init__`), or None.
        compare: one line for `mgdl compare <task> --help`.
    """

    name: str
    build: Callable
    summary: str = ""
    image: bool = True
    selections: tuple[str, ...] = ("none",)
    studies: bool = False
    adaptive: bool = True
    baselines: Callable | None = None
    noise_level: Callable | None = None
    files: tuple[str, ...] = ()
    operator: type | None = None
    defaults: tuple[tuple[str, object], ...] = ()
    model_defaults: tuple[tuple[str, object], ...] = ()
    compare: str = ""
    reads: tuple[str, ...] = ()
    options: type | None = None

    @property
    def batches(self) -> bool:
        """Whether mini-batches apply: of pixels (no operator, or a pixel-wise one) or of
        tiles (a blur)."""
        return self.operator is None or self.operator.pixelwise or self.operator.tiles

    @property
    def coarsens(self) -> bool:
        """Whether coarse-to-fine grades apply (an operator that restricts to a coarser grid)."""
        return self.operator is not None and self.operator.coarsens

    @property
    def restoration(self) -> bool:
        """An observation to restore: selection rules, baselines, the authors' settings."""
        return self.noise_level is not None


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Adds `task` to the registry (`mgdl fit <name>`, configs' `problem.task`); a name
    may be registered once."""
    if task.name in TASKS:
        raise ValueError(f"a task named {task.name!r} is registered already")
    TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    """The registered task called `name` (a ValueError naming the others if none)."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


def names(**having: bool) -> tuple[str, ...]:
    """The registered task names, optionally only those with the given values of `Task`'s
    flags, e.g. `names(restoration=True)`, `names(coarsens=True)`."""
    return tuple(t.name for t in TASKS.values()
                 if all(getattr(t, flag) == want for flag, want in having.items()))


# ---------------------------------------------------------------------------------------
# The tasks


def _key(pcfg):
    import jax

    return jax.random.key(pcfg.noise_seed)


def _splitting(pcfg) -> dict:
    return dict(key=_key(pcfg), beta=pcfg.beta, lam=pcfg.lam, alpha=pcfg.alpha,
                name=pcfg.image)


def _synthetic(pcfg, clean, _files) -> Problem:
    from multigrade.problems import synthetic

    return synthetic(pcfg.setting)


def _regression(pcfg, clean, _files) -> Problem:
    from multigrade.problems import image_regression

    return image_regression(clean, name=pcfg.image)


def _denoise(pcfg, clean, _files) -> Problem:
    from multigrade.problems import denoising

    return denoising(clean, pcfg.sigma / 255, **_splitting(pcfg))


def _deblur(pcfg, clean, _files) -> Problem:
    from multigrade.problems import deblurring

    return deblurring(clean, pcfg.blur_sigma, pcfg.noise / 255, **_splitting(pcfg))


def _inpaint(pcfg, clean, files) -> Problem:
    from multigrade.problems.inpainting import inpainting

    return inpainting(clean, pcfg.missing, pcfg.sigma / 255, mask=files.get("mask"),
                      **_splitting(pcfg))


def _wavelet_sigma(problem) -> float:
    from multigrade import selection

    return selection.estimate_sigma(np.asarray(problem.observed))


def _inpaint_sigma(problem) -> float:
    from multigrade.problems.inpainting import estimate_sigma

    return estimate_sigma(problem.observed, problem.observed_pixels())


def _tv(problem, sigma, choices: Sequence[str]) -> list:
    from multigrade import baselines

    clean, observed = problem.target_image(), problem.observed_image()
    return [baselines.tv_denoise(observed, clean, choice=c, sigma=sigma) for c in choices]


def _tv_wiener(problem, sigma, choices: Sequence[str]) -> list:
    from multigrade import baselines

    clean, observed = problem.target_image(), problem.observed_image()
    blur = dict(problem.settings)["blur_sigma"]
    return _tv(problem, sigma, choices) + [
        baselines.wiener(observed, clean, blur, choice=c, sigma=sigma) for c in choices]


def _biharmonic(problem, sigma, choices: Sequence[str]) -> list:
    from multigrade import baselines

    seen = np.asarray(problem.observed_pixels())[..., 0] > 0
    return baselines.inpaint(problem.observed_image(), problem.target_image(), seen,
                             choices=choices, sigma=sigma)


#: The restoration tasks' network: 4 grades of 3 hidden layers (the paper's Section 4)
RESTORATION_MODEL = (("layers_per_grade", 3),)

register(Task("regression", _regression, "Coordinate image regression (paper §2.1): fit "
              "pixel values from pixel coordinates.", studies=True,
              compare="MGDL vs SGDL (same total depth, optimiser, epochs per grade and seed) "
                      "on an image."))
register(Task("synthetic", _synthetic, "Spectral-bias 1-D regression (paper §5).",
              image=False, studies=True))
register(Task("denoise", _denoise, "Denoising with TV splitting (paper §2.2): the network is "
              "the restored image.", selections=("none", "sure", "discrepancy", "holdout"),
              studies=True, adaptive=False, baselines=_tv, noise_level=_wavelet_sigma,
              operator=operators.Identity, defaults=(("sigma", 10.0),), reads=("sigma",),
              model_defaults=RESTORATION_MODEL,
              compare="MGDL (4 × 3 layers) vs SGDL (12 layers) denoising, with an "
                      "oracle-tuned TV baseline."))
register(Task("deblur", _deblur, "Deblurring with TV splitting (paper §2.2): Gaussian blur, "
              "symmetric padding.", selections=("none", "discrepancy", "holdout"),
              adaptive=False, baselines=_tv_wiener, noise_level=_wavelet_sigma,
              operator=operators.Blur, reads=("blur_sigma", "noise"),
              model_defaults=RESTORATION_MODEL,
              compare="MGDL vs SGDL deblurring, with oracle-tuned TV and Wiener baselines."))
register(Task("inpaint", _inpaint, "Inpainting with TV splitting: y = M ⊙ (image + noise) "
              "for a pixel mask M (random, or --mask); the network fills the gaps.",
              selections=("none", "discrepancy", "holdout"), adaptive=False,
              baselines=_biharmonic, noise_level=_inpaint_sigma, files=("mask",),
              operator=operators.Mask, defaults=(("sigma", 5.0),),
              reads=("missing", "mask", "sigma"), model_defaults=RESTORATION_MODEL,
              compare="MGDL vs SGDL inpainting, with biharmonic inpainting (and TV on it) "
                      "as the classical baseline."))
register(Task("superres", superres.build, superres.SUMMARY, **superres.TASK))
