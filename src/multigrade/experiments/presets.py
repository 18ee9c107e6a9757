"""Every experiment of the paper as plain data: one `RunConfig` per scale.

`paper` is the paper's sizes, depths and budgets (SPEC §3-§4; meant for a GPU). `fast` is the
restoration experiments at the paper's sizes on 2 CPU cores, each method with a training
recipe of its own (`FAST`: warm-up and cosine decay, MGDL's first grades and SGDL's one
network's first stages on coarse grids, mini-batch steps where the degradation is
pixel-wise; docs/time-to-quality.md) in place
of the fixed budgets; `all` at that scale is `FAST_ALL`. `quick` is the same methods and
hyper-parameters as `paper`, reduced to finish on 2 CPU cores:

- images are resized: regression to 128², restoration to 64², the studies to 64²
  (the eigenvalue study's image regression to 32²);
- budgets are shorter: regression 1 500 epochs per grade (paper 10 000), restoration 2 000
  (paper 20 000), the GD studies 2 000-3 000 steps per grade; MGDL and SGDL always get the
  same number of epochs per grade, as in the paper (equal epochs per layer);
- `all` runs a subset of the restoration grid (`QUICK_ALL`): denoising at σ_n = 10/255 on
  butterfly, male and chest and at 30 and 50 on butterfly; deblurring at σ_b = 3 on
  butterfly and male and at 5 on butterfly. Every other experiment can still be named
  alone at either scale.

`EXPERIMENTS` maps a name to its `Experiment`; `GROUPS` names sets of them
(`regression`, `denoise`, `deblur`, `lr-study`, `eigen-study`, `msdl`, `all`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from multigrade.experiments.config import (
    MethodsConfig,
    MethodSettings,
    ModelConfig,
    ProblemConfig,
    RunConfig,
    StudySection,
    TrainConfig,
)

SCALES = ("quick", "fast", "paper")
FAST_GROUPS = ("denoise", "deblur")  # the experiments with a fast scale
REGRESSION_IMAGES = ("camera", "barbara")
RESTORATION_IMAGES = ("butterfly", "male", "chest")
NOISE_LEVELS = (10, 20, 30, 40, 50, 60)
BLUR_LEVELS = (3, 5, 7)


# The authors' per-method settings of the restoration figures (SPEC §3): carried by the names
# of their saved best results, printed by each task folder's `analysis_results.ipynb` in the
# paper's code (github.com/Ronglong-Fang/Why-MGDL-outperforms-SGDL).
_SOURCE = ("the authors' best {task} result, {name} lr {lr:g}, β {beta:g}, λ {lam:g}: the name "
           "of results/BEST/{name}_grade…_lrparams…_beta…_lambd…_psnr….pickle, printed by "
           "the {task} folder's analysis_results.ipynb of "
           "Ronglong-Fang/Why-MGDL-outperforms-SGDL (SPEC §3)")


def _authors(task: str, name: str, lr: float, beta: float, lam: float) -> MethodSettings:
    return MethodSettings(lr=lr, beta=beta, lam=lam, source=_SOURCE.format(
        task="denoising" if task == "denoise" else "deblurring", name=name, lr=lr, beta=beta,
        lam=lam))


AUTHORS: dict[str, MethodsConfig] = {
    "denoise": MethodsConfig(mgdl=_authors("denoise", "MGDL", 5e-3, 1.0, 1e-2),
                             sgdl=_authors("denoise", "SGDL", 5e-3, 0.1, 1e-4)),
    "deblur": MethodsConfig(mgdl=_authors("deblur", "MGDL", 5e-3, 1e-2, 1e-1),
                            sgdl=_authors("deblur", "SGDL", 5e-3, 0.1, 0.1)),
}


def authors_methods(task: str, keep: tuple[str, ...] = ("lr", "beta", "lam")) -> MethodsConfig:
    """The authors' per-method settings of a restoration task, only the fields in `keep`
    (the others left to the shared values); an empty table for other tasks."""
    if task not in AUTHORS:
        return MethodsConfig()
    return MethodsConfig(**{m: dataclasses.replace(
        getattr(AUTHORS[task], m), **{f: None for f in ("lr", "beta", "lam") if f not in keep})
        for m in ("mgdl", "sgdl")})


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment of the paper.

    Attributes:
        name: what `mgdl reproduce NAME` takes.
        group: the group it belongs to.
        title: one line saying what it is.
        fast_title: the line at the fast scale, where it trains otherwise (None: `title`).
        claims: which of the paper's claims it tests (see `verdicts.CLAIMS`).
        paper: the authors' figures (SPEC §5), by method, when the paper gives them.
        build: the configuration at a scale.
    """

    name: str
    group: str
    title: str
    claims: tuple[int, ...]
    build: Callable[[str], RunConfig]
    paper: dict = dataclasses.field(default_factory=dict)
    fast_title: str | None = None

    def describe(self, scale: str) -> str:
        """The one line saying what it is at `scale`."""
        return self.fast_title if scale == "fast" and self.fast_title else self.title

    def config(self, scale: str) -> RunConfig:
        _check_scale(scale)
        if scale == "fast" and self.group not in FAST_GROUPS:
            raise ValueError(f"{self.name} has no fast scale (the fast scale is the "
                             f"restoration experiments': {', '.join(FAST_GROUPS)}); run it "
                             "at the quick or paper scale")
        return self.build(scale)


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose {', '.join(SCALES)}")


def _regression(image: str) -> Callable[[str], RunConfig]:
    def build(scale: str) -> RunConfig:
        quick = scale == "quick"
        return RunConfig(
            command="compare",
            problem=ProblemConfig(task="regression", image=image, size=128 if quick else None),
            model=ModelConfig(grades=4, layers_per_grade=2, width=128),
            train=TrainConfig(optimizer="adam", lr=1e-3, epochs=1500 if quick else 10_000,
                              record_every=50 if quick else 100))
    return build


# The fast scale's recipes, per task and method (`[methods.<method>]` on top of the
# authors' lr, β, λ). MGDL's: the time-to-quality benchmark's `best` (docs/time-to-quality.md:
# Adam warmed up to 1e-2 over 5 % of each grade then cosine-decayed to 1e-4; for denoising
# g1x4-t3-x2: grade 1 on the 4× coarser grid for 8 000 epochs, grade 2 on the 2× coarser
# one for 2 000 from three starts (the least training loss kept), grades 3 and 4 12 000
# steps each on 1/16 of the pixels; for deblurring `coarse3-warmup-long`: grades 1-3 on the
# 4×, 2×, 2× coarser grids for 8 000 / 4 000 / 4 000 epochs, grade 4 1 500 full epochs, since
# a blur of σ_b ≥ 3 leaves almost nothing above the 2× grid's Nyquist frequency). SGDL's:
# the same tools where they apply to one network: the schedule and peak 1e-2 (its rate
# searched at 128² as MGDL's was, by PSNR and the held-out loss), a coarse-to-fine
# curriculum of its one network (`curriculum`, one optimiser state throughout) and, for
# denoising, mini-batches on the full grid; at 512² on 2 cores of a 346 GFLOP/s machine
# about 34 (MGDL) and 25 (SGDL) minutes denoising, 35 (SGDL) deblurring.
FAST: dict[str, dict[str, dict]] = {
    "denoise": {
        "mgdl": dict(lr=1e-2, schedule="warmup-cosine", coarse=(4, 2),
                     grade_epochs=(8000, 2000), grade_tries=(1, 3), epochs=12000,
                     batch=0.0625),
        # one network coarse to fine: 3 000 epochs on 128², 750 on 256², then 5 000 steps
        # on mini-batches of 512² (docs/time-to-quality.md, SGDL at 512²)
        "sgdl": dict(lr=1e-2, schedule="warmup-cosine", curriculum=(4, 2),
                     curriculum_epochs=(3000, 750), epochs=5000, batch=0.0625),
    },
    "deblur": {
        "mgdl": dict(lr=1e-2, schedule="warmup-cosine", coarse=(4, 2, 2),
                     grade_epochs=(8000, 4000, 4000), epochs=1500),
        # the same curriculum on full epochs (tiles of a blur stall at 512²): 3 000 on
        # 128², 500 on 256², 1 500 on 512² (docs/results-fast.md)
        "sgdl": dict(lr=1e-2, schedule="warmup-cosine", curriculum=(4, 2),
                     curriculum_epochs=(3000, 500), epochs=1500),
    },
}
_FAST_SOURCE = ("the fast scale's {method} recipe (presets.FAST, docs/time-to-quality.md) on the "
                "authors' β {beta:g}, λ {lam:g}")


def fast_methods(task: str) -> MethodsConfig:
    """The fast scale's per-method settings of a restoration task: each method's recipe
    (`FAST`) with the authors' β and λ."""
    def one(method: str) -> MethodSettings:
        own = getattr(AUTHORS[task], method)
        return MethodSettings(beta=own.beta, lam=own.lam, **FAST[task][method],
                              source=_FAST_SOURCE.format(method=method.upper(), beta=own.beta,
                                                         lam=own.lam))
    return MethodsConfig(mgdl=one("mgdl"), sgdl=one("sgdl"))


def _restoration(task: str, image: str, level: float) -> Callable[[str], RunConfig]:
    def build(scale: str) -> RunConfig:
        quick = scale == "quick"
        levels = {"sigma": float(level)} if task == "denoise" else {
            "blur_sigma": float(level), "noise": 3.0}
        return RunConfig(  # shared: main_run.py's defaults; per method: the authors' (above)
            command="compare",
            problem=ProblemConfig(task=task, image=image, size=64 if quick else None,
                                  beta=0.1, lam=0.01, alpha=0.99, **levels),
            model=ModelConfig(grades=4, layers_per_grade=3, width=128),
            train=TrainConfig(optimizer="adam", lr=1e-3, epochs=2000 if quick else 20_000,
                              record_every=100, checkpoint_every=500 if scale == "fast"
                              else 1000),
            methods=fast_methods(task) if scale == "fast" else AUTHORS[task])
    return build


@dataclasses.dataclass(frozen=True)
class _Study:
    """A GD study preset (He initialisation, zero biases), `interval_parts` + 1 spectra per
    grade (quick: at most 3, at the start, the middle and the end); called with a scale,
    it gives the study's config.
    Hessians up to 8 000 parameters are formed densely (the eigenvalue study's SGDL
    [48]×4 has 7 200), so every spectrum is complete and claim 4 can be measured."""

    command: str
    task: str
    lrs: tuple[float, ...]
    width: int
    layers: int
    quick_steps: int
    paper_steps: int
    methods: tuple[str, ...] = ("mgdl", "sgdl")
    interval_parts: int = 4
    image: str | None = None
    quick_size: int = 64
    paper_size: int | None = None
    setting: int = 1
    sigma: float = 10.0
    dense_max: int = 8000
    record_every: int = 10

    def __call__(self, scale: str) -> RunConfig:
        quick = scale == "quick"
        steps = self.quick_steps if quick else self.paper_steps
        parts = min(self.interval_parts, 2) if quick else self.interval_parts
        return RunConfig(
            command=self.command,
            problem=ProblemConfig(task=self.task, image=self.image or "camera",
                                  setting=self.setting,
                                  size=self.quick_size if quick else self.paper_size,
                                  sigma=self.sigma, beta=1e-3, lam=1e-4),
            model=ModelConfig(grades=4, layers_per_grade=self.layers, width=self.width,
                              init="he"),
            train=TrainConfig(optimizer="gd", lr=max(self.lrs), epochs=steps,
                              record_every=self.record_every if quick else 100),
            study=StudySection(methods=self.methods, learning_rates=tuple(self.lrs),
                               interval=max(steps // parts, 1), dense_max=self.dense_max))


SWEEP_RATES = (1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 2e-1, 5e-1)


def _image_experiments() -> list[Experiment]:
    """Section 4: image regression, denoising and deblurring (Adam, MGDL vs SGDL)."""
    found: list[Experiment] = []
    for image in REGRESSION_IMAGES:
        found.append(Experiment(
            f"regression-{image}", "regression",
            f"image regression on {image}: MGDL 4×[128,128] vs SGDL [128]×8, Adam 1e-3",
            (1, 5), _regression(image)))
    paper_restoration = {
        ("denoise", "butterfly", 10): {"mgdl": 31.67, "sgdl": 27.53, "observed": 28.12,
                                       "mgdl_grades": [21.96, 27.68, 30.65, 31.67]},
        ("deblur", "butterfly", 3): {"mgdl": 27.05, "sgdl": 25.43, "observed": 24.62,
                                     "mgdl_grades": [22.14, 25.81, 26.95, 27.05]},
    }
    for task, levels, unit in (("denoise", NOISE_LEVELS, "σ_n = {}/255"),
                               ("deblur", BLUR_LEVELS, "σ_b = {}, σ_n = 3/255")):
        for image in RESTORATION_IMAGES:
            for level in levels:
                what = (f"{'denoising' if task == 'denoise' else 'deblurring'} {image}, "
                        f"{unit.format(level)}: MGDL 4×[128]×3 vs SGDL [128]×12, Adam, ")
                found.append(Experiment(
                    f"{task}-{image}-{level}", task, what + "the authors' lr, β, λ per method",
                    (1, 5), _restoration(task, image, level),
                    paper_restoration.get((task, image, level), {}),
                    fast_title=what + "each method's fast recipe (coarse grids, warm-up to "
                    "1e-2, cosine), the authors' β, λ"))
    return found


def _study_experiments() -> list[Experiment]:
    """Sections 5-6 and the MSDL comparison: full-batch GD studies."""
    found = [
        Experiment("lr-synthetic-1", "lr-study",
                   "GD learning-rate sweep, synthetic setting 1: MGDL 4×[32] vs SGDL [32]×4",
                   (2,), _Study("lr-sweep", "synthetic", lrs=SWEEP_RATES, width=32, layers=1,
                                quick_steps=2000, paper_steps=20_000)),
        Experiment("lr-synthetic-2", "lr-study",
                   "GD learning-rate sweep, synthetic setting 2: MGDL 4×[32] vs SGDL [32]×4",
                   (2,), _Study("lr-sweep", "synthetic", setting=2, lrs=SWEEP_RATES, width=32,
                                layers=1, quick_steps=2000, paper_steps=20_000)),
        Experiment("lr-regression", "lr-study",
                   "GD learning-rate sweep, image regression on resolutionchart: MGDL "
                   "4×[128,128] vs SGDL [128]×8", (2,),
                   _Study("lr-sweep", "regression", image="resolutionchart", lrs=SWEEP_RATES,
                          width=128, layers=2, quick_steps=1000, paper_steps=10_000)),
        Experiment("eigen-synthetic", "eigen-study",
                   "GD-Jacobian spectra, synthetic setting 1: MGDL η 6e-2 vs SGDL η 5e-3",
                   (3, 4), _Study("spectrum", "synthetic", lrs=(6e-2, 5e-3), width=32, layers=1,
                                  quick_steps=3000, paper_steps=100_000)),
        Experiment("eigen-regression", "eigen-study",
                   "GD-Jacobian spectra, image regression on resolutionchart: MGDL 4×[48] "
                   "η 0.2 vs SGDL [48]×4 η 5e-2", (3, 4),
                   _Study("spectrum", "regression", image="resolutionchart", lrs=(0.2, 5e-2),
                          width=48, layers=1, quick_steps=2000, paper_steps=20_000,
                          quick_size=32),
                   {"mgdl": 12.04, "sgdl": 12.48, "metric": "test_psnr"}),
    ]
    for sigma in (10, 30):
        found.append(Experiment(
            f"eigen-denoise-{sigma}", "eigen-study",
            f"GD-Jacobian spectra, denoising butterfly 64², σ_n = {sigma}/255: MGDL 4×[48] "
            "η 5e-5 vs SGDL [48]×4 η 1e-5, β 1e-3, λ 1e-4 (both)", (3, 4),
            _Study("spectrum", "denoise", image="butterfly", sigma=sigma, lrs=(5e-5, 1e-5),
                   width=48, layers=1, quick_steps=2000, paper_steps=20_000, paper_size=64)))
    found.append(Experiment(
        "msdl", "msdl",
        "MGDL vs SGDL vs multi-scale MSDL (4 × [1,8,8,8,8,1], scales 1,2,4,8), synthetic "
        "setting 1, GD at η 6e-2 / 5e-3 / 4e-3", (1,),
        _Study("spectrum", "synthetic", methods=("mgdl", "sgdl", "msdl"),
               lrs=(6e-2, 5e-3, 4e-3), width=32, layers=1, quick_steps=5000,
               paper_steps=250_000, interval_parts=1),
        {"mgdl": 8.39e-5, "sgdl": 0.364, "msdl": 1.12e-2, "metric": "train_loss",
         "mgdl_grades": [0.440, 0.114, 3.18e-3, 8.39e-5]}))
    return found


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in [*_image_experiments(), *_study_experiments()]}

# What `all --scale fast` runs: the restoration figures the paper gives per grade.
FAST_ALL = ("denoise-butterfly-10", "deblur-butterfly-3")
# What `all --scale quick` runs of the restoration grid (everything else runs whole).
QUICK_ALL = ("denoise-butterfly-10", "denoise-male-10", "denoise-chest-10",
             "denoise-butterfly-30", "denoise-butterfly-50", "deblur-butterfly-3",
             "deblur-male-3", "deblur-butterfly-5")
GROUP_NAMES = ("regression", "denoise", "deblur", "lr-study", "eigen-study", "msdl")


def select(name: str, scale: str = "quick") -> list[Experiment]:
    """The experiments `name` stands for: one experiment, a group, or `all` (at the quick
    scale, `all` takes the restoration subset `QUICK_ALL`; at the fast scale, `FAST_ALL`).
    At the fast scale, a name without one (regression, the studies) is refused."""
    _check_scale(scale)
    if name in EXPERIMENTS:
        found = [EXPERIMENTS[name]]
    elif name in GROUP_NAMES:
        found = [e for e in EXPERIMENTS.values() if e.group == name]
    elif name == "all" and scale == "fast":
        found = [EXPERIMENTS[n] for n in FAST_ALL]
    elif name == "all":
        found = [e for e in EXPERIMENTS.values() if scale == "paper"
                 or e.group not in ("denoise", "deblur") or e.name in QUICK_ALL]
    else:
        raise ValueError(f"unknown experiment {name!r}; `mgdl reproduce --list` shows them "
                         f"(groups: {', '.join(GROUP_NAMES)}, all)")
    if scale == "fast":
        for e in found:
            e.config(scale)  # refuses one without a fast scale
    return found
