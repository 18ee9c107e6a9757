"""Shared type aliases."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

PyTree = Any
Scalar = Float[Array, ""]



def float_dtype():
    """The default float: float32, or float64 under `jax_enable_x64`. Data and parameters
    use it alike, so no operation mixes precisions."""
    return jnp.zeros(()).dtype


def enable_x64(on: bool = True):
    """A context in which JAX computes in float64 (`on`) or float32: `jax.enable_x64`
    (JAX ≥ 0.8), or `jax.experimental.enable_x64` before it (the minimum JAX, 0.4.36)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(on)
    from jax.experimental import disable_x64
    from jax.experimental import enable_x64 as old

    return old() if on else disable_x64()


def as_float(a) -> Array:
    """`a` as a JAX array of the default float dtype."""
    return jnp.asarray(a, dtype=float_dtype())


__all__ = ["Array", "Float", "PRNGKeyArray", "PyTree", "Scalar", "as_float", "enable_x64",
           "float_dtype"]
