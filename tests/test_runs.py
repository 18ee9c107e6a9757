import json

import jax
import numpy as np
import optax

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
