import imageio.v3 as iio
import numpy as np
import pytest

import multigrade as mg
from multigrade.images import coordinate_grid, split_even_odd, to_gray


def test_coordinate_grid_matches_paper_construction():
    H, W = 4, 6
    X = coordinate_grid(H, W)
    assert X.shape == (H, W, 2)
    for i in range(H):
        for j in range(W):
            np.testing.assert_allclose(X[i, j], [j / W, i / H])


def test_even_odd_split_and_image_regression_shapes():
    image = np.arange(6 * 8, dtype=float).reshape(6, 8) / 47
    (xt, yt), (xv, yv) = split_even_odd(coordinate_grid(6, 8), image)
    assert xt.shape == (12, 2) and xv.shape == (12, 2)
    np.testing.assert_allclose(yt, image[::2, ::2].ravel())
    np.testing.assert_allclose(yv, image[1::2, 1::2].ravel())
    np.testing.assert_allclose(xv[0], [1 / 8, 1 / 6])  # pixel (1, 1)
    p = mg.image_regression(image)
    assert p.x["test"].shape == (48, 2) and p.y["test"].shape == (48, 1)
    np.testing.assert_allclose(p.render(p.y["test"]), image)


def test_builtin_images_are_gray_in_unit_range():
    for name in ("camera", "astronaut", "coins"):
        im = mg.load_image(name)
        assert im.ndim == 2 and im.min() >= 0 and im.max() <= 1
    assert mg.load_image("camera", size=32).shape == (32, 32)
    assert mg.load_image("camera", size=(20, 30)).shape == (20, 30)
    np.testing.assert_allclose(mg.load_image("camera")[:2, :2] * 255,
                               __import__("skimage.data").data.camera()[:2, :2])


def test_gray_conversion_of_dtypes():
    np.testing.assert_allclose(to_gray(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])
    np.testing.assert_allclose(to_gray(np.array([[0, 65535]], np.uint16)), [[0.0, 1.0]])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 255
    np.testing.assert_allclose(to_gray(rgba), np.ones((2, 2)))


@pytest.mark.parametrize("suffix", [".png", ".tif", ".gif"])
def test_load_from_file_and_data_dir(tmp_path, suffix):
    image = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    path = tmp_path / f"ramp{suffix}"
    iio.imwrite(path, image)
    np.testing.assert_allclose(mg.load_image(str(path)), image / 255)
    # by name in a data folder, suffix optional
    np.testing.assert_allclose(mg.load_image("ramp", data_dir=tmp_path), image / 255)


def test_missing_image_names_every_place_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIGRADE_DATA", str(tmp_path / "env"))
    with pytest.raises(mg.ImageNotFoundError) as e:
        mg.load_image("nothing_here", data_dir=tmp_path / "dd")
    msg = str(e.value)
    assert "nothing_here" in msg and str(tmp_path / "dd") in msg and str(tmp_path / "env") in msg


def test_unreadable_file_is_a_value_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        mg.load_image(str(bad))
