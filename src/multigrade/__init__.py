"""multigrade: multi-grade deep learning (MGDL) and its comparison with end-to-end training.

    >>> import jax, optax, multigrade as mg
    >>> problem = mg.image_regression(mg.load_image("camera", size=32))
    >>> result = mg.fit(mg.mgdl([[16, 16]] * 2), problem, optimizer=optax.adam(1e-3),
    ...                 epochs=20, key=jax.random.key(0))
    >>> len(result.grades)
    2

Reference: R. Fang and Y. Xu, "Computational Advantages of Multi-Grade Deep Learning:
Convergence Analysis and Performance Insights", arXiv:2507.20351 (2025).
"""

from multigrade._version import __version__ as __version__
from multigrade.images import ImageNotFoundError, coordinate_grid, load_image
from multigrade.metrics import psnr, ssim
from multigrade.model import (
    GradeParams,
    MultiGrade,
    MultiScale,
    grade_features,
    grade_output,
    mgdl,
    msdl,
    predict,
    sgdl,
)
from multigrade.nn import Layer, apply_mlp, count_params, init_mlp
from multigrade.problems import (
    Regression,
    Restoration,
    deblurring,
    denoising,
    image_regression,
    synthetic,
)
from multigrade.train import (
    AdaptiveGrades,
    Callback,
    Checkpoint,
    Divergence,
    FitInterrupted,
    FitResult,
    GradeSummary,
    Probe,
    fit,
    fit_sweep,
    should_stop,
    stop_index,
)

__all__ = [
    "AdaptiveGrades",
    "Callback",
    "Checkpoint",
    "Divergence",
    "FitInterrupted",
    "FitResult",
    "GradeParams",
    "GradeSummary",
    "ImageNotFoundError",
    "Layer",
    "MultiGrade",
    "MultiScale",
    "Probe",
    "Regression",
    "Restoration",
    "apply_mlp",
    "coordinate_grid",
    "count_params",
    "deblurring",
    "denoising",
    "fit",
    "fit_sweep",
    "grade_features",
    "grade_output",
    "image_regression",
    "init_mlp",
    "load_image",
    "mgdl",
    "msdl",
    "predict",
    "psnr",
    "sgdl",
    "should_stop",
    "ssim",
    "stop_index",
    "synthetic",
]
