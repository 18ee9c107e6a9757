"""Local stability of gradient descent: spectra of the GD Jacobian I − η∇²L (SPEC §4).

GD is the iteration θ ← θ − η∇L(θ); its Jacobian is J = I − η H with H = ∇²L(θ). Locally
GD is stable when every eigenvalue of J lies in [−1, 1], that is 0 ≤ η λ(H) ≤ 2; the
critical learning rate is 2 / λ_max(H).

Eigenvalues are computed in float64 without slowing training: the Hessian is formed under
`jax.enable_x64` (a context that only affects this computation; training keeps its dtype)
and the eigen-solver is LAPACK's, in float64, on the host.

ReLU kinks: JAX differentiates relu with σ'(0) = 0 (and σ''= 0 everywhere), so at a
pre-activation of exactly 0 a unit counts as inactive. This matters at x = 0 with zero
biases (the He-initialised synthetic studies): such units contribute nothing there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from multigrade._types import PRNGKeyArray, PyTree, enable_x64
from multigrade.analysis.hessian import extreme_eigenvalues, flat_loss, hessian

DENSE_MAX = 4000  # parameters; above this the Hessian is not formed (Lanczos instead)


@dataclasses.dataclass
class StabilityReport:
    """Hessian spectrum and GD-Jacobian summary at one point of training.

    Attributes:
        lr: the learning rate η.
        eigenvalues: Hessian eigenvalues, ascending: all of them (`method == "dense"`) or
            the k smallest followed by the k largest (`"lanczos"`).
        method: `"dense"` or `"lanczos"`.
        num_params: the Hessian's size.
    """

    lr: float
    eigenvalues: np.ndarray
    method: str
    num_params: int

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def jacobian_eigenvalues(self) -> np.ndarray:
        """1 − η λ, ascending."""
        return (1.0 - self.lr * self.eigenvalues)[::-1]

    @property
    def jacobian_max(self) -> float:
        return 1.0 - self.lr * self.lambda_min

    @property
    def jacobian_min(self) -> float:
        return 1.0 - self.lr * self.lambda_max

    @property
    def spectral_radius(self) -> float:
        """max |1 − η λ|: the local stability margin (≤ 1 is stable)."""
        return float(np.max(np.abs(1.0 - self.lr * self.eigenvalues)))

    @property
    def num_outside(self) -> int:
        """Eigenvalues of J outside [−1, 1] (among those computed, for Lanczos)."""
        return int(np.sum(np.abs(1.0 - self.lr * self.eigenvalues) > 1.0))

    @property
    def num_unstable(self) -> int:
        """Eigenvalues of J below −1 (η λ > 2): the directions in which GD oscillates with
        growing amplitude. Eigenvalues above 1 come from negative curvature instead."""
        return int(np.sum(1.0 - self.lr * self.eigenvalues < -1.0))

    @property
    def critical_lr(self) -> float:
        """2 / λ_max(H): GD with a larger rate is locally unstable here."""
        return 2.0 / self.lambda_max if self.lambda_max > 0 else float("inf")

    @property
    def condition_number(self) -> float:
        """λ_max / (smallest eigenvalue above 1e-10 · λ_max): H over its positive part."""
        lam = self.eigenvalues
        pos = lam[lam > 1e-10 * max(self.lambda_max, 0.0)]
        return float(self.lambda_max / pos[0]) if self.lambda_max > 0 and pos.size else np.nan

    def summary(self) -> dict[str, float]:
        return {"lambda_max": self.lambda_max, "lambda_min": self.lambda_min,
                "jacobian_max": self.jacobian_max, "jacobian_min": self.jacobian_min,
                "spectral_radius": self.spectral_radius, "num_outside": self.num_outside,
                "num_unstable": self.num_unstable,
                "critical_lr": self.critical_lr, "condition_number": self.condition_number,
                "num_params": self.num_params}


def hessian_eigenvalues(loss: Callable[[PyTree], jax.Array], params: PyTree, *,
                        dense_max: int = DENSE_MAX, k: int = 5,
                        key: PRNGKeyArray | None = None, x64: bool = True
                        ) -> tuple[np.ndarray, str]:
    """All Hessian eigenvalues (dense, up to `dense_max` parameters) or the k extremes at
    each end (Lanczos), ascending float64, and which method was used."""
    _, flat = flat_loss(loss, params)
    dim = int(flat.shape[0])
    with enable_x64(x64):
        if x64:
            params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
        if dim <= dense_max:
            H = np.asarray(hessian(loss, params), np.float64)
            return np.linalg.eigvalsh(H), "dense"
        if key is None:
            raise ValueError(f"{dim} parameters > dense_max={dense_max}: Lanczos needs a key")
        lo, hi = extreme_eigenvalues(loss, params, k, key=key)
        return np.concatenate([lo, hi]), "lanczos"


def stability_report(loss: Callable[[PyTree], jax.Array], params: PyTree, lr: float, *,
                     dense_max: int = DENSE_MAX, k: int = 5, key: PRNGKeyArray | None = None,
                     x64: bool = True) -> StabilityReport:
    """The GD-Jacobian spectrum of `loss` at `params` for learning rate `lr`."""
    eig, method = hessian_eigenvalues(loss, params, dense_max=dense_max, k=k, key=key, x64=x64)
    dim = int(flat_loss(loss, params)[1].shape[0])
    return StabilityReport(float(lr), eig, method, dim)


def density_summary(loss: Callable[[PyTree], jax.Array], params: PyTree, *,
                    key: PRNGKeyArray, num_probes: int = 10, order: int = 64,
                    x64: bool = True) -> dict:
    """The Hessian's spectral density by SLQ (`density_nodes`, `density_weights`: one row
    per probe) and the Hutchinson trace read from the same probes (`trace`, with its
    standard error `trace_se`): for a Rademacher v, vᵀHv = n·Σ_j τ_j θ_j."""
    from multigrade.analysis.density import slq

    dim = int(flat_loss(loss, params)[1].shape[0])
    with enable_x64(x64):
        if x64:
            params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
        d = slq(loss, params, key=key, num_probes=num_probes, order=order)
    per_probe = dim * np.sum(d.weights * d.nodes, axis=1)
    se = float(per_probe.std(ddof=1) / np.sqrt(num_probes)) if num_probes > 1 else np.nan
    return {"trace": float(per_probe.mean()), "trace_se": se,
            "density_nodes": d.nodes, "density_weights": d.weights}


def make_stability_probe(lr: float, *, dense_max: int = DENSE_MAX, k: int = 5,
                         key: PRNGKeyArray | None = None, x64: bool = True,
                         density: int = 0, density_order: int = 64) -> Callable:
    """A `fit` probe: the stability summary plus the eigenvalues, at every probe point;
    with `density` probes, also the SLQ spectral density and trace (`density_summary`)."""
    if density and key is None:
        raise ValueError("the spectral density needs a key for its random probes")

    def probe(grade, epoch, params, loss):
        probe_key = None if key is None else jax.random.fold_in(key, grade * 1_000_003 + epoch)
        r = stability_report(loss, params, lr, dense_max=dense_max, k=k, key=probe_key,
                             x64=x64)
        out = {"lr": float(lr), **r.summary(), "hessian": r.method,
               "eigenvalues": r.eigenvalues}
        if density:
            out.update(density_summary(loss, params, key=jax.random.fold_in(probe_key, 1),
                                       num_probes=density, order=density_order, x64=x64))
            if r.method == "dense":  # the estimate beside the exact value
                out["trace_dense"] = float(np.sum(r.eigenvalues))
        return out
    return probe


@dataclasses.dataclass(frozen=True)
class StepSize:
    """Gradient descent's step from the spectrum of each grade's loss Hessian H.

    GD on a grade is locally stable while η·λ_max(H) ≤ 2 (SPEC §4). λ_max is estimated by
    `order` Lanczos steps on Hessian-vector products of the current grade's loss (the
    earlier grades and u fixed), at the start of each grade and every `every` epochs.

    Attributes:
        c: at the start of each grade η = c·2/λ_max; None keeps the optimiser's rate.
        every: epochs between re-estimates (a multiple of `record_every`); None: only at
            the start.
        lower: at a re-estimate where λ_max > 2/η, lower η to c·2/λ_max.
        eig_stop: end the grade at a re-estimate where the smallest eigenvalue of the GD
            iteration's Jacobian, 1 − η·λ_max, is below this (the reference code's −0.95).
        order: Lanczos steps per estimate.

    Implements `train.StepSize` (the protocol `fit` reads). The optimiser must carry its
    rate in its state: `optax.inject_hyperparams(optax.sgd)(
    learning_rate=...)`. Records gain `lr` (the rate of that record's epochs) and, where an
    estimate was made, `sharpness` (λ_max).
    """

    c: float | None = 0.5
    every: int | None = None
    lower: bool = False
    eig_stop: float | None = None
    order: int = 32

    def __post_init__(self):
        if self.c is not None and not 0 < self.c <= 1:
            raise ValueError(f"the step factor c must lie in (0, 1], got {self.c}")
        if self.every is not None and self.every < 1:
            raise ValueError(f"sharpness estimates every {self.every} epochs: must be ≥ 1")
        if (self.lower or self.eig_stop is not None) and self.every is None:
            raise ValueError("lowering η or the eigenvalue stop needs re-estimates: set every")
        if self.lower and self.c is None:
            raise ValueError("lowering η sets it to c·2/λ_max: set c")
        if self.order < 2:
            raise ValueError(f"order must be at least 2, got {self.order}")

    def sharpness(self, loss, params: PyTree, key: PRNGKeyArray) -> float:
        """λ_max of `loss`'s Hessian at `params`: `order` Lanczos steps on HVPs."""
        _, top = extreme_eigenvalues(loss, params, k=1, order=self.order, key=key)
        return float(top[-1])
