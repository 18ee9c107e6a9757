"""Shared type aliases."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

PyTree = Any
Scalar = Float[Array, ""]



def float_dtype():
    """The default float: float32, or float64 under `jax_enable_x64`. Data and parameters
    use it alike, so no operation mixes precisions."""
    return jnp.zeros(()).dtype


def as_float(a) -> Array:
    """`a` as a JAX array of the default float dtype."""
    return jnp.asarray(a, dtype=float_dtype())


__all__ = ["Array", "Float", "PRNGKeyArray", "PyTree", "Scalar", "as_float", "float_dtype"]
