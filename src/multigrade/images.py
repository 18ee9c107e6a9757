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


def check_unit_range(image: np.ndarray, what: str = "image") -> np.ndarray:
    """`image` if every value is finite and in [0, 1]; otherwise a ValueError saying why.

    The rule for float data: values must already lie in [0, 1] (PSNR is computed with
    peak 1). Integer data are scaled by their type's maximum when read (`to_float`), so
    8-bit files need nothing; float arrays of 0–255 values must be divided by 255 first.
    """
    image = np.asarray(image)
    if not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise ValueError(f"{what} has {bad} NaN or infinite value(s)")
    lo, hi = float(np.min(image)), float(np.max(image))
    if lo < 0.0 or hi > 1.0:
        hint = " (divide 8-bit data by 255)" if hi <= 255 and hi > 1 else ""
        raise ValueError(f"{what} values span [{lo:.4g}, {hi:.4g}]; expected [0, 1]{hint}")
    return image


def to_float(image: np.ndarray, gray: bool = True) -> np.ndarray:
    """Converts an image of any common dtype to float64 in [0, 1].

    Integer images are divided by their type's maximum (255 for 8-bit, 65535 for 16-bit);
    boolean images become 0 and 1; float images must already lie in [0, 1] and be finite
    (`check_unit_range`), else a ValueError says so. With `gray`, colour becomes gray
    `(H, W)` (scikit-image's `rgb2gray` weights); otherwise colour stays `(H, W, 3)`
    (alpha dropped) and gray stays `(H, W)`.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float64)
    elif np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float64) / np.iinfo(image.dtype).max
    else:
        image = check_unit_range(image.astype(np.float64))
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
    return np.clip(image, 0.0, 1.0)  # rgb2gray's rounding only


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


def is_builtin(name: str) -> bool:
    """A bare name of a built-in image (no folder, no suffix) always means the built-in:
    a file or folder of that name in the working directory does not hide it (write
    `./camera.png` for a file)."""
    return name.lower() in BUILTIN_IMAGES and Path(name).name == name and not Path(name).suffix


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
    if not name:
        raise ImageNotFoundError("no image name given")
    if is_builtin(name):
        import skimage.data

        image = getattr(skimage.data, BUILTIN_IMAGES[name.lower()])()
    else:
        image = read_image(find_image(name, image_search_dirs(data_dir)))
    image = to_float(image, gray)
    return image if size is None else np.clip(resize(image, size), 0.0, 1.0)


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
