"""The layer above `fit`: configs, run directories, resume and grow, signals, bad input."""

import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade import experiments, runs
from multigrade.cli import app
from multigrade.experiments import ModelConfig, ProblemConfig, RunConfig, TrainConfig

runner = CliRunner()
TINY = ["--image", "camera", "--size", "16", "--grades", "2", "--layers-per-grade", "1",
        "--width", "8", "--quiet"]


def _cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def assert_same_arrays(a, b):
    a, b = runs.read_npz(a), runs.read_npz(b)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def assert_same_history(a, b):
    a, b = runs.read_history(a), runs.read_history(b)
    assert a.keys() == b.keys()
    for name in a:
        if name != "seconds":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# --------------------------------------------------------------------------------------
# Run directories


def test_an_existing_out_is_refused_and_overwrite_replaces_it(tmp_path):
    out = tmp_path / "run"
    _cli("fit", "regression", *TINY, "--epochs", 20, "--out", out)
    (out / "baselines.json").write_text("[]")  # a file of the store's, from before
    res = runner.invoke(app, ["fit", "regression", *TINY, "--epochs", "20", "--out", str(out)])
    assert res.exit_code == 2 and "exists and is not empty" in res.stderr
    _cli("fit", "regression", *TINY, "--epochs", 10, "--overwrite", "--out", out)
    assert not (out / "baselines.json").exists()
    assert runs.read_history(out / "history.csv")["epoch"].tolist() == [10, 10]


@pytest.mark.parametrize("kind", ["file", "unwritable", "long"])
def test_an_unusable_out_fails_before_any_training(tmp_path, monkeypatch, kind):
    from multigrade.experiments import runner as run_module

    calls = []
    real_fit = run_module.fit
    monkeypatch.setattr(run_module, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    if kind == "file":
        out = tmp_path / "taken"
        out.write_text("x")
    elif kind == "unwritable":
        out = "/proc/no-such-place/run"
    else:
        out = tmp_path / ("x" * 300)
    res = runner.invoke(app, ["fit", "regression", *TINY, "--epochs", "10", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert calls == []  # no epoch ran


@pytest.mark.integration
def test_parallel_runs_with_default_names_get_their_own_directories(tmp_path):
    cmd = [sys.executable, "-m", "multigrade", "fit", "regression", *TINY, "--epochs", "10"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    made = sorted((tmp_path / "runs").iterdir())
    assert len(made) == 2
    assert all(runs.read_status(d)["state"] == "completed" for d in made)


# --------------------------------------------------------------------------------------
# Interruption, resume, grow


def _wait_for(predicate, proc, seconds=240):
    t0 = time.monotonic()
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() - t0 < seconds, "timed out"
        time.sleep(0.01)


def _finished(run_dir):
    try:
        return runs.read_status(run_dir).get("finished_grades", [])
    except (runs.RunDirError, FileNotFoundError):
        return []


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_keeps_finished_grades_and_resume_ends_as_an_uninterrupted_run(tmp_path, sig):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "multigrade", "--x64", "fit", "regression", *TINY,
           "--epochs", "40000", "--checkpoint-every", "2000", "--out", str(run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: _finished(run_dir) == [1], proc)  # grade 1 is checkpointed
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + sig, err.decode()
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and str(run_dir) in lines[0] and signal.Signals(sig).name in lines[0]
    assert "keeps grade 1 and grade 2 at epoch" in lines[0]
    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted" and status["finished_grades"] == [1]
    assert status["pending"]["grade"] == 2
    # the checkpoint holds grade 1 as trained: its parameters are already in params.npz
    assert runs.read_npz(run_dir / "params.npz")["scales"].tolist() == [1.0]

    res = subprocess.run([sys.executable, "-m", "multigrade", "resume", str(run_dir),
                          "--quiet"], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    assert runs.read_status(run_dir)["state"] == "completed"
    # the same config, uninterrupted, in this process
    reference = experiments.execute(experiments.load_config(run_dir), tmp_path / "ref")
    assert_same_arrays(run_dir / "params.npz", reference.run_dir / "params.npz")
    assert_same_history(run_dir / "history.csv", reference.run_dir / "history.csv")


@pytest.mark.integration
def test_grow_equals_training_all_grades_at_once(tmp_path):
    _cli("fit", "denoise", *TINY, "--epochs", 20, "--out", tmp_path / "two")
    res = _cli("grow", tmp_path / "two", "--grades", 1, "--quiet")
    assert "mgdl" in res.output
    assert runs.read_toml(tmp_path / "two" / "config.toml")["model"]["grades"] == 3
    assert runs.read_status(tmp_path / "two")["finished_grades"] == [1, 2, 3]
    _cli("fit", "denoise", *TINY[:-5], "--grades", 3, "--layers-per-grade", 1, "--width", 8,
         "--quiet", "--epochs", 20, "--out", tmp_path / "three")
    assert_same_arrays(tmp_path / "two" / "params.npz", tmp_path / "three" / "params.npz")
    assert_same_history(tmp_path / "two" / "history.csv", tmp_path / "three" / "history.csv")
    # what grow refuses
    _cli("fit", "regression", *TINY, "--method", "sgdl", "--epochs", 10,
         "--out", tmp_path / "sgdl")
    res = runner.invoke(app, ["grow", str(tmp_path / "sgdl")])
    assert res.exit_code == 2 and "is not an MGDL run" in res.stderr
    res = runner.invoke(app, ["grow", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no run directory at" in res.stderr


def test_resume_of_a_comparison_continues_where_it_stopped(tmp_path):
    out = tmp_path / "cmp"
    _cli("compare", "regression", *TINY, "--epochs", 20, "--out", out)
    before = runs.read_npz(out / "mgdl" / "params.npz")
    # as if interrupted while SGDL trained: its run directory is gone
    import shutil

    shutil.rmtree(out / "sgdl")
    runs.write_status(out, "interrupted")
    res = _cli("resume", out, "--quiet")
    assert "sgdl" in res.output and "mgdl" in res.output
    assert runs.read_status(out)["state"] == "completed"
    for name, a in runs.read_npz(out / "mgdl" / "params.npz").items():
        np.testing.assert_array_equal(a, before[name])  # MGDL was not trained again


@pytest.mark.integration
def test_figures_are_drawn_from_the_run_directory_alone(tmp_path):
    from multigrade import report

    _cli("compare", "denoise", *TINY, "--epochs", 20, "--out", tmp_path / "c")
    figures = [tmp_path / "c" / "comparison.png", tmp_path / "c" / "mgdl" / "grades.png",
               tmp_path / "c" / "mgdl" / "history.png"]
    for f in figures:
        f.unlink()
    report.plot_run(tmp_path / "c" / "mgdl")
    report.plot_comparison(tmp_path / "c")
    assert all(f.is_file() and f.stat().st_size > 1000 for f in figures)
    images = runs.read_npz(tmp_path / "c" / "mgdl" / "images.npz")
    assert sorted(images) == ["grade1", "grade2", "reference/clean", "reference/observed"]


def test_load_result_replays_a_finished_run(tmp_path):
    out = experiments.execute(RunConfig(problem=ProblemConfig(size=16), model=ModelConfig(
        grades=2, layers_per_grade=1, width=8), train=TrainConfig(epochs=20)), tmp_path / "r")
    loaded = experiments.load_result(out.run_dir)
    original = out.results["mgdl"]
    np.testing.assert_array_equal(loaded.predictions[-1], original.predictions[-1])
    assert loaded.metrics == original.metrics
    np.testing.assert_array_equal(loaded.predict(original.problem.x["test"], grades=1),
                                  original.predict(original.problem.x["test"], grades=1))



def test_load_result_replays_a_run_that_stopped_adding_grades(tmp_path):
    # min_gain stops after grade 1 of 3 (no grade gains 100 dB); the replay rebuilds the
    # model of the grades kept, each with its own architecture
    cfg = RunConfig(problem=ProblemConfig(size=16), model=ModelConfig(
        grades=3, layers_per_grade=1, width=8, archs=("fourier", "relu", "relu")),
        train=TrainConfig(epochs=20, min_gain=100.0))
    out = experiments.execute(cfg, tmp_path / "r")
    original = out.results["mgdl"]
    assert len(original.grades) == 1
    loaded = experiments.load_result(out.run_dir)
    assert loaded.model.archs == ("fourier",)
    np.testing.assert_array_equal(loaded.predictions[-1], original.predictions[-1])
    assert loaded.metrics == original.metrics

# --------------------------------------------------------------------------------------
# Bad input and divergence (Python API)


def test_bad_data_is_refused_not_trained():
    image = mg.load_image("camera", size=8)
    nan = image.copy()
    nan[2, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        mg.image_regression(nan)
    with pytest.raises(ValueError, match=r"values span \[20, 210\]; expected \[0, 1\] \(divide"):
        mg.image_regression(np.round(image * 255))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mg.denoising(nan, 0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="targets hold NaN"):
        mg.Regression.from_arrays({"train": (np.zeros((3, 1)), [0.0, np.inf, 1.0])})


def test_a_folder_does_not_hide_a_builtin_image(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "camera").mkdir()
    assert mg.load_image("camera", size=8).shape == (8, 8)


def test_predict_checks_the_number_of_grades(key):
    problem = mg.image_regression(mg.load_image("camera", size=8))
    r = mg.fit(mg.mgdl([[4]] * 2), problem, optimizer=optax.adam(1e-2), epochs=10, key=key)
    for bad in (0, -1, 3):
        with pytest.raises(ValueError, match="grades must be an integer from 1 to 2"):
            r.predict(problem.x["test"], grades=bad)


def test_a_loss_that_explodes_is_diverged_even_while_finite(key):
    problem = mg.image_regression(mg.load_image("camera", size=16))
    r = mg.fit(mg.mgdl([[16]] * 2), problem, optimizer=optax.adam(1e9), epochs=50, key=key)
    assert np.all(np.isfinite(r.history["train_loss"]))
    assert r.diverged and len(r.grades) == 1 and r.grades[0].status == "diverged"


def test_later_grades_of_equal_shape_are_not_traced_again(monkeypatch, key):
    from multigrade.train import _engine as train

    traces = []
    real = train._chunk
    monkeypatch.setattr(train, "_chunk", lambda *a, **k: traces.append(1) or real(*a, **k))
    problem = mg.image_regression(mg.load_image("camera", size=16))
    mg.fit(mg.mgdl([[8, 8]] * 4), problem, optimizer=optax.adam(1e-3), epochs=20, key=key)
    # grade 1 (input 2) and grade 2 (input 8) have their own shapes; grades 3, 4 reuse 2's
    assert len(traces) == 2
    r = mg.fit(mg.mgdl([[8, 8]] * 4), problem, optimizer=[optax.adam(1e-3)] * 4, epochs=20,
               key=key)
    assert len(traces) == 4 and r.grades[3].compile_seconds == 0.0


def test_checkpoints_and_status_are_written_during_training(tmp_path):
    # a run read while it trains: the status says how far it is, and every file it names
    # is whole
    seen = []

    class Watch(mg.train.Callback):
        def on_records(self, grade, rows):
            status = runs.read_status(tmp_path / "w")
            seen.append((status["state"], tuple(status["finished_grades"]),
                         (status.get("pending") or {}).get("epoch")))

    cfg = RunConfig(problem=ProblemConfig(size=16), model=ModelConfig(
        grades=2, layers_per_grade=1, width=8), train=TrainConfig(epochs=40,
                                                                   checkpoint_every=20))
    experiments.execute(cfg, tmp_path / "w", progress=lambda label, grades: Watch())
    assert seen[0] == ("running", (), None)
    assert ("running", (), 20) in seen and ("running", (1,), 20) in seen
    assert runs.read_status(tmp_path / "w")["state"] == "completed"
