import json

import jax
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade import runs


def test_run_directory_round_trip(tmp_path, key):
    problem = mg.image_regression(mg.load_image("camera", size=16))
    r = mg.fit(mg.mgdl([[8, 8]] * 2), problem, optimizer=optax.adam(1e-2), epochs=20, key=key,
               progress=False)
    out = runs.save_run(tmp_path / "run", r, {"seed": 0})
    for name in ("config.json", "history.csv", "metrics.json", "params.npz", "grades.png",
                 "history.png"):
        assert (out / name).is_file(), name
    params, scales = runs.load_params(out / "params.npz")
    assert scales == r.scales
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(r.params)):
        np.testing.assert_array_equal(a, b)
    history = runs.read_history(out / "history.csv")
    for name, values in r.history.items():
        np.testing.assert_array_equal(history[name], values)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["test_psnr"] == r.metrics["test_psnr"]
    assert [g["epochs"] for g in metrics["grades"]] == [20, 20]
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["grades"] == [[8, 8], [8, 8]]
    assert config["environment"]["x64"] is True


def test_any_model_round_trips_with_like(tmp_path, key):
    problem = mg.synthetic(1)
    model = mg.msdl((1, 2), (4, 4))
    r = mg.fit(model, problem, optimizer=optax.adam(1e-2), epochs=10, key=key, progress=False)
    out = runs.save_run(tmp_path / "msdl", r, {})
    with np.load(out / "params.npz", allow_pickle=False) as data:
        assert "grade1/1/2/W" in data.files  # sub-network 1, layer 2 (its head)
    params, scales = runs.load_params(out / "params.npz",
                                      like=[model.init_grade(key, 0, 1)])
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(r.params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not hold a multi-grade model"):
        runs.load_params(out / "params.npz")


def test_colour_image_regression(key):
    rgb = mg.load_image("astronaut", size=16, gray=False)
    problem = mg.image_regression(rgb)
    assert problem.out_dim == 3 and problem.y["test"].shape == (256, 3)
    r = mg.fit(mg.mgdl([[8]] * 2, out_dim=3), problem, optimizer=optax.adam(1e-2), epochs=20,
               key=key, progress=False)
    image = problem.render(r.predictions[-1])
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(r.metrics["test_psnr"], mg.psnr(image, rgb), rtol=1e-10)
