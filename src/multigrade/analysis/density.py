"""The Hessian's trace and spectral density without forming it: Hutchinson's estimator and
stochastic Lanczos quadrature (SLQ), on Hessian-vector products.

- `hutchinson_trace`: tr(H) ≈ mean of vᵀHv over Rademacher vectors v (unbiased; its
  standard error is returned beside it). The products of all probes run in one vmapped,
  compiled program.
- `slq`: for each of a few Rademacher vectors, `order` Lanczos steps from v; the
  eigen-decomposition of the tridiagonal matrix gives Gauss quadrature nodes θ and weights
  τ (squared first components of its eigenvectors), and the density is their average:
  φ(λ) ≈ mean over probes of Σ τ_j δ(λ − θ_j) (Ubaru, Chen & Saad 2017; Ghorbani et al.
  2019). The quadrature is exact for polynomials up to degree 2·order − 1, so its
  moments are those of vᵀH^k v / vᵀv, unbiased estimates of tr(H^k)/n.

Written here rather than taken from a library (matfree, for example) because the project
already has a compiled Lanczos with full reorthogonalisation (`hessian.lanczos`), which SLQ
needs at both ends of the spectrum: this is twenty lines on top of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from multigrade._types import Array, PRNGKeyArray, PyTree
from multigrade.analysis.hessian import _lanczos, as_partial, flat_loss, hvp


def _rademacher(key: PRNGKeyArray, shape, dtype) -> Array:
    return jax.random.rademacher(key, shape, dtype=dtype)


@jax.jit
def _quadratic_forms(matvec, V: Array) -> Array:
    return jax.vmap(lambda v: jnp.vdot(v, matvec(v)))(V)


def hutchinson_trace(loss: Callable[[PyTree], Array], params: PyTree, *, key: PRNGKeyArray,
                     num_probes: int = 100) -> tuple[float, float]:
    """(estimate of tr ∇²loss, its standard error) from `num_probes` Rademacher vectors."""
    if num_probes < 2:
        raise ValueError(f"num_probes must be at least 2, got {num_probes}")
    _, flat = flat_loss(loss, params)
    V = _rademacher(key, (num_probes, flat.shape[0]), flat.dtype)
    q = np.asarray(_quadratic_forms(hvp(loss, params), V), np.float64)
    return float(q.mean()), float(q.std(ddof=1) / np.sqrt(num_probes))


@dataclasses.dataclass(frozen=True)
class SpectralDensity:
    """Gauss quadrature nodes and weights, one row per probe (weights of a row sum to 1)."""

    nodes: np.ndarray
    weights: np.ndarray

    def moment(self, k: int) -> float:
        """The estimate of tr(H^k) / n."""
        return float(np.mean(np.sum(self.weights * self.nodes**k, axis=1)))

    def smoothed(self, grid: np.ndarray, width: float) -> np.ndarray:
        """The density on `grid`, each node a Gaussian of standard deviation `width`."""
        z = (np.asarray(grid)[:, None, None] - self.nodes[None]) / width
        g = np.exp(-0.5 * z**2) / (width * np.sqrt(2 * np.pi))
        return np.mean(np.sum(self.weights[None] * g, axis=2), axis=1)


def slq(loss: Callable[[PyTree], Array], params: PyTree, *, key: PRNGKeyArray,
        num_probes: int = 10, order: int = 64) -> SpectralDensity:
    """The Hessian's spectral density by stochastic Lanczos quadrature."""
    from scipy.linalg import eigh_tridiagonal

    _, flat = flat_loss(loss, params)
    dim = int(flat.shape[0])
    order = min(order, dim)
    if order < 1 or num_probes < 1:
        raise ValueError("order and num_probes must be at least 1")
    matvec = as_partial(hvp(loss, params))
    nodes = np.zeros((num_probes, order))
    weights = np.zeros((num_probes, order))
    for i, k in enumerate(jax.random.split(key, num_probes)):
        alpha, beta = _lanczos(matvec, _rademacher(k, (dim,), flat.dtype), order)
        alpha, beta = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
        stop = np.flatnonzero(beta == 0)  # a breakdown: the first block is exact
        m = stop[0] + 1 if stop.size else order
        theta, vecs = eigh_tridiagonal(alpha[:m], beta[:m - 1])
        nodes[i, :m], weights[i, :m] = theta, vecs[0] ** 2
    return SpectralDensity(nodes, weights)
