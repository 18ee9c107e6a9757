"""Spectral-bias synthetic 1-D regression (SPEC §2.3).

f(x) = Σ_i sin(2π κ_i x + φ_i), unit amplitudes, phases φ_i ~ U(0, 2π) from a fixed key.
Setting 1: κ = linspace(1, 10, 3); setting 2: κ = linspace(1, 30, 5). Train on 2¹⁰ points
linspace(0, 1), validate on 2¹⁰ uniform random points, test on 10 000 points linspace(0, 1).
"""

from __future__ import annotations

import jax.random as jr
import numpy as np

from multigrade._types import PRNGKeyArray
from multigrade.problems.regression import Regression

SETTINGS = {1: (1.0, 10.0, 3), 2: (1.0, 30.0, 5)}


def frequencies(setting: int) -> np.ndarray:
    """The frequencies κ of synthetic setting `setting` (SPEC §4's table)."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown synthetic setting {setting}; choose one of {list(SETTINGS)}")
    lo, hi, n = SETTINGS[setting]
    return np.linspace(lo, hi, n)


def synthetic_function(kappa: np.ndarray, phases: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Σ_i sin(2π κ_i x + φ_i) at points `x` `(n,)`."""
    return np.sin(2 * np.pi * np.outer(x, kappa) + phases).sum(axis=1)


def synthetic(setting: int = 1, *, key: PRNGKeyArray | None = None, num_train: int = 1024,
              num_val: int = 1024, num_test: int = 10_000) -> Regression:
    """The paper's synthetic regression problem.

    Args:
        setting: 1 (κ = 1, 5.5, 10) or 2 (κ = 1, 8.25, ..., 30).
        key: draws the phases and the validation points (default `jax.random.key(0)`: the
            data set is fixed, not part of a run's randomness).
    """
    kappa = frequencies(setting)
    key = jr.key(0) if key is None else key
    phase_key, val_key = jr.split(key)
    phases = np.asarray(jr.uniform(phase_key, (len(kappa),), minval=0.0, maxval=2 * np.pi),
                        dtype=np.float64)
    x_train = np.linspace(0.0, 1.0, num_train)
    x_val = np.asarray(jr.uniform(val_key, (num_val,)), dtype=np.float64)
    x_test = np.linspace(0.0, 1.0, num_test)
    splits = {s: (x, synthetic_function(kappa, phases, x))
              for s, x in (("train", x_train), ("val", x_val), ("test", x_test))}
    return Regression.from_arrays(splits, name=f"synthetic-{setting}")
