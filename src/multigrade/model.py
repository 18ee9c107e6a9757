"""Multi-grade (stair-shaped) networks; SGDL is the one-grade case.

Grade k is a shallow network g_k = A_k H_k(φ_{k-1}) + c_k whose input is the last hidden
activation φ_{k-1} of grade k-1 (φ_0 = x). The model predicts Σ_k s_k g_k(φ_{k-1}), with
s_k = 1 for regression and the paper's residual scale for restoration (SPEC §2.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import jax.random as jr

from multigrade._types import Array, Float, PRNGKeyArray
from multigrade.nn import INITS, Layer, affine, hidden_features, init_mlp


class GradeParams(NamedTuple):
    """The trainable parameters of one grade: hidden block H_k and linear head (A_k, c_k)."""

    hidden: list[Layer]
    head: Layer


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
    """

    grades: tuple[tuple[int, ...], ...]
    out_dim: int = 1
    init: str = "glorot"
    name: str = "mgdl"
    shared_grade_key: bool = False

    def __post_init__(self):
        grades = tuple(tuple(int(w) for w in g) for g in self.grades)
        object.__setattr__(self, "grades", grades)
        if not grades:
            raise ValueError("a model needs at least one grade")
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

    def layer_sizes(self, grade: int, in_dim: int) -> list[int]:
        """Widths of grade `grade` (0-based) from its input to its output."""
        first = in_dim if grade == 0 else self.grades[grade - 1][-1]
        return [first, *self.grades[grade], self.out_dim]

    def init_grade(self, key: PRNGKeyArray, grade: int, in_dim: int) -> GradeParams:
        layers = init_mlp(key, self.layer_sizes(grade, in_dim), init=self.init)
        return GradeParams(layers[:-1], layers[-1])

    def grade_key(self, key: PRNGKeyArray, grade: int) -> PRNGKeyArray:
        """The initialisation key of a grade: stable whatever the number of grades."""
        return jr.fold_in(key, 0 if self.shared_grade_key else grade)

    def init_params(self, key: PRNGKeyArray, in_dim: int) -> list[GradeParams]:
        """Initial parameters of every grade (what `fit` uses, grade by grade)."""
        return [
            self.init_grade(self.grade_key(key, k), k, in_dim) for k in range(self.num_grades)
        ]

    def describe(self) -> dict:
        return {"name": self.name, "grades": [list(g) for g in self.grades],
                "out_dim": self.out_dim, "init": self.init,
                "shared_grade_key": self.shared_grade_key}

    # The model interface `fit` uses (shared with `MultiScale`).
    @staticmethod
    def grade_output(params: GradeParams, x: Float[Array, "n d"]) -> Float[Array, "n m"]:
        return grade_output(params, x)

    @staticmethod
    def grade_features(params: GradeParams, x: Float[Array, "n d"]) -> Float[Array, "n h"]:
        return grade_features(params, x)

    def predict(self, params, x, scales=None):
        return predict(params, x, scales)


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
         name: str = "mgdl", shared_grade_key: bool = False) -> MultiGrade:
    """A multi-grade model, e.g. `mgdl([[128, 128]] * 4)`."""
    return MultiGrade(tuple(tuple(g) for g in grades), out_dim, init, name, shared_grade_key)


def sgdl(widths: Sequence[int], *, out_dim: int = 1, init: str = "glorot",
         name: str = "sgdl") -> MultiGrade:
    """A single-grade (end-to-end) model, e.g. `sgdl([128] * 8)`."""
    return MultiGrade((tuple(widths),), out_dim, init, name)


def grade_features(params: GradeParams, x: Float[Array, "n d"]) -> Float[Array, "n h"]:
    """φ_k = H_k(φ_{k-1}): what grade k passes to grade k+1."""
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


