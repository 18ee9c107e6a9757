"""The one configuration format: a run is a `RunConfig`, stored as `config.toml`.

```toml
command = "fit"            # fit (one model) or compare (MGDL and SGDL side by side)
x64 = false

[problem]
task = "regression"        # regression, denoise, deblur, inpaint, superres or synthetic
image = "camera"           # built-in name or file; size = 128 resizes to 128 × 128
sigma = 10.0               # noise σ_n in units of 1/255 (unset: the task's, inpaint 5)
blur_sigma = 3.0           # deblur: σ_b in pixels; noise = 3.0 (1/255 units)
beta = 0.1                 # TV splitting β, λ, α (the paper's Section 4)
lam = 0.01
alpha = 0.99
noise_seed = 0
setting = 1                # synthetic: setting 1 or 2
missing = 0.5              # inpaint: the fraction of pixels missing (or mask = "FILE")

[problem.options]          # the task's own fields (`tasks.Task.options`), e.g. superres:
factor = 2                 # the downsampling factor
kernel = "box"             # box or gaussian

[model]
method = "mgdl"            # mgdl, sgdl (grades × layers_per_grade hidden layers in one
                           # grade), ffn (random Fourier features) or siren
grades = 4                 # with train.min_gain: the most grades tried
layers_per_grade = 2
width = 128
init = "glorot"
shared_grade_key = false   # true: every grade from one key, as the paper's code does
archs = ["fourier", "relu", "relu", "relu"]  # per grade: relu, fourier or siren
fourier_sigma = 10.0       # Fourier grades: B ~ N(0, σ²), m features, B's seed
fourier_features = 256
fourier_seed = 0
omega0 = 30.0              # SIREN grades' ω₀
baselines = ["ffn", "siren"]  # compare: baselines sized to MGDL's parameter count
fourier_sigmas = [1.0, 3.0, 10.0, 30.0]  # the FFN baseline's σ grid (best on validation)
baseline_layers = 4        # hidden layers of each baseline

[train]
optimizer = "adam"         # gd or one of SUPPORTED_OPTIMIZERS
lr = 0.001
epochs = 2000              # per grade; SGDL trains the same number
grade_epochs = [2000, 2000]  # MGDL: the first grades' own epochs (the rest train `epochs`)
record_every = 10
tol = 1e-5                 # optional: the paper's stopping rule
seed = 0
checkpoint_every = 1000
select = "none"            # restoration: sure, discrepancy or holdout choose epochs and
                           # grades without the clean image (multigrade.selection)
noise_level = 10.0         # σ_n those rules use (1/255 units); left out: estimated
holdout = 0.1              # holdout: the fraction of pixels hidden from the loss
sure_probes = 1            # sure: random probes of the divergence
sure_eps = 1.0             # sure: finite-difference step, in units of σ_n (0: exact JVP)
baseline_lr = 1e-4         # the baselines' rate (left out: FFN 1e-3, SIREN 1e-4, their papers')
lr_auto = 0.5              # gd: η = c·2/λ_max of each grade's Hessian at its start
sharpness_every = 100      # gd: epochs between λ_max estimates (for lower_lr, eig_stop)
lower_lr = false           # gd: lower η to c·2/λ_max when λ_max passes 2/η
eig_stop = -0.95           # gd: end a grade when 1 − η·λ_max falls below this
min_gain = 0.1             # adaptive grades: least validation PSNR gain (dB) of a grade
schedule = "constant"      # the rate along each grade: constant, cosine, warmup-cosine
coarse = [4, 2]            # denoise, deblur: grades 1, 2 on 4×, 2× coarser grids (the rest
                           # on the image's): coarse-to-fine
batch = 0.125              # the grades on the image's own grid step on random mini-batches
                           # of this fraction of the pixels (an epoch is then one step)

[methods.mgdl]             # per method (mgdl, sgdl): lr, beta, lam in place of the shared
lr = 5e-3                  # values, and where they come from (the paper's figures come from
beta = 1.0                 # settings chosen per method, SPEC §3)
lam = 1e-2
source = "the authors' best results (analysis_results.ipynb)"

[study]                    # lr-sweep and spectrum only (the paper's GD studies)
methods = ["mgdl", "sgdl"] # mgdl, sgdl, msdl
learning_rates = [0.05]    # lr-sweep: every rate; spectrum: one, or one per method
interval = 500             # spectrum: GD steps between Hessian spectra
dense_max = 4000           # spectrum: largest Hessian formed densely (above: Lanczos)
density = 0                # spectrum: SLQ probes of the Hessian's density (0: none)
```

A run directory's `config.toml` also has an `[inputs]` table, written by the runner: the
absolute path and SHA-256 of the image file the run read (for a built-in image its name,
the scikit-image version and its pixels' SHA-256). `mgdl resume` and `mgdl grow` read the
image from there and refuse when it is missing or its content changed; a new run (`mgdl run`)
pins its inputs afresh.

The studies train with `train.optimizer = "gd"` at `study.learning_rates`, `train.epochs`
steps per grade; `train.lr` is not used.

Every field has a default; a file need only say what differs. Loading checks every key
and type (an unknown key or a wrong type is one error naming it) and every value's range.
Optional fields (size, data_dir, tol) are simply left out when unset: TOML has no null.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path

import optax

from multigrade.nn import INITS

COMMANDS = ("fit", "compare", "lr-sweep", "spectrum")
STUDY_METHODS = ("mgdl", "sgdl", "msdl")
METHODS = ("mgdl", "sgdl", "ffn", "siren")
BASELINES = ("ffn", "siren")
# The baselines' own papers' Adam rates (Tancik et al. 2020; Sitzmann et al. 2020).
BASELINE_LR = {"ffn": 1e-3, "siren": 1e-4}
SHARPNESS_EVERY = 100  # default epochs between λ_max estimates
MAX_SEED = 2**32 - 1

# Optimisers that take a learning rate as their first argument and nothing else required.
# "gd" is plain full-batch gradient descent (optax.sgd).
SUPPORTED_OPTIMIZERS = ("gd", "sgd", "momentum", "nesterov", "adam", "adamw", "adamax",
                        "nadam", "radam", "rmsprop", "adagrad", "adadelta", "adabelief",
                        "amsgrad", "lion", "lamb", "lars", "novograd", "yogi", "sm3",
                        "fromage", "sign_sgd", "adafactor")


SCHEDULES = ("constant", "cosine", "warmup-cosine")
SCHEDULE_FINAL = 0.01  # cosine schedules end at this fraction of the peak rate
SCHEDULE_WARMUP = 0.05  # warmup-cosine: the fraction of a grade's epochs spent warming up


def learning_rate_schedule(schedule: str, lr: float, epochs: int | None):
    """The rate at each epoch of a grade (a grade's optimiser starts at step 0): `lr` for
    "constant"; "cosine" decays from `lr` to `SCHEDULE_FINAL`·lr over `epochs` (Loshchilov
    & Hutter 2017, SGDR); "warmup-cosine" first rises linearly from 0 over
    `SCHEDULE_WARMUP`·epochs, then decays likewise (Goyal et al. 2017)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; supported: {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=epochs, alpha=SCHEDULE_FINAL)
    warmup = max(1, round(SCHEDULE_WARMUP * epochs))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=warmup,
                                              decay_steps=max(epochs, warmup + 1),
                                              end_value=SCHEDULE_FINAL * lr)


@functools.lru_cache(maxsize=64)
def make_optimizer(name: str, lr: float, schedule: str = "constant",
                   epochs: int | None = None) -> optax.GradientTransformation:
    """`"gd"`/`"sgd"` → `optax.sgd(lr)`, `"momentum"` → SGD with momentum 0.9, `"nesterov"`
    → Nesterov momentum 0.9; any other supported name → `optax.<name>(lr)`; with a
    `schedule` over a grade's `epochs` (`learning_rate_schedule`), the rate follows it.

    One object per (name, rate, schedule): runs in one process with the same optimiser
    reuse their compiled training programs (a transformation is stateless, so sharing it
    is safe)."""
    check_optimizer(name)
    if schedule != "constant" and epochs is None:
        raise ValueError(f"the {schedule} schedule needs the grade's epochs")
    lr = learning_rate_schedule(schedule, lr, epochs)
    if name in ("gd", "sgd"):
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=0.9)
    if name == "nesterov":
        return optax.sgd(lr, momentum=0.9, nesterov=True)
    if name == "sign_sgd":
        return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(lr))
    return getattr(optax, name)(lr)


def check_optimizer(name: str) -> None:
    """A ValueError unless `name` is an optimiser the configs support (`gd`, `sgd` or an
    Optax optimiser of SUPPORTED_OPTIMIZERS)."""
    if name not in SUPPORTED_OPTIMIZERS:
        raise ValueError(f"unknown optimiser {name!r}; supported: "
                         f"{', '.join(SUPPORTED_OPTIMIZERS)}")


def _finite(name: str, v: float, *, low: float | None = None, positive: bool = False,
            high: float | None = None) -> None:
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be positive, got {v}")
    if low is not None and v < low:
        raise ValueError(f"{name} must be at least {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be at most {high}, got {v}")


def _seed(name: str, v: int) -> None:
    if not 0 <= v <= MAX_SEED:
        raise ValueError(f"{name} must be an integer from 0 to {MAX_SEED}, got {v}")


#: The fields of `ProblemConfig` whose default is the task's (`tasks.Task.defaults`), and
#: their value for a task that sets none.
PROBLEM_DEFAULTS: dict[str, object] = {"sigma": 10.0}


@dataclasses.dataclass(frozen=True)
class ProblemConfig:
    """What is fitted. Noise levels are in units of 1/255, as in the paper."""

    task: str = "regression"
    image: str = "camera"
    size: int | None = None
    data_dir: str | None = None
    color: bool = False
    sigma: float | None = None  # the task's default (tasks.Task.defaults), else 10
    blur_sigma: float = 3.0
    noise: float = 3.0
    beta: float = 0.1      # the paper's Section 4 restoration (SPEC §3)
    lam: float = 0.01
    alpha: float = 0.99
    noise_seed: int = 0
    setting: int = 1
    missing: float = 0.5   # inpaint: the fraction of pixels missing (a random mask) ...
    mask: str | None = None  # ... or a mask image, white where a pixel is seen
    # the task's own fields, `[problem.options]` (`tasks.Task.options`: a dataclass of them)
    options: typing.Any = None

    def __post_init__(self):
        from multigrade.experiments import tasks

        task = tasks.get(self.task)  # an unknown task is refused naming the known ones
        own = dict(task.defaults)
        for name, fallback in PROBLEM_DEFAULTS.items():  # unset: the task's own default
            if getattr(self, name) is None:
                object.__setattr__(self, name, own.get(name, fallback))
        _finite("missing", self.missing, low=0, high=0.99)
        if not self.image:
            raise ValueError("image must name a built-in image or a file")
        if self.size is not None and self.size < 2:
            raise ValueError(f"size must be at least 2, got {self.size}")
        _finite("sigma", self.sigma, low=0)
        _finite("noise", self.noise, low=0)
        _finite("blur_sigma", self.blur_sigma, positive=True, high=1e3)
        _finite("beta", self.beta, positive=True)
        _finite("lam", self.lam, positive=True)
        _finite("alpha", self.alpha, positive=True, high=1.0)
        _seed("noise_seed", self.noise_seed)
        object.__setattr__(self, "options", _task_options(task, self.options))
        if self.setting not in (1, 2):
            raise ValueError(f"unknown synthetic setting {self.setting}; choose 1 or 2")


def _task_options(task, given):
    """`[problem.options]` as the task's own dataclass (`Task.options`; its defaults when
    not given, a table read and checked as any section), or None for a task without one."""
    if task.options is None:
        if given:
            raise ValueError(f"the {task.name} task has no options of its own, got {given!r}")
        return None
    if given is None:
        return task.options()
    if isinstance(given, task.options):
        return given
    return _section(task.options, given, "options")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A model by its shape.

    MGDL has `grades` grades of `layers_per_grade` hidden layers. SGDL has the same total
    depth in one grade: `grades × layers_per_grade` hidden layers. Every hidden layer has
    `width` units.
    """

    method: str = "mgdl"
    grades: int = 4
    layers_per_grade: int = 2
    width: int = 128
    init: str = "glorot"
    shared_grade_key: bool = False  # every grade from one key, as the paper's code does
    archs: tuple[str, ...] = ()  # MGDL: per grade (or one for all); default relu
    fourier_sigma: float = 10.0
    fourier_features: int = 256
    fourier_seed: int = 0
    omega0: float = 30.0
    baselines: tuple[str, ...] = ()  # compare: beside MGDL and SGDL
    fourier_sigmas: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    baseline_layers: int = 4

    def __post_init__(self):
        from multigrade.model import ARCHS

        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}")
        for name in ("grades", "layers_per_grade", "width", "fourier_features",
                     "baseline_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, "
                                 f"got {getattr(self, name)}")
        if self.init not in INITS:
            raise ValueError(f"unknown initialiser {self.init!r}; choose one of {INITS}")
        bad = [a for a in self.archs if a not in ARCHS]
        if bad:
            raise ValueError(f"unknown architecture(s) {bad}; choose from {', '.join(ARCHS)}")
        if len(self.archs) > 1 and len(self.archs) != self.grades:
            raise ValueError(f"{len(self.archs)} architectures for {self.grades} grades: give "
                             "one per grade, or one for all")
        if self.archs and self.method != "mgdl":
            raise ValueError(f"archs sets MGDL's grades; method {self.method} has its own")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad or len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"baselines must be distinct names from {', '.join(BASELINES)}, "
                             f"got {list(self.baselines)}")
        if not self.fourier_sigmas:
            raise ValueError("fourier_sigmas must name at least one σ")
        for v in (self.fourier_sigma, self.omega0, *self.fourier_sigmas):
            _finite("fourier_sigma, fourier_sigmas and omega0", v, positive=True)
        _seed("fourier_seed", self.fourier_seed)

    @property
    def depth(self) -> int:
        return self.grades * self.layers_per_grade

    def build(self, out_dim: int = 1):
        from multigrade.model import ffn, mgdl, sgdl, siren

        if self.method == "mgdl":
            return mgdl([[self.width] * self.layers_per_grade] * self.grades,
                        out_dim=out_dim, init=self.init,
                        shared_grade_key=self.shared_grade_key, archs=self.archs,
                        fourier_sigma=self.fourier_sigma,
                        fourier_features=self.fourier_features,
                        fourier_seed=self.fourier_seed, omega0=self.omega0)
        widths = [self.width] * self.depth
        if self.method == "ffn":
            return ffn(widths, sigma=self.fourier_sigma, features=self.fourier_features,
                       seed=self.fourier_seed, out_dim=out_dim, init=self.init)
        if self.method == "siren":
            return siren(widths, omega0=self.omega0, out_dim=out_dim)
        return sgdl(widths, out_dim=out_dim, init=self.init)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    `epochs` is the budget of each grade; SGDL gets the same number of epochs, so both
    methods do about the same arithmetic (each SGDL epoch is K times deeper), as in the
    paper. `checkpoint_every` epochs, the grade's state is saved (at most a few per mille
    of the training time at the default; `benchmarks/throughput.py`).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 2000
    record_every: int = 10
    tol: float | None = None
    seed: int = 0
    checkpoint_every: int = 1000
    select: str = "none"
    noise_level: float | None = None
    holdout: float = 0.1
    sure_probes: int = 1
    sure_eps: float = 1.0
    baseline_lr: float | None = None
    lr_auto: float | None = None
    sharpness_every: int | None = None
    lower_lr: bool = False
    eig_stop: float | None = None
    min_gain: float | None = None
    schedule: str = "constant"
    coarse: tuple[int, ...] = ()
    batch: float | None = None
    grade_epochs: tuple[int, ...] = ()

    def __post_init__(self):
        from multigrade.selection import MODES

        check_optimizer(self.optimizer)
        for f in self.coarse:
            if isinstance(f, bool) or not isinstance(f, int) or f < 1:
                raise ValueError(f"coarse factors must be positive integers, got {f!r}")
        for e in self.grade_epochs:
            if isinstance(e, bool) or not isinstance(e, int) or e < 1:
                raise ValueError(f"grade_epochs must be positive integers, got {e!r}")
        if self.batch is not None:
            _finite("batch", self.batch, positive=True, high=1.0)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; supported: "
                             f"{', '.join(SCHEDULES)}")
        if self.schedule != "constant" and self.watches_spectrum:
            raise ValueError("a learning-rate schedule and --lr auto / --lower-lr / "
                             "--eig-stop both set the rate: use one")
        if self.watches_spectrum and self.optimizer not in ("gd", "sgd"):
            raise ValueError(f"--lr auto, --lower-lr and --eig-stop choose plain gradient "
                             f"descent's step: use --optimizer gd, not {self.optimizer}")
        if self.lr_auto is not None:
            _finite("lr auto factor c", self.lr_auto, positive=True, high=1.0)
        if self.lower_lr and self.lr_auto is None:
            raise ValueError("--lower-lr lowers η to c·2/λ_max: use it with --lr auto[:c]")
        if self.sharpness_every is not None and (
                self.sharpness_every < 1 or self.sharpness_every % self.record_every):
            raise ValueError(f"sharpness_every must be a positive multiple of record_every "
                             f"({self.record_every}), got {self.sharpness_every}")
        if self.eig_stop is not None:
            _finite("eig_stop", self.eig_stop, low=-2.0, high=1.0)
        if self.min_gain is not None:
            _finite("min_gain", self.min_gain, low=0)
        if self.baseline_lr is not None:
            _finite("baseline_lr", self.baseline_lr, positive=True)
        if self.select not in MODES:
            raise ValueError(f"unknown selection {self.select!r}; choose one of "
                             f"{', '.join(MODES)}")
        if self.noise_level is not None:
            _finite("noise_level", self.noise_level, positive=True)
        _finite("holdout", self.holdout, positive=True, high=0.9)
        if self.sure_probes < 1:
            raise ValueError(f"sure_probes must be at least 1, got {self.sure_probes}")
        _finite("sure_eps", self.sure_eps, low=0)
        _finite("learning rate", self.lr, positive=True)
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.record_every < 1:
            raise ValueError(f"record-every must be at least 1, got {self.record_every}")
        if self.tol is not None:
            _finite("tol", self.tol, low=0)
        _seed("seed", self.seed)
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint-every must be at least 1, got {self.checkpoint_every}")

    @property
    def watches_spectrum(self) -> bool:
        return self.lr_auto is not None or self.lower_lr or self.eig_stop is not None

    def make_optimizer(self, epochs: int | None = None) -> optax.GradientTransformation:
        """The optimiser of a grade of `epochs` (default `train.epochs`): a schedule runs
        over them."""
        if self.watches_spectrum:  # the rate lives in the optimiser's state
            return _injected_sgd(self.lr)
        return make_optimizer(self.optimizer, self.lr, self.schedule,
                              None if self.schedule == "constant" else
                              self.epochs if epochs is None else epochs)

    def budgets(self, grades: int) -> list[int]:
        """Each of `grades` grades' epochs: `grade_epochs` for the first ones, `epochs`
        for the rest."""
        own = list(self.grade_epochs[:grades])
        return own + [self.epochs] * (grades - len(own))

    def optimizers(self, grades: int) -> list[optax.GradientTransformation]:
        """Each grade's optimiser, its schedule over that grade's epochs (`budgets`)."""
        return [self.make_optimizer(e) for e in self.budgets(grades)]

    def adaptive(self):
        """The `train.AdaptiveGrades` of `min_gain` (None if unset)."""
        from multigrade.train import AdaptiveGrades

        return None if self.min_gain is None else AdaptiveGrades(self.min_gain)

    def step_size(self):
        """The `analysis.StepSize` of `--lr auto`, `--lower-lr`, `--eig-stop` (None if
        unset)."""
        from multigrade.analysis import StepSize

        if not self.watches_spectrum:
            return None
        every = self.sharpness_every
        if every is None and (self.lower_lr or self.eig_stop is not None):
            every = -(-SHARPNESS_EVERY // self.record_every) * self.record_every
        return StepSize(c=self.lr_auto, every=every, lower=self.lower_lr,
                        eig_stop=self.eig_stop)


@functools.lru_cache(maxsize=64)
def _injected_sgd(lr: float) -> optax.GradientTransformation:
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr)


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """One method's own settings in a comparison (or a fit of that method): each field
    left unset takes the shared value (`train.lr`, `problem.beta`, `problem.lam`)."""

    lr: float | None = None
    beta: float | None = None
    lam: float | None = None
    source: str | None = None  # where these values come from (provenance)

    def __post_init__(self):
        for name in ("lr", "beta", "lam"):
            if getattr(self, name) is not None:
                _finite(name, getattr(self, name), positive=True)

    @property
    def empty(self) -> bool:
        return self.lr is None and self.beta is None and self.lam is None


@dataclasses.dataclass(frozen=True)
class MethodsConfig:
    """Per-method settings (`[methods.mgdl]`, `[methods.sgdl]`): the paper's figures come
    from values chosen per method (SPEC §3)."""

    mgdl: MethodSettings = MethodSettings()
    sgdl: MethodSettings = MethodSettings()

    def of(self, method: str) -> MethodSettings:
        return getattr(self, method, MethodSettings())


@dataclasses.dataclass(frozen=True)
class InputsConfig:
    """The files a run read, pinned when it started (written by the runner, not by hand):
    `resume`, `grow` and `load_result` read the image from `image` and refuse when its
    content no longer has `image_sha256`. A new run pins its inputs afresh."""

    image: str | None = None  # absolute path of the image file, or "builtin:<name>"
    image_sha256: str | None = None  # of the file's bytes; of a built-in's pixels
    image_version: str | None = None  # built-in images: the scikit-image that shipped it
    mask: str | None = None  # inpainting: the mask file (absolute path) and its SHA-256
    mask_sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class StudySection:
    """The GD studies' own fields (`command = "lr-sweep"` or `"spectrum"`)."""

    methods: tuple[str, ...] = ("mgdl", "sgdl")
    learning_rates: tuple[float, ...] = (0.05,)
    interval: int = 500
    dense_max: int = 4000
    density: int = 0  # spectrum: SLQ probes of the Hessian's density and trace (0: none)

    def __post_init__(self):
        bad = [m for m in self.methods if m not in STUDY_METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown method(s) {bad or list(self.methods)}; choose from "
                             f"{', '.join(STUDY_METHODS)}")
        if not self.learning_rates:
            raise ValueError("learning_rates must name at least one rate")
        for lr in self.learning_rates:
            _finite("learning rate", lr, positive=True)
        if self.interval < 1:
            raise ValueError(f"interval must be at least 1, got {self.interval}")
        if self.density < 0 or self.density == 1:
            raise ValueError(f"density takes 0 (none) or at least 2 probes, got {self.density}")
        if self.dense_max < 1:
            raise ValueError(f"dense_max must be at least 1, got {self.dense_max}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole run: what `mgdl run CONFIG.toml` executes and every run directory stores."""

    command: str = "fit"
    problem: ProblemConfig = ProblemConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    study: StudySection = StudySection()
    methods: MethodsConfig = MethodsConfig()
    x64: bool = False
    # what the run read; not part of what a run is (two runs of one config are equal)
    inputs: InputsConfig = dataclasses.field(default=InputsConfig(), compare=False)

    def __post_init__(self):
        if self.command not in COMMANDS:
            raise ValueError(f"unknown command {self.command!r}; choose one of {COMMANDS}")
        from multigrade.experiments import tasks

        task = tasks.get(self.problem.task)
        if self.is_study:
            if not task.studies:
                raise ValueError(f"the {self.command} study runs on "
                                 f"{', '.join(tasks.names(studies=True))}, not {task.name}")
            if self.train.epochs % self.train.record_every:
                raise ValueError(f"a study's train.epochs ({self.train.epochs}) must be a "
                                 f"multiple of train.record_every ({self.train.record_every})")
            if self.train.select != "none":
                raise ValueError(f"the {self.command} study trains fixed budgets: "
                                 f"train.select must be none, got {self.train.select!r}")
            if self.train.watches_spectrum or self.train.min_gain is not None \
                    or self.model.baselines or self.train.coarse or self.train.grade_epochs \
                    or self.train.schedule != "constant" or self.train.batch is not None:
                raise ValueError(f"the {self.command} study sets its own rates and grades: "
                                 "lr auto, eig_stop, min_gain, schedule, coarse, batch, "
                                 "grade_epochs and baselines are for fit and compare")
            if self.methods != MethodsConfig():
                raise ValueError(f"the {self.command} study sets its own rates: per-method "
                                 "settings ([methods]) are for fit and compare")
            rates, methods = self.study.learning_rates, self.study.methods
            if self.command == "spectrum" and len(rates) not in (1, len(methods)):
                raise ValueError(f"the spectrum study takes one learning rate or one per "
                                 f"method ({len(methods)}), got {len(rates)}")
            if self.command == "spectrum" and self.study.interval % self.train.record_every:
                raise ValueError(f"study.interval ({self.study.interval}) must be a multiple "
                                 f"of train.record_every ({self.train.record_every})")

        if self.train.select not in task.selections and not self.is_study:
            if not task.restoration:
                raise ValueError(f"train.select chooses epochs without the clean image in "
                                 f"restoration ({', '.join(tasks.names(restoration=True))}), "
                                 f"not {task.name}")
            raise ValueError(f"{task.name} takes select = "
                             f"{', '.join(repr(s) for s in task.selections)}, not "
                             f"{self.train.select!r}" + (" (SURE estimates the error of a "
                                                        "denoiser)" if self.train.select ==
                                                        "sure" else ""))

        if self.train.min_gain is not None and not self.is_study:
            if self.model.method != "mgdl" and self.command == "fit":
                raise ValueError(f"adaptive grades (--grades auto) add MGDL grades; method "
                                 f"{self.model.method} has one grade")
            if not task.adaptive:
                raise ValueError("adaptive grades (--grades auto) compare validation PSNR, "
                                 "which restoration has not: there --select chooses grades")
        if self.train.coarse:
            self._check_coarse()
        if self.train.grade_epochs:
            self._check_grade_epochs()
        if self.train.batch is not None and not self.is_study:
            self._check_batch()
        if self.model.baselines and self.command != "compare":
            raise ValueError("baselines are trained beside MGDL and SGDL by compare")

    def _check_batch(self) -> None:
        from multigrade.experiments import tasks

        if not tasks.get(self.problem.task).batches:
            raise ValueError(f"mini-batches (train.batch) need a pixel-wise degradation: "
                             f"{self.problem.task}'s couples every pixel's neighbourhood")
        if self.train.select == "sure":
            raise ValueError("mini-batches (train.batch) and --select sure: SURE's "
                             "divergence follows full-batch training")

    def _check_grade_epochs(self) -> None:
        n = len(self.train.grade_epochs)
        if self.model.method != "mgdl" and self.command == "fit":
            raise ValueError(f"grade_epochs are MGDL's; method {self.model.method} has one "
                             "grade of train.epochs")
        if n > self.model.grades:
            raise ValueError(f"train.grade_epochs gives {n} budgets for {self.model.grades} "
                             "grades")

    def _check_coarse(self) -> None:
        from multigrade.experiments import tasks

        t = self.train
        if not tasks.get(self.problem.task).coarsens:
            raise ValueError(f"coarse grades (train.coarse) need a degradation that restricts "
                             f"to a coarser grid ({', '.join(tasks.names(coarsens=True))}), "
                             f"not {self.problem.task}")
        if self.model.method != "mgdl" and self.command == "fit":
            raise ValueError(f"coarse grades (train.coarse) are MGDL's; method "
                             f"{self.model.method} has one grade")
        if len(t.coarse) >= self.model.grades:
            raise ValueError(f"train.coarse gives {len(t.coarse)} factors for "
                             f"{self.model.grades} grades: the last grade fits the image's "
                             "own grid")
        if t.select != "none":
            raise ValueError("coarse grades and --select: selection needs one grid for "
                             "every grade")

    @property
    def is_study(self) -> bool:
        return self.command in ("lr-sweep", "spectrum")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def for_method(self, method: str) -> RunConfig:
        """This config as `method` trains it: its `[methods.<method>]` values in place of
        the shared ones; of the per-method tables only that method's source is kept."""
        own = self.methods.of(method)
        if own.empty:
            return self
        problem = {k: v for k, v in (("beta", own.beta), ("lam", own.lam)) if v is not None}
        train = {} if own.lr is None else {"lr": own.lr}
        data = {**self.to_dict(), "methods": {method: {"source": own.source}}}
        data = _merge(data, {"problem": problem, "train": train})
        return dataclasses.replace(from_dict(data), inputs=self.inputs)

    def replace(self, **sections) -> RunConfig:
        """A copy with some fields of some sections changed: `replace(train={"lr": 0.1})`."""
        return from_dict(_merge(self.to_dict(), sections))


def _merge(base: dict, new: Mapping) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), dict) else v
    return out


def _check_type(where: str, value, hint) -> object:
    """`value` if it fits the annotation `hint` (ints are accepted for floats)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_check_type(f"{where}[{i}]", v, item) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        return None if value is None else _check_type(where, value, options[0])
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise TypeError(f"no type check for {hint!r}")
    if not ok:
        want = {bool: "true or false", int: "an integer", float: "a number",
                str: "a string"}[hint]
        raise ValueError(f"{where} must be {want}, got {value!r}")
    return float(value) if hint is float else value


def _section(cls, data, where: str):
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            raise ValueError(f"unknown key {name!r}; {where or 'the top level'} has: "
                             f"{', '.join(known)}")
        hint = hints[key]
        if hint is typing.Any:  # read by the dataclass itself (`ProblemConfig.options`)
            kwargs[key] = value
        elif dataclasses.is_dataclass(hint):
            kwargs[key] = _section(hint, value, name)
        else:
            kwargs[key] = _check_type(name, value, hint)
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{where}: {e}" if where else str(e)) from None


def from_dict(data: Mapping) -> RunConfig:
    """A validated `RunConfig` from a nested dict (as read from TOML)."""
    return _section(RunConfig, data, "")


def load_config(path: str | os.PathLike) -> RunConfig:
    """Reads and validates a `config.toml`; every error names the file and the key."""
    from multigrade import runs

    path = Path(path)
    if path.is_dir():
        path = path / runs.CONFIG
    if not path.is_file():
        raise ValueError(f"no config file at {path}")
    try:
        data = runs.read_toml(path)
        if not data:
            raise ValueError("the file is empty: a config names at least its command (e.g. "
                             "command = \"fit\"); `mgdl fit ... --out DIR` writes a full one")
        return from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def save_config(path: str | os.PathLike, cfg: RunConfig) -> None:
    """Writes `cfg` as a TOML config that `load_config` (and `mgdl run`) read back."""
    from multigrade import runs

    runs.write_toml(path, cfg.to_dict())


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """`["train.lr=0.1", "problem.image=moon"]` on top of `cfg` (values in TOML syntax;
    a bare word is a string)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    data = cfg.to_dict()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes SECTION.KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        *path, last = key.strip().split(".")
        node = data
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"unknown key {key.strip()!r} in --set")
            node = node[part]
        node[last] = value
    return from_dict(data)
