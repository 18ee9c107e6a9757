"""Fully connected networks as plain parameter pytrees.

A network is a list of `Layer(W, b)` with `W` of shape `(fan_in, fan_out)`, so a layer maps
`x @ W + b`. Hidden layers are followed by ReLU (or, for SIREN, `sin(ω₀·(x @ W + b))`);
the last layer of a grade (its head) is linear. Random Fourier features (Tancik et al.
2020) are a fixed encoding in front of the first layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from multigrade._types import Array, Float, PRNGKeyArray, float_dtype

Init = Literal["glorot", "he"]
INITS: tuple[str, ...] = ("glorot", "he")


class Layer(NamedTuple):
    """One affine layer, `x @ W + b`."""

    W: Float[Array, "fan_in fan_out"]
    b: Float[Array, " fan_out"]


# jax.nn.initializers' truncated normal draws from N(0, 1) cut at ±2 and rescales by this
# constant (the standard deviation of that truncated draw), so the variance is as specified.
TRUNCATED_NORMAL_STD = 0.87962566103423978


def init_layer(key: PRNGKeyArray, fan_in: int, fan_out: int, *, init: str = "glorot") -> Layer:
    """Initialises one layer.

    - `"glorot"`: W from `jax.nn.initializers.glorot_normal()`, the paper's JAX code's
      default (Section 4 experiments): a normal truncated at two standard deviations of
      the underlying draw, |W| ≤ 2·σ/0.8796, rescaled so that Var W = 2 / (fan_in +
      fan_out); b ~ N(0, 0.01²) (`jax.nn.initializers.normal(0.01)`).
    - `"he"`: W ~ N(0, 2 / fan_in) (a plain normal), b = 0, used in the paper's GD studies
      (Sections 5-6).

    Bit for bit those initialisers' draws, made by programs compiled per size bucket
    (`_draw`), not per layer shape.
    """
    w_key, b_key = jr.split(key)
    dtype = float_dtype()
    if init == "glorot":
        # jax.nn.initializers.variance_scaling(1, "fan_avg", "truncated_normal"), its steps
        variance = jnp.array(1.0 / ((fan_in + fan_out) / 2), dtype=dtype)
        std = jnp.sqrt(variance) / jnp.array(TRUNCATED_NORMAL_STD, dtype)
        W = _draw(lambda k, n: jr.truncated_normal(k, -2, 2, (n,), dtype) * std,
                  w_key, (fan_in, fan_out))
        b = _draw(lambda k, n: jr.normal(k, (n,), dtype) * jnp.array(0.01, dtype),
                  b_key, (fan_out,))
    elif init == "he":
        W = _draw(lambda k, n: (2.0 / fan_in) ** 0.5 * jr.normal(k, (n,), dtype),
                  w_key, (fan_in, fan_out))
        b = jnp.asarray(np.zeros((fan_out,), dtype))
    else:
        raise ValueError(f"unknown initialiser {init!r}; choose one of {INITS}")
    return Layer(W, b)


#: The smallest draw `_draw` makes: layers of up to 64 weights share one program.
_MIN_BUCKET = 64


def _draw(flat: Callable[[PRNGKeyArray, int], Array], key: PRNGKeyArray,
          shape: tuple[int, ...]) -> Array:
    """`flat(key, n)` (an element-wise transform of a flat draw of `n` numbers) for
    n = prod(shape), reshaped: computed as the first n numbers of a draw of the next power
    of two (at least `_MIN_BUCKET`), so that every layer shape in a bucket runs one set of
    compiled programs instead of compiling its own (the initialisers were a fifth of the
    compiling in the test suite). Equal bit for bit under JAX's partitionable threefry
    (the default since JAX 0.5), whose i-th number depends on the key and i alone; with
    the older threefry, a prefix is not the smaller draw, so it draws `shape` itself (as
    it does under a trace: `jax.eval_shape`, `jit`)."""
    n = math.prod(shape)
    if not getattr(jax.config, "jax_threefry_partitionable", False) \
            or isinstance(key, jax.core.Tracer):
        return flat(key, n).reshape(shape)
    bucket = max(_MIN_BUCKET, 1 << (n - 1).bit_length())
    return jnp.asarray(np.asarray(flat(key, bucket))[:n].reshape(shape))


def init_mlp(key: PRNGKeyArray, sizes: Sequence[int], *, init: str = "glorot") -> list[Layer]:
    """Initialises an MLP with layer widths `sizes` (input first, output last)."""
    keys = jr.split(key, len(sizes) - 1)
    return [init_layer(k, m, n, init=init) for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def init_siren(key: PRNGKeyArray, sizes: Sequence[int], *, omega0: float = 30.0,
               first: bool = True) -> list[Layer]:
    """A SIREN (Sitzmann et al. 2020, Sec. 3.2 and their code): every layer
    `W ~ U(−√(6/n)/ω₀, √(6/n)/ω₀)` for fan-in n, except a first layer on the input
    coordinates (`first`), `W ~ U(−1/n, 1/n)`; biases keep PyTorch's `nn.Linear` default,
    `U(−1/√n, 1/√n)`, which the SIREN code does not override. The head (last layer) is
    linear with the hidden layers' weight law."""
    dtype = float_dtype()
    layers = []
    for i, (k, n, m) in enumerate(zip(jr.split(key, len(sizes) - 1), sizes[:-1], sizes[1:])):
        w_key, b_key = jr.split(k)
        bound = 1.0 / n if first and i == 0 else (6.0 / n) ** 0.5 / omega0
        W = _draw(lambda k, size, lim=bound: jr.uniform(k, (size,), dtype, -lim, lim),
                  w_key, (n, m))
        b = _draw(lambda k, size, lim=(1.0 / n) ** 0.5: jr.uniform(k, (size,), dtype, -lim, lim),
                  b_key, (m,))
        layers.append(Layer(W, b))
    return layers


def sine_features(layers: Sequence[Layer], x: Float[Array, "n d"], omega0: float
                  ) -> Float[Array, "n h"]:
    """SIREN's hidden layers: `sin(ω₀·(x @ W + b))` for every layer."""
    for W, b in layers:
        x = jnp.sin(omega0 * (x @ W + b[None, :]))
    return x


def fourier_features(x: Float[Array, "n d"], B: Float[Array, "d m"]) -> Float[Array, "n f"]:
    """Random Fourier features γ(x) = [cos 2πxB, sin 2πxB] (Tancik et al. 2020, Eq. 4 with
    a_j = 1)."""
    z = 2.0 * jnp.pi * (x @ B)
    return jnp.concatenate([jnp.cos(z), jnp.sin(z)], axis=-1)


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
