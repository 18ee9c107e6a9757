"""The run store: atomic files, claimed directories, status records, named arrays."""

import json
import threading

import jax
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade import runs


def test_atomic_write_never_shows_a_partial_file(tmp_path):
    path = tmp_path / "history.csv"
    runs.write_text(path, "old\n")
    with pytest.raises(RuntimeError), runs.atomic_open(path) as f:
        f.write("half of a new")
        assert path.read_text() == "old\n"  # nothing under the final name yet
        raise RuntimeError("interrupted while writing")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary left


@pytest.mark.integration
def test_readers_see_whole_files_while_a_writer_rewrites_them(tmp_path):
    path = tmp_path / "metrics.json"
    sizes = [10, 5000, 20, 80000]
    runs.write_json(path, {"x": list(range(sizes[0]))})
    stop, seen = threading.Event(), []

    def read():
        while not stop.is_set():
            seen.append(len(json.loads(path.read_text())["x"]))  # raises on a partial file

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(60):
        runs.write_json(path, {"x": list(range(sizes[i % 4]))})
    stop.set()
    reader.join()
    assert seen and set(seen) <= set(sizes)


def test_json_is_strict(tmp_path):
    runs.write_json(tmp_path / "m.json", {"loss": float("nan"), "psnr": np.float32(12.5),
                                          "v": [np.inf, 1.0], "a": np.arange(2)})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "psnr": 12.5, "v": [None, 1.0], "a": [0, 1]}


def test_claim_refuses_what_it_must(tmp_path):
    with pytest.raises(runs.RunDirError, match="empty string"):
        runs.claim("", "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(runs.RunDirError, match="not a directory"):
        runs.claim(tmp_path / "file", "run")
    # a user's folder is never cleared, even with overwrite
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("precious")
    with pytest.raises(runs.RunDirError, match="exists and is not empty"):
        runs.claim(tmp_path / "mine", "run")
    with pytest.raises(runs.RunDirError, match=r"not made by mgdl .* holds config.json"):
        runs.claim(tmp_path / "mine", "run", overwrite=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["config.json"]
    assert (tmp_path / "mine" / "config.json").read_text() == "precious"
    # a finished run directory is cleared by overwrite, old files and all, under a new id
    with runs.claim(tmp_path / "run", "run") as held:
        out = held.path
        first = runs.owner(out)["id"]
        runs.write_status(out, "completed")
        (out / "comparison.json").write_text("{}")
    with runs.claim(out, "run", overwrite=True):
        left = sorted(p.name for p in out.iterdir())
        assert left == sorted([runs.LOCK, runs.MARKER, runs.STATUS])
        assert runs.read_status(out)["state"] == "running"
        assert runs.owner(out)["id"] != first and runs.owner(out)["kind"] == "run"


def test_two_claims_of_one_directory_cannot_both_win(tmp_path):
    results, held = [], []

    def claim():
        try:
            held.append(runs.claim(tmp_path / "same", "run"))
            results.append("won")
        except runs.RunDirError:
            results.append("refused")

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["refused"] * 7 + ["won"]


def test_a_lock_is_reentrant_in_its_thread_and_refused_elsewhere(tmp_path):
    with runs.claim(tmp_path / "d", "run", command="mgdl fit") as held:
        with runs.lock(held.path):  # the same thread: one more hold
            assert runs.holds_lock(held.path)
        assert runs.holds_lock(held.path)
        seen = []
        thread = threading.Thread(target=lambda: seen.append(_try_lock(held.path)))
        thread.start()
        thread.join()
        assert "in use by pid" in seen[0] and "mgdl fit" in seen[0]
    assert not runs.holds_lock(tmp_path / "d")
    runs.lock(tmp_path / "d").release()  # free again
    assert (tmp_path / "d" / runs.LOCK).read_text() == ""  # no stale holder


def _try_lock(path):
    try:
        runs.lock(path).release()
        return "locked"
    except runs.RunDirError as e:
        return str(e)


def test_default_names_are_unique_within_one_second(tmp_path):
    names = {runs.default_out("fit", root=tmp_path) for _ in range(20)}
    assert len(names) == 20 and all(p.is_dir() for p in names)


def test_params_round_trip_and_shape_check(tmp_path, key):
    problem = mg.image_regression(mg.load_image("camera", size=16))
    model = mg.mgdl([[8, 8]] * 2)
    r = mg.fit(model, problem, optimizer=optax.adam(1e-2), epochs=20, key=key)
    runs.save_params(tmp_path / "params.npz", r.params, r.scales)
    like = model.init_params(key, 2)
    params, scales = runs.load_params(tmp_path / "params.npz", like)
    assert scales == r.scales
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(r.params)):
        np.testing.assert_array_equal(a, b)
    wider = mg.mgdl([[9, 8]] * 2).init_params(key, 2)
    with pytest.raises(ValueError, match=r"'grade1/hidden/0/W' has shape \(2, 8\), the model "
                                         r"expects \(2, 9\)"):
        runs.load_params(tmp_path / "params.npz", wider)
    with pytest.raises(ValueError, match="2 grades stored, 1 given"):
        runs.load_params(tmp_path / "params.npz", like[:1])
    with np.load(tmp_path / "params.npz", allow_pickle=False) as data:  # no pickle inside
        assert "grade2/head/W" in data.files


def test_any_model_round_trips(tmp_path, key):
    model = mg.msdl((1, 2), (4, 4))
    r = mg.fit(model, mg.synthetic(1), optimizer=optax.adam(1e-2), epochs=10, key=key)
    runs.save_params(tmp_path / "p.npz", r.params, r.scales)
    with np.load(tmp_path / "p.npz", allow_pickle=False) as data:
        assert "grade1/1/2/W" in data.files  # sub-network 1, layer 2 (its head)
    params, _ = runs.load_params(tmp_path / "p.npz", model.init_params(key, 1))
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(r.params)):
        np.testing.assert_array_equal(a, b)


def test_history_round_trips_exactly(tmp_path):
    h = {"grade": np.array([1, 1, 2]), "step": np.array([10, 20, 30]),
         "train_loss": np.array([0.1, 1 / 3, np.nan])}
    runs.write_history(tmp_path / "h.csv", h)
    back = runs.read_history(tmp_path / "h.csv")
    for name in h:
        np.testing.assert_array_equal(back[name], h[name])
    # rows written as they come (a run in progress), one of them without a column: NaN
    runs.write_rows(tmp_path / "r.csv", [{"grade": 1, "coarse": 4}, {"grade": 1}])
    back = runs.read_history(tmp_path / "r.csv")
    np.testing.assert_array_equal(back["coarse"], [4.0, np.nan])


def test_colour_image_regression(key):
    rgb = mg.load_image("astronaut", size=16, gray=False)
    problem = mg.image_regression(rgb)
    assert problem.out_dim == 3 and problem.y["test"].shape == (256, 3)
    r = mg.fit(mg.mgdl([[8]] * 2, out_dim=3), problem, optimizer=optax.adam(1e-2), epochs=20,
               key=key)
    image = problem.render(r.predictions[-1])
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(r.metrics["test_psnr"], mg.psnr(image, rgb), rtol=1e-10)


def test_the_environment_names_the_machine_timings_ran_on():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = runs.environment()
    assert env["backend"] == jax.default_backend() and env["jax"] == jax.__version__
    info = Path("/proc/cpuinfo")
    if info.is_file():  # the name /proc/cpuinfo gives, read here independently
        names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                 if line.startswith("model name")]
        assert not names or env["cpu"].startswith(names[0])
    assert env["cpu"]
    if hasattr(os, "sched_setaffinity"):  # the cores follow the process's affinity
        assert env["cores"] == len(os.sched_getaffinity(0))
        one = subprocess.run(
            [sys.executable, "-c",
             "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
             "from multigrade import runs; print(runs.environment()['cores'])"],
            capture_output=True, text=True, check=True)
        assert one.stdout.strip() == "1"


def test_a_resumed_run_keeps_its_earlier_environments_oldest_first(tmp_path):
    first = runs.record_environment(tmp_path)
    assert "earlier" not in first
    runs.write_json(tmp_path / runs.ENVIRONMENT, {**first, "cpu": "first"})
    second = runs.record_environment(tmp_path, resumed=True)
    assert [e["cpu"] for e in second["earlier"]] == ["first"]
    third = runs.record_environment(tmp_path, resumed=True)
    assert [e["cpu"] for e in third["earlier"]] == ["first", second["cpu"]]
    assert "earlier" not in third["earlier"][1]  # flat, not nested
    assert runs.read_json(tmp_path / runs.ENVIRONMENT) == third
    (tmp_path / runs.ENVIRONMENT).write_text("{not json")  # a damaged record is named, kept
    fourth = runs.record_environment(tmp_path, resumed=True)
    assert "damaged" in fourth["earlier"][0]["unreadable"]
    assert "earlier" not in runs.record_environment(tmp_path)  # a fresh start: no history
