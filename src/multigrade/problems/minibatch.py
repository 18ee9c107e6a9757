"""Random mini-batches of samples: a grade that takes each step on a few pixels.

A problem whose loss is a sum of per-sample terms, each reading a sample and a fixed
stencil of neighbours (a pixel, and for restoration its lower and right neighbours: the
forward differences of the TV split), can be trained on a random batch of `size` anchor
samples per step: the network is evaluated at the batch's stencils only, the auxiliary
state is updated at the anchors only, and the step follows the gradient of

    L_B(θ) = (n / size) · Σ_{j=1..size} t_{a_j}(θ),   a_j ~ uniform on the n samples,

drawn with replacement. Every draw is an unbiased estimate of the full loss Σ_i t_i, so
the step's gradient is an unbiased estimate of the full epoch's (the auxiliary update at
an anchor reads only that anchor's stencil, so it is the full epoch's update there). One
"epoch" of a mini-batch grade is one such step; its records measure the full problem.

A problem offers mini-batches by three methods (`Restoration` and `Regression` have them):

- `stencil(anchors) -> (size, s)` sample indices: each anchor and its neighbours;
- `aux_at(aux, anchors, pred)`: the auxiliary update at the anchors from the prediction
  `pred` `(size, s, out)` at their stencils;
- `loss_at(pred, aux, anchors)`: Σ over the anchors of their terms t_a.

An anchor is a sample unless the problem says otherwise with `batch_units` (how many units
a batch draws from): a deblurring's anchors are tiles of pixels, each with its window
(`problems.tiles`), and t_a is then the tile's share of the loss.
"""

from __future__ import annotations

import dataclasses
import functools
import typing

import jax
import jax.numpy as jnp
import jax.random as jr

from multigrade._types import Array, PRNGKeyArray, Scalar


@functools.partial(jax.tree_util.register_dataclass, data_fields=["problem", "key"],
                   meta_fields=["size"])
@typing.no_type_check  # JAX rebuilds it with placeholders while lowering
@dataclasses.dataclass(frozen=True)
class MiniBatch:
    """`problem`, trained on `size` random anchor samples per step (drawn from `key`
    folded with the step's index, so a resumed run draws the batches it would have).

    Everything else (inputs, metrics, records, freezing) is `problem`'s: a `MiniBatch` is
    a `Problem`, and `fit` takes it wherever it takes one, e.g. for the last grades
    `[p, p, MiniBatch(p, 4096, key), MiniBatch(p, 4096, key)]`.
    """

    problem: typing.Any
    key: PRNGKeyArray
    size: int

    def __post_init__(self):
        missing = [m for m in ("stencil", "aux_at", "loss_at")
                   if not callable(getattr(self.problem, m, None))]
        if missing:
            raise ValueError(f"{type(self.problem).__name__} has no mini-batch loss "
                             f"(it lacks {', '.join(missing)}); see multigrade.problems."
                             "minibatch")
        if isinstance(self.problem, MiniBatch):
            raise ValueError("a mini-batch of a mini-batch: give the problem itself")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"a mini-batch size must be a positive integer, got {self.size!r}")

    def __getattr__(self, name):  # the full problem's interface
        if name in ("problem", "key", "size") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.problem, name)

    @property
    def samples(self) -> int:
        """n, the units a batch is drawn from (`units`)."""
        return units(self.problem)

    def describe(self) -> dict:
        return {**self.problem.describe(), "batch": self.size}

    def draw(self, step) -> tuple[Array, Array]:
        """`(anchors (size,), stencil (size, s))` of step `step` (an integer array)."""
        anchors = jr.randint(jr.fold_in(self.key, step), (self.size,), 0, self.samples)
        return anchors, self.problem.stencil(anchors)

    def batch_loss(self, pred: Array, aux, anchors: Array) -> Scalar:
        """L_B: the anchors' terms scaled by n / size (an unbiased estimate of the loss)."""
        return self.samples / self.size * self.problem.loss_at(pred, aux, anchors)


def minibatch(problem, size: int | float, key: PRNGKeyArray) -> MiniBatch:
    """`problem` trained on random mini-batches: `size` anchors per step, or a fraction of
    the units (samples, or a blur's tiles: `units`) when `size` is a float in (0, 1]."""
    n = units(problem)
    if isinstance(size, float):
        if not 0 < size <= 1:
            raise ValueError(f"a mini-batch fraction must be in (0, 1], got {size}")
        size = max(1, round(size * n))
    batch = MiniBatch(problem, key, size)
    problem.stencil(jnp.zeros((1,), jnp.int32))  # a problem may refuse mini-batches
    return batch


def units(problem) -> int:
    """How many units a batch of `problem` draws from: its `batch_units` where it has
    them, else its training samples."""
    n = getattr(problem, "batch_units", None)
    return int(problem.inputs["train"].shape[0] if n is None else n)


def unbatched(problem):
    """The full problem behind a `MiniBatch` (the problem itself otherwise)."""
    return problem.problem if isinstance(problem, MiniBatch) else problem
