"""The one configuration of a run: `RunConfig` (problem, model, train, study, methods,
inputs), frozen dataclasses validated on construction; what a run directory's
`config.toml` holds. The file format, with every field and its default, is in
`experiments.configfile` (which reads and writes it); `experiments.optimizers` makes the
optimisers and schedules a config names."""

from __future__ import annotations

import dataclasses
import math
import typing

import optax

from multigrade.experiments.optimizers import (
    SCHEDULES,
    check_optimizer,
    injected_sgd,
    make_optimizer,
)
from multigrade.experiments.schema import merge, section
from multigrade.nn import INITS
from multigrade.train import TRY_RULES

COMMANDS = ("fit", "compare", "lr-sweep", "spectrum")
STUDY_METHODS = ("mgdl", "sgdl", "msdl")
METHODS = ("mgdl", "sgdl", "ffn", "siren")
BASELINES = ("ffn", "siren")
# The baselines' own papers' Adam rates (Tancik et al. 2020; Sitzmann et al. 2020).
BASELINE_LR = {"ffn": 1e-3, "siren": 1e-4}
SHARPNESS_EVERY = 100  # default epochs between λ_max estimates
MAX_SEED = 2**32 - 1

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
LAYERS_PER_GRADE = 2  # a model's hidden layers per grade where its task sets none


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
    return section(task.options, given, "options")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A model by its shape.

    MGDL has `grades` grades of `layers_per_grade` hidden layers. SGDL has the same total
    depth in one grade: `grades × layers_per_grade` hidden layers. Every hidden layer has
    `width` units.
    """

    method: str = "mgdl"
    grades: int = 4
    layers_per_grade: int | None = None  # in a RunConfig, the task's (`Task.model_defaults`)
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
            if getattr(self, name) is not None and getattr(self, name) < 1:
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
    def layers(self) -> int:
        """Hidden layers per grade: `layers_per_grade`, 2 where unset (a `RunConfig` sets it
        from its task: 3 for restoration, the paper's 4 × 3)."""
        return LAYERS_PER_GRADE if self.layers_per_grade is None else self.layers_per_grade

    @property
    def depth(self) -> int:
        return self.grades * self.layers

    def build(self, out_dim: int = 1):
        from multigrade.model import ffn, mgdl, sgdl, siren

        if self.method == "mgdl":
            return mgdl([[self.width] * self.layers] * self.grades,
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


def _one_of(name: str, value: str, supported) -> None:
    if value not in supported:
        raise ValueError(f"unknown {name} {value!r}; supported: {', '.join(supported)}")


def _positive_int(x) -> bool:
    """An int ≥ 1 (not a bool)."""
    return not isinstance(x, bool) and isinstance(x, int) and x >= 1


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
    batch_tile: int | None = None
    grade_epochs: tuple[int, ...] = ()
    grade_tries: tuple[int, ...] = ()
    try_rule: str = "loss"  # which try a grade of several keeps (`fit(try_rule=...)`)
    curriculum: tuple[int, ...] = ()
    curriculum_epochs: tuple[int, ...] = ()

    def __post_init__(self):
        from multigrade.selection import MODES

        check_optimizer(self.optimizer)
        for name in ("coarse", "grade_epochs", "grade_tries", "curriculum",
                     "curriculum_epochs"):
            for e in getattr(self, name):
                if not _positive_int(e):
                    raise ValueError(f"{name} must be positive integers, got {e!r}")
        _one_of("try_rule", self.try_rule, TRY_RULES)
        if self.batch is not None:
            _finite("batch", self.batch, positive=True, high=1.0)
        if self.batch_tile is not None and not _positive_int(self.batch_tile):
            raise ValueError(f"batch_tile must be a positive integer, got {self.batch_tile!r}")
        if len(self.curriculum_epochs) > len(self.curriculum):
            raise ValueError(f"train.curriculum_epochs gives {len(self.curriculum_epochs)} "
                             f"budgets for {len(self.curriculum)} coarse stages "
                             "(train.curriculum)")
        _one_of("schedule", self.schedule, SCHEDULES)
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
            return injected_sgd(self.lr)
        return make_optimizer(self.optimizer, self.lr, self.schedule,
                              None if self.schedule == "constant" else
                              self.epochs if epochs is None else epochs)

    def budgets(self, grades: int) -> list[int]:
        """Each of `grades` grades' epochs: `grade_epochs` for the first ones, `epochs`
        for the rest; a curriculum's coarse stages (`stages`) come on top."""
        own = list(self.grade_epochs[:grades])
        lead = sum(e for _, e in self.stages())
        return [e + lead for e in own + [self.epochs] * (grades - len(own))]

    def stages(self) -> list[tuple[int, int]]:
        """The curriculum's coarse stages, `(factor, epochs)` each: `curriculum_epochs`,
        then `epochs` for a stage without its own."""
        own = list(self.curriculum_epochs)
        return list(zip(self.curriculum, own + [self.epochs] * (len(self.curriculum)
                                                               - len(own))))

    def tries(self, grades: int) -> list[int]:
        """Each of `grades` grades' tries (`fit(tries=...)`): `grade_tries`, then 1s."""
        return [*self.grade_tries[:grades], *[1] * max(0, grades - len(self.grade_tries))]

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


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """One method's own settings in a comparison (or a fit of that method): each field
    left unset takes the shared value (`train.lr`, `problem.beta`, `problem.lam`, and the
    recipe: `train.epochs`, `schedule`, `batch`, `batch_tile`, MGDL's `coarse`,
    `grade_epochs` and `grade_tries`, SGDL's `curriculum` and `curriculum_epochs`), so
    that each method can run a recipe of its own (the fast scale)."""

    lr: float | None = None
    beta: float | None = None
    lam: float | None = None
    epochs: int | None = None
    schedule: str | None = None
    batch: float | None = None
    batch_tile: int | None = None
    coarse: tuple[int, ...] | None = None  # MGDL's (SGDL has one grade)
    grade_epochs: tuple[int, ...] | None = None  # MGDL's
    grade_tries: tuple[int, ...] | None = None  # MGDL's
    curriculum: tuple[int, ...] | None = None  # SGDL's (one network, coarse to fine)
    curriculum_epochs: tuple[int, ...] | None = None  # SGDL's
    source: str | None = None  # where these values come from (provenance)

    def __post_init__(self):
        for name in ("lr", "beta", "lam"):
            if getattr(self, name) is not None:
                _finite(name, getattr(self, name), positive=True)
        # the recipe's fields are checked as `train`'s (`RunConfig.for_method`)

    @property
    def problem(self) -> dict:
        """The `[problem]` fields these settings replace."""
        return {k: v for k, v in (("beta", self.beta), ("lam", self.lam)) if v is not None}

    @property
    def train(self) -> dict:
        """The `[train]` fields these settings replace."""
        return {k: getattr(self, k) for k in METHOD_TRAIN_FIELDS if getattr(self, k) is not None}

    @property
    def empty(self) -> bool:
        return not self.problem and not self.train


#: The `[train]` fields a method's settings can replace.
METHOD_TRAIN_FIELDS = ("lr", "epochs", "schedule", "batch", "batch_tile", "coarse",
                       "grade_epochs", "grade_tries", "curriculum", "curriculum_epochs")
#: The `[train]` fields that are MGDL's alone (SGDL trains one grade).
MGDL_TRAIN_FIELDS = ("coarse", "grade_epochs", "grade_tries")
#: The `[train]` fields of one network's coarse-to-fine curriculum (SGDL's in a comparison).
SGDL_TRAIN_FIELDS = ("curriculum", "curriculum_epochs")


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


def _with_task_defaults(model: ModelConfig, task) -> ModelConfig:
    """`model` with its unset fields at `task`'s defaults (`Task.model_defaults`)."""
    if model.layers_per_grade is not None:
        return model
    return dataclasses.replace(model, layers_per_grade=dict(task.model_defaults).get(
        "layers_per_grade", LAYERS_PER_GRADE))


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
        from multigrade.experiments.recipechecks import check_recipe

        task = tasks.get(self.problem.task)
        object.__setattr__(self, "model", _with_task_defaults(self.model, task))
        if self.is_study:
            self._check_study(task)

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
        check_recipe(self)
        if self.model.baselines and self.command != "compare":
            raise ValueError("baselines are trained beside MGDL and SGDL by compare")
        if not self.is_study:
            self._check_methods()


    def _check_study(self, task) -> None:
        """A GD study's config: a task it runs on, fixed budgets, its own rates and grades."""
        from multigrade.experiments import tasks

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
                or self.model.baselines or any(getattr(self.train, f) for f in
                                               MGDL_TRAIN_FIELDS + SGDL_TRAIN_FIELDS) \
                or self.train.schedule != "constant" or self.train.batch is not None \
                or self.train.batch_tile is not None:
            raise ValueError(f"the {self.command} study sets its own rates and grades: "
                             "lr auto, eig_stop, min_gain, schedule, coarse, batch, "
                             "batch_tile, grade_epochs, grade_tries, curriculum and baselines "
                             "are for fit "
                             "and compare")
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

    def _check_methods(self) -> None:
        """Each method's own settings make a valid config: checked now, not at the turn
        of that method (after another has trained)."""
        for method in ("mgdl", "sgdl") if self.command == "compare" else (self.model.method,):
            self.for_method(method)

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
        data = {**self.to_dict(), "methods": {method: {"source": own.source}}}
        data = merge(data, {"problem": own.problem, "train": own.train})
        if method != "mgdl":  # one grade: MGDL's coarse grids and grade budgets are not its
            if any(getattr(own, f) for f in MGDL_TRAIN_FIELDS):
                raise ValueError(f"methods.{method}: {', '.join(MGDL_TRAIN_FIELDS)} are "
                                 f"MGDL's; {method} trains one grade")
            data = merge(data, {"train": dict.fromkeys(MGDL_TRAIN_FIELDS, [])})
        elif any(getattr(own, f) for f in SGDL_TRAIN_FIELDS):
            raise ValueError(f"methods.mgdl: {', '.join(SGDL_TRAIN_FIELDS)} train one network "
                             "coarse to fine; MGDL's grades go coarse to fine with coarse")
        try:
            return dataclasses.replace(section(RunConfig, data, ""), inputs=self.inputs)
        except ValueError as e:
            raise ValueError(f"methods.{method}: {e}") from None

    def replace(self, **sections) -> RunConfig:
        """A copy with some fields of some sections changed: `replace(train={"lr": 0.1})`."""
        return section(RunConfig, merge(self.to_dict(), sections), "")
