"""Why GD prefers MGDL: Hessians, GD-Jacobian spectra, learning-rate sweeps (SPEC §4)."""

from multigrade.analysis.hessian import extreme_eigenvalues, hessian, hvp, lanczos
from multigrade.analysis.lr_sweep import SweepResult, classify, lr_sweep
from multigrade.analysis.stability import (
    StabilityReport,
    hessian_eigenvalues,
    make_stability_probe,
    stability_report,
)

__all__ = ["StabilityReport", "SweepResult", "classify", "extreme_eigenvalues", "hessian",
           "hessian_eigenvalues", "hvp", "lanczos", "lr_sweep", "make_stability_probe",
           "stability_report"]
