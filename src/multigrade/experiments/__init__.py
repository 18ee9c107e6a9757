"""Configurations, presets and the MGDL-vs-SGDL comparison runner.

`run_*` functions return in-memory results; `runs` writes them, `cli` wires both.
"""

from __future__ import annotations

import dataclasses

import jax
import optax

from multigrade.model import MultiGrade, mgdl, sgdl
from multigrade.nn import INITS
from multigrade.train import FitResult, fit

METHODS = ("mgdl", "sgdl")


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

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}")
        for name in ("grades", "layers_per_grade", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, "
                                 f"got {getattr(self, name)}")
        if self.init not in INITS:
            raise ValueError(f"unknown initialiser {self.init!r}; choose one of {INITS}")

    def build(self, out_dim: int = 1) -> MultiGrade:
        if self.method == "mgdl":
            return mgdl([[self.width] * self.layers_per_grade] * self.grades,
                        out_dim=out_dim, init=self.init)
        return sgdl([self.width] * (self.grades * self.layers_per_grade),
                    out_dim=out_dim, init=self.init)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    `epochs` is the budget of each grade; SGDL gets the same number of epochs, so both
    methods do about the same arithmetic (each SGDL epoch is K times deeper), as in the
    paper. `optimizer` is `"gd"` (full-batch gradient descent, `optax.sgd`) or the name of
    any Optax optimiser (`adam`, `adamw`, `rmsprop`, ...).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 2000
    record_every: int = 10
    tol: float | None = None
    seed: int = 0

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.record_every < 1:
            raise ValueError(f"record-every must be at least 1, got {self.record_every}")
        if self.epochs % self.record_every:
            raise ValueError(f"epochs ({self.epochs}) must be a multiple of record-every "
                             f"({self.record_every})")
        make_optimizer(self.optimizer, self.lr)  # validates the name


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """`"gd"` → `optax.sgd(lr)`; otherwise the Optax optimiser of that name."""
    if name in ("gd", "sgd"):
        return optax.sgd(lr)
    factory = getattr(optax, name, None) if name.isidentifier() else None
    if factory is None or not callable(factory):
        raise ValueError(f"unknown optimiser {name!r}; use 'gd' or an Optax optimiser name "
                         "such as 'adam', 'adamw', 'rmsprop'")
    try:
        return factory(lr)
    except TypeError as e:
        raise ValueError(f"optax.{name} is not an optimiser taking a learning rate: {e}") from None


def run_fit(problem, model_cfg: ModelConfig, train_cfg: TrainConfig, *,
            progress: bool = True) -> FitResult:
    """Trains one model on `problem`."""
    model = model_cfg.build(problem.out_dim)
    return fit(model, problem, optimizer=make_optimizer(train_cfg.optimizer, train_cfg.lr),
               epochs=train_cfg.epochs, key=jax.random.key(train_cfg.seed),
               record_every=train_cfg.record_every, tol=train_cfg.tol, progress=progress)


def run_compare(problem, model_cfg: ModelConfig, train_cfg: TrainConfig, *,
                progress: bool = True) -> dict[str, FitResult]:
    """MGDL and SGDL of the same total depth, same data, optimiser and seed."""
    return {m: run_fit(problem, dataclasses.replace(model_cfg, method=m), train_cfg,
                       progress=progress) for m in METHODS}


def demo_configs() -> tuple[dict, ModelConfig, TrainConfig]:
    """The README's main job: MGDL (4 grades × 2 layers) vs SGDL (8 layers), width 128,
    Adam 1e-3, 2000 epochs per grade, on the built-in cameraman resized to 128 × 128.
    About two minutes on 2 CPU cores."""
    return ({"image": "camera", "size": 128}, ModelConfig(), TrainConfig())


def restoration_quick() -> tuple[ModelConfig, TrainConfig]:
    """The quick restoration preset (CPU minutes at 128 × 128): MGDL 4 grades × 3 hidden
    layers vs SGDL 12 hidden layers, width 128, Adam 1e-3 (the paper's default rate), 1000
    epochs per grade for both (the paper runs 20 000)."""
    return ModelConfig(layers_per_grade=3), TrainConfig(epochs=1000)
