"""Images: load by built-in name or path, gray in [0, 1], resize; coordinate grids."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Names accepted for scikit-image's bundled images (no download needed).
BUILTIN_IMAGES: dict[str, str] = {
    "camera": "camera", "cameraman": "camera", "astronaut": "astronaut", "moon": "moon",
    "coins": "coins", "brick": "brick", "grass": "grass", "gravel": "gravel",
    "checkerboard": "checkerboard", "text": "text", "page": "page", "clock": "clock",
    "coffee": "coffee", "chelsea": "chelsea", "cat": "cat", "rocket": "rocket",
    "horse": "horse", "cell": "cell", "shepp_logan_phantom": "shepp_logan_phantom",
    "microaneurysms": "microaneurysms",
}
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".bmp")
DATA_ENV = "MULTIGRADE_DATA"


class ImageNotFoundError(FileNotFoundError):
    """No built-in image and no file of that name; the message names every place searched."""


def to_float(image: np.ndarray, gray: bool = True) -> np.ndarray:
    """Converts an image of any common dtype to float64 in [0, 1].

    With `gray`, colour becomes gray `(H, W)` (scikit-image's `rgb2gray` weights);
    otherwise colour stays `(H, W, 3)` (alpha dropped) and gray stays `(H, W)`.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float64)
    elif np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float64) / np.iinfo(image.dtype).max
    else:
        image = image.astype(np.float64)
    if image.ndim == 3:
        if image.shape[-1] == 4:  # drop alpha
            image = image[..., :3]
        if image.shape[-1] == 3 and not gray:
            pass
        elif image.shape[-1] == 3:
            from skimage.color import rgb2gray

            image = rgb2gray(image)
        elif image.shape[-1] == 1:
            image = image[..., 0]
        else:
            raise ValueError(f"cannot read an image with {image.shape[-1]} channels")
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D or colour image, got shape {image.shape}")
    return np.clip(image, 0.0, 1.0)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any image as float64 gray `(H, W)` in [0, 1]."""
    return to_float(image, gray=True)


def resize(image: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Resizes to `size × size` (an int) or `(H, W)`, with anti-aliasing."""
    from skimage.transform import resize as sk_resize

    shape = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"image size must be at least 2 pixels per side, got {size}")
    if shape == image.shape[:2]:
        return image
    return sk_resize(image, shape, order=1, anti_aliasing=True, mode="reflect")


def image_search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for an image name: `data_dir`, then `$MULTIGRADE_DATA`."""
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get(DATA_ENV):
        dirs.extend(Path(p) for p in os.environ[DATA_ENV].split(os.pathsep) if p)
    return dirs


def find_image(name: str, data_dirs: Sequence[Path] = ()) -> Path:
    """The file an image name refers to: a path, or a name (with or without suffix) in a folder."""
    searched = []
    candidates = [Path(name)] + [d / name for d in data_dirs]
    for c in candidates:
        searched.append(str(c))
        if c.is_file():
            return c
        if not c.suffix:
            for suffix in IMAGE_SUFFIXES:
                if c.with_suffix(suffix).is_file():
                    return c.with_suffix(suffix)
    places = ", ".join(searched)
    raise ImageNotFoundError(
        f"image not found: {name!r} is not a built-in image and no file was found at {places}"
        + ("" if data_dirs else f" (set --data-dir or ${DATA_ENV} to search a folder)"))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file (PNG, TIFF, GIF, JPEG, ...) as stored."""
    import imageio.v3 as iio

    path = Path(path)
    try:
        # Read the bytes ourselves: imageio leaves files open when no plugin can read them.
        image = iio.imread(path.read_bytes(), extension=path.suffix.lower() or None)
    except Exception as e:  # imageio raises many types for unreadable files
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None
    if image.ndim == 4 or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4)):
        image = image[0]  # animated GIF or multi-page TIFF: the first frame
    return image


def load_image(name: str, *, size: int | Sequence[int] | None = None,
               data_dir: str | os.PathLike | None = None, gray: bool = True) -> np.ndarray:
    """Loads an image in [0, 1] as a float64 `(H, W)` array (or `(H, W, 3)` for colour
    with `gray=False`).

    Args:
        name: a built-in name (scikit-image's bundled images: `camera`, `astronaut`, `moon`,
            `coins`, ...; see `BUILTIN_IMAGES`) or a file path, or a file name searched in
            `data_dir` and `$MULTIGRADE_DATA`.
        size: resize to `size × size` or to `(H, W)`; None keeps the original size.
        data_dir: a folder to search for `name`.
        gray: convert colour to gray (the paper's experiments are gray).

    Raises:
        ImageNotFoundError: nothing matches; the message names every place searched.
    """
    key = name.lower()
    if key in BUILTIN_IMAGES and not Path(name).exists():
        import skimage.data

        image = getattr(skimage.data, BUILTIN_IMAGES[key])()
    else:
        image = read_image(find_image(name, image_search_dirs(data_dir)))
    image = to_float(image, gray)
    return image if size is None else resize(image, size)


def coordinate_grid(height: int, width: int) -> np.ndarray:
    """Pixel coordinates as in the paper's code, shape `(H, W, 2)`.

    `X[i, j] = (j / W, i / H)`: `stack(meshgrid(linspace(0, 1, W, endpoint=False),
    linspace(0, 1, H, endpoint=False)), -1)`.
    """
    cx = np.linspace(0.0, 1.0, height, endpoint=False)
    cy = np.linspace(0.0, 1.0, width, endpoint=False)
    return np.stack(np.meshgrid(cy, cx), axis=-1)


def split_even_odd(grid: np.ndarray, image: np.ndarray):
    """Train on even rows and columns, validate on odd ones: `((x, y), (x, y))`, with
    `y` of shape `(n,)` for gray and `(n, C)` for colour images."""
    c = image.shape[2:]
    train = (grid[::2, ::2].reshape(-1, 2), image[::2, ::2].reshape(-1, *c))
    val = (grid[1::2, 1::2].reshape(-1, 2), image[1::2, 1::2].reshape(-1, *c))
    return train, val
