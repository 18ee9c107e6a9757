"""What is fitted: data, loss, the per-epoch auxiliary update and metrics.

Every problem is a frozen dataclass registered as a JAX pytree (arrays are leaves, shapes
and labels are static), so `fit` can pass it into its compiled training chunks. `fit` only
ever calls the methods of `Problem`; a task differs from another by its problem, never by
an `if task == ...` in the training loop.

Metric names are the same for every problem, so no consumer guesses:

- `train_loss`: the objective on the training data (what the optimiser minimises);
- `<split>_loss` for every other split (`val_loss`, `test_loss`): ½·mean squared error
  against that split's targets (for restoration, `test` is the clean image);
- `<split>_psnr` where the data are images with peak 1 (`test_psnr` is the headline
  figure: all pixels for regression, the clean image for restoration).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from multigrade._types import Array, Scalar


@runtime_checkable
class Problem(Protocol):
    """The interface `fit` trains on (implemented by `Regression` and `Restoration`)."""

    @property
    def inputs(self) -> dict[str, Array]:
        """The input of every split, `"train"` first; each `(n, d)`."""

    @property
    def in_dim(self) -> int: ...

    @property
    def out_dim(self) -> int: ...

    @property
    def record_splits(self) -> tuple[str, ...]:
        """Splits whose metrics are recorded during training."""

    @property
    def render_split(self) -> str:
        """The split a figure shows as an image."""

    @property
    def monitor(self) -> str:
        """The recorded metric the stopping rule watches."""

    def init_aux(self, pred_train: Array) -> Any:
        """The auxiliary state before grade 1 (u for restoration; `()` for regression)."""

    def update_aux(self, aux: Any, pred_train: Array) -> Any:
        """The auxiliary update made once per epoch, before the gradient step."""

    def loss(self, pred_train: Array, aux: Any) -> Scalar:
        """The current grade's objective as a function of the combined prediction P."""

    def metrics(self, preds: dict[str, Array], aux: Any) -> dict[str, Scalar]:
        """The metrics of the module docstring, from the predictions on the splits."""

    def next_scale(self, pred_train: Array) -> Scalar:
        """s_{k+1}, the factor of the next grade's output."""

    def render(self, pred: Array) -> np.ndarray | None:
        """A prediction on `render_split` as an image (None for non-image data)."""

    def target_image(self) -> np.ndarray | None:
        """The image `test_psnr` compares with (None for non-image data)."""

    def references(self) -> dict[str, np.ndarray]:
        """Images shown beside the predictions (target, clean, observation)."""

    def describe(self) -> dict:
        """A JSON-able description."""


@runtime_checkable
class ObservedProblem(Problem, Protocol):
    """A problem fitted to an observation y (restoration): what SURE's divergence and the
    no-reference rules need beyond `Problem`."""

    @property
    def observed(self) -> Array:
        """y, `(H, W, C)`."""

    def with_observation(self, observed: Array) -> ObservedProblem:
        """The same problem with another observation (SURE perturbs y)."""

    def observed_values(self) -> int:
        """How many values y has (the pixels seen × channels)."""


from multigrade.problems.curriculum import Curriculum  # noqa: E402
from multigrade.problems.regression import Regression, image_regression  # noqa: E402
from multigrade.problems.restoration import (  # noqa: E402
    Restoration,
    deblurring,
    denoising,
    from_observation,
)
from multigrade.problems.synthetic import synthetic  # noqa: E402

__all__ = ["Curriculum", "ObservedProblem", "Problem", "Regression", "Restoration",
           "deblurring", "denoising", "from_observation", "image_regression", "synthetic"]
