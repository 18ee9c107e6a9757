"""What is fitted: data, loss, the per-epoch auxiliary update and metrics.

Every problem is a frozen dataclass registered as a JAX pytree (arrays are leaves, shapes
and labels are static), so `fit` can pass it into its compiled training chunks. `fit` only
ever calls the methods below; a task differs from another by its problem, never by an
`if task == ...` in the training loop.

- `inputs: dict[str, Array]` — the input of every split, `"train"` first; each is `(n, d)`.
- `out_dim: int`, `in_dim: int`.
- `record_splits: tuple[str, ...]` — splits whose metrics are recorded during training.
- `render_split: str` — the split a figure shows as an image.
- `monitor: str` — the recorded metric the stopping rule watches.
- `init_aux(pred_train) -> aux` and `update_aux(aux, pred_train) -> aux` — state updated
  once per epoch before the gradient step (the TV splitting variable u for restoration;
  an empty tuple for regression).
- `loss(pred_train, aux) -> scalar` — the objective of the current grade as a function of
  the combined prediction P on the training inputs.
- `metrics(preds: dict[str, Array], aux) -> dict[str, scalar]`.
- `next_scale(pred_train) -> scalar` — s_{k+1}, the factor of the next grade's output.
- `render(pred) -> np.ndarray` and `references() -> dict[str, np.ndarray]` — images for
  figures (None and {} for non-image data).
- `describe() -> dict` — a JSON-able description for `config.json`.
"""

from multigrade.problems.regression import Regression, image_regression
from multigrade.problems.restoration import Restoration, deblurring, denoising
from multigrade.problems.synthetic import synthetic

__all__ = ["Regression", "Restoration", "deblurring", "denoising", "image_regression",
           "synthetic"]
