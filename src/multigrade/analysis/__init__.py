"""Why GD prefers MGDL: Hessians, GD-Jacobian spectra, learning-rate sweeps (SPEC §4), and
the Hessian's trace and spectral density (Hutchinson, SLQ)."""

from multigrade.analysis.density import SpectralDensity, hutchinson_trace, slq
from multigrade.analysis.hessian import extreme_eigenvalues, hessian, hvp, lanczos
from multigrade.analysis.lr_sweep import SweepResult, classify, lr_sweep
from multigrade.analysis.stability import (
    StabilityReport,
    StepSize,
    hessian_eigenvalues,
    make_stability_probe,
    stability_report,
)

__all__ = ["SpectralDensity", "StabilityReport", "StepSize", "SweepResult", "classify",
           "extreme_eigenvalues", "hessian", "hessian_eigenvalues", "hutchinson_trace", "hvp",
           "lanczos", "lr_sweep", "make_stability_probe", "slq", "stability_report"]
