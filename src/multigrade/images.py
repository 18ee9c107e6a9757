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
# Images above this many pixels are refused before they are decoded (a small compressed file
# can hold a huge image); $MULTIGRADE_MAX_PIXELS or `max_pixels` sets another limit.
MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "MULTIGRADE_MAX_PIXELS"


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


def max_pixels(limit: int | None = None) -> int:
    """The pixel limit in force: `limit`, else $MULTIGRADE_MAX_PIXELS, else `MAX_PIXELS`."""
    if limit is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not text:
            return MAX_PIXELS
        try:
            limit = int(float(text))
        except ValueError:
            raise ValueError(f"${MAX_PIXELS_ENV} must be a number of pixels, got "
                             f"{text!r}") from None
    if limit < 1:
        raise ValueError(f"the pixel limit must be positive, got {limit}")
    return int(limit)


def _header_pixels(data: bytes) -> int | None:
    """Width × height from the file's header, without decoding it (None if Pillow cannot
    tell)."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own decompression-bomb warning
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]) * int(im.size[1])
    except Exception:  # noqa: BLE001 (not an image Pillow knows: imageio decides)
        return None


def read_image(path: str | os.PathLike, *, limit: int | None = None) -> np.ndarray:
    """Reads an image file (PNG, TIFF, GIF, JPEG, ...) as stored. An image of more than
    `max_pixels(limit)` pixels is refused before it is decoded."""
    import warnings

    import imageio.v3 as iio
    from PIL import Image

    path = Path(path)
    # Read the bytes ourselves: imageio leaves files open when no plugin can read them.
    data = path.read_bytes()
    most = max_pixels(limit)
    pixels = _header_pixels(data)
    if pixels is not None and pixels > most:
        raise ValueError(f"image {str(path)!r} has {pixels:,} pixels, above the limit of "
                         f"{most:,} (set ${MAX_PIXELS_ENV} to allow more)")
    try:
        with warnings.catch_warnings():  # the limit above is the one that applies
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            bomb, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = iio.imread(data, extension=path.suffix.lower() or None)
            finally:
                Image.MAX_IMAGE_PIXELS = bomb
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
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"load_image takes an image name or a path, got {name!r}")
    name = os.fspath(name)
    if not name:
        raise ImageNotFoundError("no image name given")
    if is_builtin(name):
        image = builtin_image(name)
    else:
        image = read_image(find_image(name, image_search_dirs(data_dir)))
    image = to_float(image, gray)
    return image if size is None else np.clip(resize(image, size), 0.0, 1.0)


def builtin_image(name: str) -> np.ndarray:
    """A built-in image as scikit-image ships it."""
    import skimage.data

    return getattr(skimage.data, BUILTIN_IMAGES[name.lower()])()


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def pin(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """What `name` refers to now, pinned: `{"image": absolute path, "image_sha256": of the
    file's bytes}`, or for a built-in image `{"image": "builtin:<name>", "image_sha256": of
    its pixels, "image_version": "scikit-image <version>"}`."""
    if is_builtin(name):
        import skimage

        return {"image": f"builtin:{BUILTIN_IMAGES[name.lower()]}",
                "image_sha256": _sha256(np.ascontiguousarray(builtin_image(name)).tobytes()),
                "image_version": f"scikit-image {skimage.__version__}"}
    path = find_image(name, image_search_dirs(data_dir)).resolve()
    return {"image": str(path), "image_sha256": _sha256(path.read_bytes())}


def check_pin(image: str, sha256: str | None, version: str | None = None) -> str:
    """The name to load a pinned image by (`pin`), after checking that its content is
    still the pinned one; a ValueError naming both hashes (or the missing file) if not."""
    if image.startswith("builtin:"):
        name = image[len("builtin:"):]
        if name not in BUILTIN_IMAGES:
            raise ValueError(f"the run read the built-in image {name!r}, which this "
                             "version does not have")
        now = pin(name)
        if sha256 is not None and now["image_sha256"] != sha256:
            raise ValueError(f"the run read the built-in image {name!r} of {version} "
                             f"(SHA-256 {sha256}); {now['image_version']} ships other pixels "
                             f"(SHA-256 {now['image_sha256']}): continue it with {version}")
        return name
    path = Path(image)
    if not path.is_file():
        raise ValueError(f"the run read the image {path} (SHA-256 {sha256}), which is "
                         "missing now: put it back to continue the run")
    now = _sha256(path.read_bytes())
    if sha256 is not None and now != sha256:
        raise ValueError(f"the image {path} changed since the run read it (SHA-256 "
                         f"{sha256} then, {now} now): restore it to continue the run")
    return str(path)


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
