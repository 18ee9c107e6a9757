"""Fully connected ReLU networks as plain parameter pytrees.

A network is a list of `Layer(W, b)` with `W` of shape `(fan_in, fan_out)`, so a layer maps
`x @ W + b`. Hidden layers are followed by ReLU; the last layer of a grade (its head) is
linear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr

from multigrade._types import Array, Float, PRNGKeyArray, float_dtype

Init = Literal["glorot", "he"]
INITS: tuple[str, ...] = ("glorot", "he")


class Layer(NamedTuple):
    """One affine layer, `x @ W + b`."""

    W: Float[Array, "fan_in fan_out"]
    b: Float[Array, " fan_out"]


def init_layer(key: PRNGKeyArray, fan_in: int, fan_out: int, init: str = "glorot") -> Layer:
    """Initialises one layer.

    - `"glorot"`: W ~ N(0, 2 / (fan_in + fan_out)), b ~ N(0, 0.01²), the defaults of the
      paper's JAX code (Section 4 experiments).
    - `"he"`: W ~ N(0, 2 / fan_in), b = 0, used in the paper's GD studies (Sections 5-6).
    """
    w_key, b_key = jr.split(key)
    dtype = float_dtype()
    if init == "glorot":
        std = (2.0 / (fan_in + fan_out)) ** 0.5
        b = 0.01 * jr.normal(b_key, (fan_out,), dtype)
    elif init == "he":
        std = (2.0 / fan_in) ** 0.5
        b = jnp.zeros((fan_out,), dtype)
    else:
        raise ValueError(f"unknown initialiser {init!r}; choose one of {INITS}")
    return Layer(std * jr.normal(w_key, (fan_in, fan_out), dtype), b)


def init_mlp(key: PRNGKeyArray, sizes: Sequence[int], init: str = "glorot") -> list[Layer]:
    """Initialises an MLP with layer widths `sizes` (input first, output last)."""
    keys = jr.split(key, len(sizes) - 1)
    return [init_layer(k, m, n, init) for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def hidden_features(
    layers: Sequence[Layer], x: Float[Array, "n d"]
) -> Float[Array, "n h"]:
    """Applies `relu(x @ W + b)` for every layer: the last hidden activations."""
    for W, b in layers:
        x = jax.nn.relu(x @ W + b[None, :])
    return x


def affine(layer: Layer, x: Float[Array, "n d"]) -> Float[Array, "n m"]:
    """The linear head `x @ W + b`."""
    return x @ layer.W + layer.b[None, :]


def apply_mlp(params: Sequence[Layer], x: Float[Array, "n d"]) -> Float[Array, "n m"]:
    """A plain MLP: ReLU hidden layers, linear last layer."""
    return affine(params[-1], hidden_features(params[:-1], x))


def count_params(params) -> int:
    """Number of scalars in a pytree of arrays."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
