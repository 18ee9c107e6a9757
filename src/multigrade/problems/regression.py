"""Regression: fit targets y from inputs x with loss ½·mean((f(x) − y)²) (SPEC §2.1, §2.3)."""

from __future__ import annotations

import dataclasses
import functools
import typing

import jax
import jax.numpy as jnp
import numpy as np

from multigrade._types import Array, Float, Scalar, as_float
from multigrade.images import check_unit_range, coordinate_grid, split_even_odd
from multigrade.metrics import psnr_from_mse


def _as_2d(a) -> Array:
    a = as_float(a)
    return a[:, None] if a.ndim == 1 else a


# no_type_check: JAX rebuilds the pytree with placeholders while lowering; the constructor
# functions (from_arrays, image_regression) are where inputs are checked.
@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x", "y"],
    meta_fields=["image_shape", "peak", "name"],
)
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class Regression:
    """Supervised regression on named splits.

    Attributes:
        x: inputs per split, each `(n, d)`; `"train"` is required, `"val"` (if present) drives
            the stopping rule, `"test"` is evaluated after each grade only.
        y: targets per split, each `(n, m)`.
        image_shape: `(H, W)` when the `"test"` split holds every pixel of an image in
            row-major order, so predictions can be shown as images.
        peak: signal peak for PSNR (1 for images in [0, 1]); None reports no PSNR.
        name: a label.
    """

    x: dict[str, Float[Array, "_n d"]]  # "_n": splits differ in size
    y: dict[str, Float[Array, "_n m"]]
    image_shape: tuple[int, int] | None = None
    peak: float | None = None
    name: str = "regression"

    @classmethod
    def from_arrays(cls, splits: dict[str, tuple], *, image_shape=None, peak=None,
                    name: str = "regression") -> Regression:
        """Builds a problem from `{split: (x, y)}`; 1-D arrays become columns."""
        if "train" not in splits:
            raise ValueError(f"a regression problem needs a 'train' split, got {list(splits)}")
        for s, (xs, ys) in splits.items():
            for what, a in (("inputs", xs), ("targets", ys)):
                if not np.all(np.isfinite(np.asarray(a, dtype=float))):
                    raise ValueError(f"split {s!r}: {what} hold NaN or infinite values")
        x = {s: _as_2d(xy[0]) for s, xy in splits.items()}
        y = {s: _as_2d(xy[1]) for s, xy in splits.items()}
        for s in splits:
            if x[s].shape[0] != y[s].shape[0]:
                raise ValueError(
                    f"split {s!r}: {x[s].shape[0]} inputs but {y[s].shape[0]} targets")
        return cls(x, y, image_shape, peak, name)

    @property
    def inputs(self) -> dict[str, Array]:
        return self.x

    @property
    def in_dim(self) -> int:
        return int(self.x["train"].shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.y["train"].shape[1])

    @property
    def record_splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.x if s != "test")

    @property
    def render_split(self) -> str:
        return "test" if "test" in self.x else "train"

    @property
    def monitor(self) -> str:
        return "val_loss" if "val" in self.x else "train_loss"

    def init_aux(self, pred_train):
        return ()

    def update_aux(self, aux, pred_train):
        return aux

    def loss(self, pred_train: Float[Array, "n m"], aux=()) -> Scalar:
        return 0.5 * jnp.mean((pred_train - self.y["train"]) ** 2)

    # -- mini-batches (multigrade.problems.minibatch): `loss` is Σ over training samples
    # a of t_a = ½‖pred_a − y_a‖² / (n·m)

    def stencil(self, anchors: Array) -> Array:
        return anchors[:, None]

    def aux_at(self, aux, anchors: Array, pred: Array):
        return aux

    def loss_at(self, pred: Array, aux, anchors: Array) -> Scalar:
        y = self.y["train"]
        return 0.5 * jnp.sum((pred[:, 0] - y[anchors]) ** 2) / y.size

    def metrics(self, preds: dict[str, Array], aux=()) -> dict[str, Scalar]:
        out = {}
        for split, pred in preds.items():
            mse = jnp.mean((pred - self.y[split]) ** 2)
            out[f"{split}_loss"] = 0.5 * mse
            if self.peak is not None:
                out[f"{split}_psnr"] = psnr_from_mse(mse, self.peak)
        return out

    def next_scale(self, pred_train) -> float:
        return 1.0

    def render(self, pred) -> np.ndarray | None:
        if self.image_shape is None or self.render_split != "test":
            return None
        image = np.asarray(pred).reshape(*self.image_shape, -1)
        return image[..., 0] if image.shape[-1] == 1 else image

    def target_image(self) -> np.ndarray | None:
        """The image `test_psnr` compares with (None for non-image data)."""
        return self.render(self.y["test"]) if "test" in self.y else None

    def references(self) -> dict[str, np.ndarray]:
        ref = self.target_image()
        return {} if ref is None else {"target": ref}

    def describe(self) -> dict:
        return {
            "kind": "regression",
            "name": self.name,
            "splits": {s: list(v.shape) for s, v in self.x.items()},
            "image_shape": None if self.image_shape is None else list(self.image_shape),
        }


def image_regression(image, *, name: str = "image") -> Regression:
    """Coordinate regression of an image (SPEC §2.1).

    The network maps a pixel's coordinates in [0, 1)² to its value (one output per
    channel). Train on the even rows and columns, validate on the odd ones, test on every
    pixel.

    Args:
        image: `(H, W)` gray or `(H, W, C)` colour array with values in [0, 1].
    """
    image = check_unit_range(np.asarray(image, dtype=np.float64))
    if image.ndim not in (2, 3):
        raise ValueError(f"image regression needs an (H, W) or (H, W, C) image, "
                         f"got shape {image.shape}")
    if min(image.shape[:2]) < 2:
        raise ValueError(f"image of shape {image.shape} is too small to split")
    grid = coordinate_grid(*image.shape[:2])
    train, val = split_even_odd(grid, image)
    splits = {"train": train, "val": val,
              "test": (grid.reshape(-1, 2), image.reshape(-1, *image.shape[2:]))}
    return Regression.from_arrays(splits, image_shape=image.shape[:2], peak=1.0, name=name)
