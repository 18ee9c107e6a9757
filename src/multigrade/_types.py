"""Shared type aliases."""

from __future__ import annotations

from typing import Any

from jaxtyping import Array, Float, PRNGKeyArray

PyTree = Any
Scalar = Float[Array, ""]

__all__ = ["Array", "Float", "PRNGKeyArray", "PyTree", "Scalar"]
