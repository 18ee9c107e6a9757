"""Multi-grade (stair-shaped) networks; SGDL is the one-grade case.

Grade k is a shallow network g_k = A_k H_k(φ_{k-1}) + c_k whose input is the last hidden
activation φ_{k-1} of grade k-1 (φ_0 = x). The model predicts Σ_k s_k g_k(φ_{k-1}), with
s_k = 1 for regression and the paper's residual scale for restoration (SPEC §2.2).

Each grade has an architecture (`ARCHS`): the paper's ReLU block, a random-Fourier-feature
block (Tancik et al. 2020: fixed γ(x) = [cos 2πxB, sin 2πxB], B ~ N(0, σ²), then ReLU
layers) or a SIREN block (Sitzmann et al. 2020: sine layers sin(ω₀·(xW + b))). The kind of
a grade's parameter tuple (`GradeParams`, `FourierParams`, `SirenParams`) says how to
apply it, so the training loop is the same for all of them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from multigrade._types import Array, Float, PRNGKeyArray
from multigrade.nn import (
    INITS,
    Layer,
    affine,
    fourier_features,
    hidden_features,
    init_mlp,
    init_siren,
    sine_features,
)

ARCHS: tuple[str, ...] = ("relu", "fourier", "siren")


class GradeParams(NamedTuple):
    """The trainable parameters of one grade: hidden block H_k and linear head (A_k, c_k)."""

    hidden: list[Layer]
    head: Layer


class FourierParams(NamedTuple):
    """A random-Fourier-feature grade: ReLU layers after the fixed encoding γ (B is not a
    parameter: the model draws it from its `fourier_seed`)."""

    hidden: list[Layer]
    head: Layer


class SirenParams(NamedTuple):
    """A SIREN grade: sine layers and a linear head."""

    hidden: list[Layer]
    head: Layer


class SirenInputParams(SirenParams):
    """A SIREN grade on the input coordinates: they are mapped from [0, 1] to [−1, 1]
    first, the range SIREN's initialisation is made for."""


AnyGrade = GradeParams | FourierParams | SirenParams


@functools.lru_cache(maxsize=32)
def fourier_matrix(seed: int, in_dim: int, features: int, sigma: float) -> np.ndarray:
    """B of the Fourier features, `(in_dim, features)`, entries N(0, σ²): the same
    directions for every σ of a seed, so a σ grid compares scales only."""
    return sigma * np.random.default_rng(seed).standard_normal((in_dim, features))


@dataclasses.dataclass(frozen=True)
class MultiGrade:
    """Architecture of a multi-grade network.

    Attributes:
        grades: hidden widths of each grade, e.g. `((128, 128),) * 4` for the paper's
            regression MGDL; one grade `((128,) * 8,)` is SGDL.
        out_dim: width of every grade's output (1 for gray images).
        init: `"glorot"` (paper Section 4) or `"he"` (Sections 5-6).
        name: a label for tables and run directories.
        shared_grade_key: initialise every grade from the same key, as the paper's code
            does (then grade k's hidden layers after the first start equal to grade 1's);
            by default grade k draws from `fold_in(key, k)`, independent draws.
        archs: each grade's architecture, one of `ARCHS` (default: every grade ReLU); one
            name applies to every grade.
        fourier_sigma, fourier_features, fourier_seed: the Fourier grades' σ of B, number
            of frequencies m (the encoding has 2m features) and the seed B is drawn from.
        omega0: the SIREN grades' ω₀ (30, as in the SIREN paper).
    """

    grades: tuple[tuple[int, ...], ...]
    out_dim: int = 1
    init: str = "glorot"
    name: str = "mgdl"
    shared_grade_key: bool = False
    archs: tuple[str, ...] = ()
    fourier_sigma: float = 10.0
    fourier_features: int = 256
    fourier_seed: int = 0
    omega0: float = 30.0

    def __post_init__(self):
        grades = tuple(tuple(int(w) for w in g) for g in self.grades)
        object.__setattr__(self, "grades", grades)
        archs = tuple(self.archs)
        archs = archs * len(grades) if len(archs) == 1 else archs or ("relu",) * len(grades)
        object.__setattr__(self, "archs", archs)
        object.__setattr__(self, "fourier_sigma", float(self.fourier_sigma))
        object.__setattr__(self, "omega0", float(self.omega0))
        if not grades:
            raise ValueError("a model needs at least one grade")
        if len(archs) != len(grades):
            raise ValueError(f"{len(archs)} architectures given for {len(grades)} grades")
        bad = [a for a in archs if a not in ARCHS]
        if bad:
            raise ValueError(f"unknown architecture(s) {bad}; choose from {ARCHS}")
        if not (self.fourier_sigma > 0 and self.fourier_features >= 1 and self.omega0 > 0):
            raise ValueError("fourier_sigma and omega0 must be positive and "
                             "fourier_features at least 1")
        for k, widths in enumerate(grades):
            if not widths:
                raise ValueError(f"grade {k + 1} has no hidden layer")
            if min(widths) < 1:
                raise ValueError(f"grade {k + 1} has a hidden width below 1: {widths}")
        if self.out_dim < 1:
            raise ValueError(f"out_dim must be at least 1, got {self.out_dim}")
        if self.init not in INITS:
            raise ValueError(f"unknown initialiser {self.init!r}; choose one of {INITS}")

    @property
    def num_grades(self) -> int:
        return len(self.grades)

    @property
    def depth(self) -> int:
        """Total number of hidden layers."""
        return sum(len(g) for g in self.grades)

    def first(self, k: int) -> MultiGrade:
        """The model of this one's first `k` grades, each with its architecture (a run
        that stopped adding grades early, replayed)."""
        return dataclasses.replace(self, grades=self.grades[:k], archs=self.archs[:k])

    def grade_in_dim(self, grade: int, in_dim: int) -> int:
        """The width of grade `grade`'s input (0-based): x's, or the previous grade's."""
        return in_dim if grade == 0 else self.grades[grade - 1][-1]

    def layer_sizes(self, grade: int, in_dim: int) -> list[int]:
        """Widths of grade `grade` (0-based) from its first layer's input to its output
        (a Fourier grade's first layer reads the 2m features of the encoding)."""
        first = self.grade_in_dim(grade, in_dim)
        if self.archs[grade] == "fourier":
            first = 2 * self.fourier_features
        return [first, *self.grades[grade], self.out_dim]

    def init_grade(self, key: PRNGKeyArray, grade: int, in_dim: int):
        sizes, arch = self.layer_sizes(grade, in_dim), self.archs[grade]
        if arch == "siren":
            layers = init_siren(key, sizes, omega0=self.omega0, first=grade == 0)
            kind = SirenInputParams if grade == 0 else SirenParams
            return kind(layers[:-1], layers[-1])
        layers = init_mlp(key, sizes, init=self.init)
        return (FourierParams if arch == "fourier" else GradeParams)(layers[:-1], layers[-1])

    def grade_key(self, key: PRNGKeyArray, grade: int) -> PRNGKeyArray:
        """The initialisation key of a grade: stable whatever the number of grades."""
        return jr.fold_in(key, 0 if self.shared_grade_key else grade)

    def init_params(self, key: PRNGKeyArray, in_dim: int) -> list[AnyGrade]:
        """Initial parameters of every grade (what `fit` uses, grade by grade)."""
        return [
            self.init_grade(self.grade_key(key, k), k, in_dim) for k in range(self.num_grades)
        ]

    def describe(self) -> dict:
        out = {"name": self.name, "grades": [list(g) for g in self.grades],
               "out_dim": self.out_dim, "init": self.init,
               "shared_grade_key": self.shared_grade_key, "archs": list(self.archs)}
        if "fourier" in self.archs:
            out.update(fourier_sigma=self.fourier_sigma, fourier_features=self.fourier_features,
                       fourier_seed=self.fourier_seed)
        if "siren" in self.archs:
            out["omega0"] = self.omega0
        return out

    # The model interface `fit` uses (shared with `MultiScale`).
    def grade_features(self, params, x: Float[Array, "n d"]) -> Float[Array, "n h"]:
        """φ_k: the grade's last hidden activations, by the kind of its parameters."""
        if isinstance(params, SirenParams):
            if isinstance(params, SirenInputParams):
                x = 2.0 * x - 1.0
            return sine_features(params.hidden, x, self.omega0)
        if isinstance(params, FourierParams):
            B = fourier_matrix(self.fourier_seed, x.shape[-1], self.fourier_features,
                               self.fourier_sigma)
            x = fourier_features(x, jnp.asarray(B, x.dtype))
        return hidden_features(params.hidden, x)

    def grade_output(self, params, x: Float[Array, "n d"]) -> Float[Array, "n m"]:
        return affine(params.head, self.grade_features(params, x))

    def predict(self, params, x, scales=None):
        """Σ_k s_k g_k(φ_{k-1}) (s_k = 1 when `scales` is None)."""
        scales = [1.0] * len(params) if scales is None else scales
        out = None
        for p, s in zip(params, scales, strict=True):
            phi = self.grade_features(p, x)
            g = s * affine(p.head, phi)
            out = g if out is None else out + g
            x = phi
        return out


@dataclasses.dataclass(frozen=True)
class MultiScale:
    """Multi-scale deep learning (MSDL): Σ_i N_i(c_i·x), sub-networks on scaled inputs,
    trained end-to-end as one grade (the comparison model of the paper code's later
    version: 4 sub-networks [1, 8, 8, 8, 8, 1] on inputs scaled by 1, 2, 4, 8)."""

    input_scales: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    widths: tuple[int, ...] = (8, 8, 8, 8)
    out_dim: int = 1
    init: str = "he"
    name: str = "msdl"

    def __post_init__(self):
        object.__setattr__(self, "input_scales", tuple(float(c) for c in self.input_scales))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not self.input_scales or not self.widths or min(self.widths) < 1:
            raise ValueError("MSDL needs at least one input scale and positive widths")
        if self.init not in INITS:
            raise ValueError(f"unknown initialiser {self.init!r}; choose one of {INITS}")

    num_grades = 1

    @property
    def depth(self) -> int:
        return len(self.widths)

    @property
    def grades(self) -> tuple[tuple[int, ...], ...]:
        return (self.widths,)

    def grade_key(self, key: PRNGKeyArray, grade: int) -> PRNGKeyArray:
        return jr.fold_in(key, grade)

    def init_grade(self, key: PRNGKeyArray, grade: int, in_dim: int) -> list[list[Layer]]:
        keys = jr.split(key, len(self.input_scales))
        return [init_mlp(k, [in_dim, *self.widths, self.out_dim], init=self.init) for k in keys]

    def init_params(self, key: PRNGKeyArray, in_dim: int) -> list[list[list[Layer]]]:
        return [self.init_grade(self.grade_key(key, 0), 0, in_dim)]

    def grade_output(self, params, x):
        out = None
        for c, net in zip(self.input_scales, params, strict=True):
            y = affine(net[-1], hidden_features(net[:-1], c * x))
            out = y if out is None else out + y
        return out

    def grade_features(self, params, x):
        return x  # one grade: nothing is passed on

    def predict(self, params, x, scales=None):
        scale = 1.0 if scales is None else scales[0]
        return scale * self.grade_output(params[0], x)

    def describe(self) -> dict:
        return {"name": self.name, "kind": "msdl", "input_scales": list(self.input_scales),
                "widths": list(self.widths), "out_dim": self.out_dim, "init": self.init}


@runtime_checkable
class GradeModel(Protocol):
    """The interface `fit` trains (implemented by `MultiGrade` and `MultiScale`): a model
    is a sequence of grades, each with its own parameters."""

    name: str
    out_dim: int

    @property
    def num_grades(self) -> int: ...

    def grade_key(self, key: PRNGKeyArray, grade: int) -> PRNGKeyArray:
        """The initialisation key of grade `grade` (0-based): stable whatever the count."""

    def init_grade(self, key: PRNGKeyArray, grade: int, in_dim: int) -> Any:
        """Initial parameters of grade `grade` (0-based)."""

    def grade_output(self, params: Any, x: Array) -> Array:
        """The grade's output g_k on its input (φ_{k-1}, or x for the first grade)."""

    def grade_features(self, params: Any, x: Array) -> Array:
        """What the grade passes to the next one (φ_k)."""

    def predict(self, params: Any, x: Array, scales: Any = None) -> Array:
        """The whole model's prediction at inputs x."""

    def describe(self) -> dict:
        """A JSON-able description."""


Model = MultiGrade | MultiScale  # what fit trains (both are GradeModels)


def msdl(input_scales=(1, 2, 4, 8), widths=(8, 8, 8, 8), *, out_dim: int = 1,
         init: str = "he", name: str = "msdl") -> MultiScale:
    """A multi-scale model, e.g. the paper's `msdl((1, 2, 4, 8), (8, 8, 8, 8))`."""
    return MultiScale(tuple(input_scales), tuple(widths), out_dim, init, name)


def mgdl(grades: Sequence[Sequence[int]], *, out_dim: int = 1, init: str = "glorot",
         name: str = "mgdl", shared_grade_key: bool = False, **arch) -> MultiGrade:
    """A multi-grade model, e.g. `mgdl([[128, 128]] * 4)`, or with a Fourier-feature first
    grade `mgdl([[128, 128]] * 4, archs=("fourier", "relu", "relu", "relu"))` (`arch`:
    the `MultiGrade` fields `archs`, `fourier_*`, `omega0`)."""
    return MultiGrade(tuple(tuple(g) for g in grades), out_dim, init, name, shared_grade_key,
                      **arch)


def sgdl(widths: Sequence[int], *, out_dim: int = 1, init: str = "glorot",
         name: str = "sgdl", **arch) -> MultiGrade:
    """A single-grade (end-to-end) model, e.g. `sgdl([128] * 8)`; `sgdl([256] * 4,
    archs=("siren",))` is a SIREN, `archs=("fourier",)` a Fourier-feature network."""
    return MultiGrade((tuple(widths),), out_dim, init, name, **arch)


def ffn(widths: Sequence[int], *, sigma: float = 10.0, features: int = 256, seed: int = 0,
        out_dim: int = 1, init: str = "glorot", name: str = "ffn") -> MultiGrade:
    """A random-Fourier-feature network (Tancik et al. 2020), trained end to end."""
    return sgdl(widths, out_dim=out_dim, init=init, name=name, archs=("fourier",),
                fourier_sigma=sigma, fourier_features=features, fourier_seed=seed)


def siren(widths: Sequence[int], *, omega0: float = 30.0, out_dim: int = 1,
          name: str = "siren") -> MultiGrade:
    """A SIREN (Sitzmann et al. 2020), trained end to end."""
    return sgdl(widths, out_dim=out_dim, name=name, archs=("siren",), omega0=omega0)


def grade_features(params: GradeParams, x: Float[Array, "n d"]) -> Float[Array, "n h"]:
    """φ_k = H_k(φ_{k-1}): what grade k passes to grade k+1, for a ReLU grade. A Fourier or
    SIREN grade needs its model's σ, seed or ω₀: `MultiGrade.grade_features` (refused
    here, never computed as if it were ReLU)."""
    if not isinstance(params, GradeParams):
        raise TypeError(f"a {type(params).__name__} grade is evaluated by its model "
                        "(model.grade_features / grade_output / predict), which knows its "
                        "σ, seed or ω₀; the module functions take ReLU grades")
    return hidden_features(params.hidden, x)


def grade_output(params: GradeParams, x: Float[Array, "n d"]) -> Float[Array, "n m"]:
    """g_k(φ_{k-1}) = A_k H_k(φ_{k-1}) + c_k."""
    return affine(params.head, grade_features(params, x))


def blocked(fn, x: Float[Array, "n d"], block: int | None) -> Array:
    """`fn(x)` evaluated on row blocks of `block` samples (`lax.map`), for row-wise `fn`.

    Full-batch training on many samples runs faster in blocks that stay in the CPU's cache
    (benchmarks/throughput.py: 65 536 samples, 93 → 78 ms per epoch). The result, and its
    gradient, are those of `fn(x)`; the last block is zero-padded and the padding dropped.
    """
    n = x.shape[0]
    if block is None or n <= block:
        return fn(x)
    num = -(-n // block)
    xp = jnp.pad(x, ((0, num * block - n), (0, 0)))
    out = jax.lax.map(fn, xp.reshape(num, block, x.shape[1]))
    return out.reshape(num * block, *out.shape[2:])[:n]


def predict(params: Sequence[GradeParams], x: Float[Array, "n d"],
            scales: Sequence[float] | None = None) -> Float[Array, "n m"]:
    """The stair network's prediction Σ_k s_k g_k(φ_{k-1}) (s_k = 1 when `scales` is None)."""
    scales = [1.0] * len(params) if scales is None else scales
    out = None
    for p, s in zip(params, scales, strict=True):
        phi = grade_features(p, x)
        g = s * affine(p.head, phi)
        out = g if out is None else out + g
        x = phi
    return out




def mlp_params(first: int, width: int, layers: int, out_dim: int) -> int:
    """Parameters of `layers` hidden layers of `width` units on `first` inputs, and a
    linear head of `out_dim` outputs."""
    return (first + 1) * width + (layers - 1) * (width + 1) * width + (width + 1) * out_dim


def matched_width(target: int, *, first: int, layers: int, out_dim: int = 1) -> int:
    """The hidden width whose `mlp_params` is closest to `target`."""
    if layers == 1:
        w = (target - out_dim) / (first + 1 + out_dim)
    else:  # (L-1)·w² + (first + L + out_dim)·w + out_dim = target
        a, b = layers - 1, first + layers + out_dim
        w = (-b + (b * b + 4 * a * (target - out_dim)) ** 0.5) / (2 * a)
    options = {max(1, int(w)), max(1, int(w) + 1)}
    return min(sorted(options), key=lambda v: abs(mlp_params(first, v, layers, out_dim) - target))
