"""Hessians of a loss with respect to a parameter pytree, dense or matrix-free.

- `hessian`: the dense matrix by automatic differentiation (forward-over-reverse), on the
  flattened parameters, for any architecture.
- `hvp`: Hessian-vector products, never forming the matrix.
- `lanczos`: the Lanczos iteration with full reorthogonalisation, compiled
  (`lax.fori_loop`); full reorthogonalisation keeps the Ritz values at both ends of the
  spectrum trustworthy, the most negative as well as the largest.
- `extreme_eigenvalues`: the k smallest and k largest Hessian eigenvalues by Lanczos.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from multigrade._types import Array, Float, PRNGKeyArray, PyTree, float_dtype


def flat_loss(loss: Callable[[PyTree], Array], params: PyTree):
    """`(f, x0)`: the loss as a function of the flattened parameters, and those parameters."""
    flat, unravel = ravel_pytree(params)
    return (lambda v: loss(unravel(v))), flat


def as_partial(loss: Callable) -> jax.tree_util.Partial:
    """`loss` as a pytree (`jax.tree_util.Partial`) that compiled programs take as an
    argument: its arrays are inputs, its function part of the cache key. A loss built as
    `Partial(fn, *arrays)` with the same `fn` reuses one compiled program for every probe;
    a plain closure compiles anew each time."""
    return loss if isinstance(loss, jax.tree_util.Partial) else jax.tree_util.Partial(loss)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _dense_hessian(loss, params, batch_size: int):
    # params is an argument, not a constant: XLA would otherwise constant-fold the first
    # layer; the loss's arrays are arguments too, so later probes reuse this program
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda v: loss(unravel(v)))

    def column(i):
        return jax.jvp(grad, (flat,), (jnp.zeros_like(flat).at[i].set(1.0),))[1]

    return jax.lax.map(column, jnp.arange(flat.size), batch_size=batch_size)


def hessian(loss: Callable[[PyTree], Array], params: PyTree, *,
            batch_size: int = 32) -> Float[Array, "p p"]:
    """The dense Hessian of `loss` at `params`, on the flattened parameters (`ravel_pytree`
    order), symmetrised.

    Columns are Hessian-vector products of the unit vectors, `batch_size` at a time
    (`lax.map`): memory stays bounded, and it runs 2-3× faster on a CPU than
    `jax.hessian`, which pushes every column through at once (benchmarks/hessian.py).
    Pass the loss as a `jax.tree_util.Partial` to reuse the compiled program across calls
    (`as_partial`).

    >>> import jax.numpy as jnp
    >>> A = jnp.array([[2.0, 1.0], [1.0, 3.0]])
    >>> hessian(lambda x: 0.5 * x @ A @ x, jnp.ones(2)).tolist()
    [[2.0, 1.0], [1.0, 3.0]]
    """
    H = _dense_hessian(as_partial(loss), params, batch_size)
    return 0.5 * (H + H.T)


@jax.jit
def _hvp(loss, params, v: Array) -> Array:
    flat, unravel = ravel_pytree(params)
    return jax.jvp(jax.grad(lambda w: loss(unravel(w))), (flat,), (v,))[1]


def hvp(loss: Callable[[PyTree], Array], params: PyTree) -> jax.tree_util.Partial:
    """`v ↦ H v` on flattened parameters (forward-over-reverse), jitted; a pytree, so
    `lanczos` takes it as an argument and compiles once per loss function and shape."""
    return jax.tree_util.Partial(_hvp, as_partial(loss), params)


@functools.partial(jax.jit, static_argnames=("order",))
def _lanczos(matvec, v0: Array, order: int):
    n = v0.shape[0]
    V = jnp.zeros((order + 1, n), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    alpha = jnp.zeros(order, v0.dtype)
    beta = jnp.zeros(order + 1, v0.dtype)
    tiny = jnp.finfo(v0.dtype).eps

    def body(j, carry):
        V, alpha, beta = carry
        v = V[j]
        w = matvec(v)
        a = jnp.vdot(w, v)
        w = w - a * v - beta[j] * V[jnp.maximum(j - 1, 0)] * (j > 0)
        # full reorthogonalisation against every earlier vector, twice (Kahan: twice is enough)
        w = w - V.T @ (V @ w)
        w = w - V.T @ (V @ w)
        b = jnp.linalg.norm(w)
        # on breakdown (an invariant subspace found) the remaining vectors stay zero
        V = V.at[j + 1].set(jnp.where(b > tiny * jnp.abs(a) + tiny, w / b, 0.0))
        return V, alpha.at[j].set(a), beta.at[j + 1].set(b)

    _, alpha, beta = jax.lax.fori_loop(0, order, body, (V, alpha, beta))
    return alpha, beta[1:order]


def lanczos(matvec: Callable[[Array], Array], dim: int, order: int, *,
            key: PRNGKeyArray | None = None, v0: Array | None = None,
            dtype=None) -> np.ndarray:
    """Ritz values (ascending, float64) of a symmetric operator after `order` Lanczos steps.

    Args:
        matvec: `v ↦ A v` for vectors of length `dim`.
        order: number of Lanczos steps (≤ dim); with `order == dim` the Ritz values are the
            eigenvalues, in exact arithmetic.
        key: draws the start vector when `v0` is None (one of the two is required: no
            hidden default key).
        v0: the start vector.
    """
    if not 1 <= order <= dim:
        raise ValueError(f"Lanczos order must be in [1, {dim}], got {order}")
    if v0 is None:
        if key is None:
            raise ValueError("lanczos needs a key or a start vector v0")
        v0 = jax.random.normal(key, (dim,), dtype or float_dtype())
    alpha, beta = _lanczos(as_partial(matvec), jnp.asarray(v0), order)
    alpha, beta = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
    # a breakdown leaves a zero off-diagonal: the tridiagonal splits, keep the first block
    stop = np.flatnonzero(beta == 0)
    if stop.size:
        alpha, beta = alpha[: stop[0] + 1], beta[: stop[0]]
    from scipy.linalg import eigvalsh_tridiagonal

    return eigvalsh_tridiagonal(alpha, beta)


def extreme_eigenvalues(loss: Callable[[PyTree], Array], params: PyTree, k: int = 5, *,
                        key: PRNGKeyArray, order: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The `k` smallest and `k` largest Hessian eigenvalues (ascending), matrix-free.

    Uses `order` Lanczos steps on Hessian-vector products (default `max(8k, 80)`, capped
    at the number of parameters); the extremes converge first.
    """
    _, flat = flat_loss(loss, params)
    dim = flat.shape[0]
    order = min(dim, order or max(8 * k, 80))
    ritz = lanczos(hvp(loss, params), dim, order, key=key, dtype=flat.dtype)
    k = min(k, len(ritz))
    return ritz[:k], ritz[-k:]
