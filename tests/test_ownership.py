"""Who may write or delete what: the run store's marker, locks, pinned inputs, true statuses
and bounds. Every `mgdl` command pointed at a folder it did not make leaves it byte for byte;
locks are tested with live `mgdl` processes and killed holders."""

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade import runs
from multigrade.cli import app
from multigrade.experiments import execute, runner
from multigrade.experiments.config import RunConfig
from procs import mgdl, running

cli = CliRunner()
SMALL = ["--size", "16", "--epochs", "20", "--grades", "2", "--layers-per-grade", "1",
         "--width", "8", "--quiet"]
TINY = ["--image", "camera", *SMALL]
DEBLUR = ["--image", "camera", "--size", "40", *SMALL[2:]]  # room for a 19-pixel blur


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under `folder`."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def user_folder(root: Path) -> Path:
    """A folder of a user's own: code, data and files named like the store's."""
    d = root / "mine"
    (d / "src").mkdir(parents=True)
    (d / "src" / "main.py").write_text("print('hello')\n")
    (d / "data.csv").write_text("a,b\n1,2\n")
    (d / "status.json").write_text('{"build": "passing"}\n')
    (d / "metrics.json").write_text('{"accuracy": 0.9}\n')
    (d / "config.toml").write_text('command = "fit"\n')
    (d / "report.html").write_text("<html><body>my own page</body></html>\n")
    (d / "params.npz").write_bytes(b"not an npz")
    return d


def wait_for(predicate, what: str, timeout: float = 120.0, proc=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = predicate()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended ({proc.returncode}) before {what}: "
                                 f"{proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def holder(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / runs.LOCK).read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


@pytest.fixture
def done_run(tiny_run) -> Path:
    """A finished run (a copy of the session's tiny run)."""
    return tiny_run


# ---------------------------------------------------------------------------------------
# 1-3 and the walk: a folder mgdl did not make is never modified


def test_every_command_leaves_a_users_folder_byte_for_byte(tmp_path, done_run,
                                                          monkeypatch):
    mine = user_folder(tmp_path)
    before = snapshot(mine)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('command = "fit"\n[problem]\nimage = "camera"\nsize = 16\n'
                   '[model]\ngrades = 1\nwidth = 8\n[train]\nepochs = 20\n')
    sweep = tmp_path / "s.toml"
    sweep.write_text('[base]\ncommand = "fit"\n[base.problem]\nsize = 16\n'
                     '[axes]\n"train.seed" = [0, 1]\n')
    monkeypatch.chdir(tmp_path)
    commands = []
    for overwrite in ([], ["--overwrite"]):
        commands += [
            ["fit", "regression", *TINY, "--out", mine, *overwrite],
            ["fit", "denoise", *TINY, "--out", mine, *overwrite],
            ["compare", "regression", *TINY, "--out", mine, *overwrite],
            ["compare", "deblur", *DEBLUR, "--out", mine, *overwrite],
            ["run", cfg, "--out", mine, *overwrite],
            ["demo", "--size", "16", "--epochs", "20", "--quiet", "--out", mine, *overwrite],
            ["lr-sweep", "synthetic", "--steps", "10", "--lrs", "0.1", "--quiet",
             "--out", mine, *overwrite],
            ["spectrum", "synthetic", "--steps", "10", "--interval", "10", "--quiet",
             "--out", mine, *overwrite],
            ["reproduce", "regression-camera", "--set", "train.epochs=10", "--quiet",
             "--out", mine, *overwrite],
        ]
    commands += [
        ["resume", mine], ["grow", mine], ["sweep", sweep, "--out", mine, "--quiet"],
        ["report", done_run, "-o", mine], ["report", done_run, "-o", mine / "report.html"],
        ["report", done_run, "-o", mine / "metrics.json"],
        ["report", done_run, "-o", mine / "params.npz"],
    ]
    for command in commands:
        res = cli.invoke(app, [str(c) for c in command])
        assert res.exit_code != 0, (command, res.output)
        assert "Traceback" not in res.output, (command, res.output)
        assert snapshot(mine) == before, command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml", "mine", "s.toml"]


def test_overwrite_never_clears_a_sweep(tmp_path):
    out = tmp_path / "sw"
    with runs.claim(out, "sweep"):
        (out / "runs").mkdir()
        runs.write_text(out / "results.csv", "run,status\n")
        runs.write_json(out / "summary.json", {"runs": 0})
    before = snapshot(out)
    res = cli.invoke(app, ["fit", "regression", *TINY, "--out", str(out), "--overwrite"])
    assert res.exit_code == 2 and "is a sweep directory: --overwrite never clears" in \
        res.output
    assert snapshot(out) == before


def test_overwrite_refuses_a_run_holding_a_users_file_and_clears_a_clean_one(tmp_path,
                                                                           tiny_run):
    out = tiny_run
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    res = cli.invoke(app, ["fit", "regression", *TINY, "--out", str(out), "--overwrite"])
    assert res.exit_code == 2 and "files mgdl did not write (notes.txt)" in res.output
    assert snapshot(out) == before
    (out / "notes.txt").unlink()
    first = runs.owner(out)["id"]
    res = cli.invoke(app, ["fit", "regression", *TINY, "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert runs.owner(out)["id"] != first and runs.read_status(out)["state"] == "completed"
    assert runs.foreign_files(out) == []


def test_a_report_is_written_only_over_a_report(tmp_path, done_run):
    metrics = (done_run / "metrics.json").read_bytes()
    for name in ("metrics.json", "params.npz"):
        res = cli.invoke(app, ["report", str(done_run), "-o", str(done_run / name)])
        assert res.exit_code == 2 and "is not an mgdl report" in res.output
    assert (done_run / "metrics.json").read_bytes() == metrics
    out = tmp_path / "r.html"
    for _ in range(2):  # a new file, then over the report it wrote
        res = cli.invoke(app, ["report", str(done_run), "-o", str(out)])
        assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.slow
def test_every_kind_of_run_directory_holds_only_the_stores_files(tmp_path):
    """The store's list of the files it writes covers every command (else --overwrite would
    refuse the store's own directories)."""
    outs = {"fit": ["fit", "denoise", *TINY], "compare": ["compare", "deblur", *DEBLUR,
                                                          "--select", "holdout"],
            "baselines": ["compare", "regression", *TINY, "--baselines", "ffn,siren"],
            "lr-sweep": ["lr-sweep", "synthetic", "--steps", "10", "--lrs", "0.1,1",
                         "--quiet"],
            "spectrum": ["spectrum", "synthetic", "--steps", "10", "--interval", "10",
                         "--quiet", "--density"]}
    for name, args in outs.items():
        res = cli.invoke(app, [*args, "--out", str(tmp_path / name)])
        assert res.exit_code == 0, (name, res.output)
        assert runs.foreign_files(tmp_path / name) == [], name
    res = cli.invoke(app, ["report", str(tmp_path / "compare"), "-o",
                           str(tmp_path / "compare" / "report.html")])
    assert res.exit_code == 0, res.output
    assert runs.foreign_files(tmp_path / "compare") == []


# ---------------------------------------------------------------------------------------
# 4: pinned inputs


@pytest.mark.integration
def test_a_relative_image_is_pinned_and_checked_on_grow(tmp_path):
    import imageio.v3 as iio

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rng = np.random.default_rng(0)
    iio.imwrite(a / "pic.png", (rng.random((16, 16)) * 255).astype(np.uint8))
    iio.imwrite(b / "pic.png", np.zeros((16, 16), np.uint8))
    res = mgdl("fit", "regression", "--image", "pic.png", *SMALL, "--out", "run", cwd=a)
    assert res.returncode == 0, res.stderr
    inputs = runs.read_toml(a / "run" / "config.toml")["inputs"]
    assert inputs["image"] == str((a / "pic.png").resolve())
    # from another folder holding another pic.png: the run's own image is used
    res = mgdl("grow", a / "run", "--quiet", cwd=b)
    assert res.returncode == 0, res.stderr
    target = runs.read_npz(a / "run" / "images.npz")["reference/target"]
    np.testing.assert_allclose(target, mg.load_image(str(a / "pic.png"), size=16))
    # changed, then missing: refused, naming both hashes and the file
    old = inputs["image_sha256"]
    iio.imwrite(a / "pic.png", np.full((16, 16), 7, np.uint8))
    res = mgdl("grow", a / "run", "--quiet", cwd=b)
    assert res.returncode == 2 and old in res.stderr and "changed since the run read it" in \
        res.stderr and str(a / "pic.png") in res.stderr
    (a / "pic.png").unlink()
    res = mgdl("grow", a / "run", "--quiet", cwd=b)
    assert res.returncode == 2 and "which is missing now" in res.stderr
    assert runs.read_status(a / "run")["finished_grades"] == [1, 2, 3]  # the grown run stays


def test_a_builtin_image_is_pinned_by_name_version_and_pixels(done_run):
    import skimage

    inputs = runs.read_toml(done_run / "config.toml")["inputs"]
    assert inputs["image"] == "builtin:camera"
    assert inputs["image_version"] == f"scikit-image {skimage.__version__}"
    import hashlib

    assert inputs["image_sha256"] == hashlib.sha256(skimage.data.camera().tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------
# 5-7: locks, with live processes


@pytest.mark.integration
def test_a_live_run_is_locked_and_a_killed_holder_frees_it(tmp_path):
    out = tmp_path / "run"
    with running("fit", "regression", *TINY[:-1], "--quiet", "--epochs", "100000",
                 "--checkpoint-every", "500", "--out", out) as first:
        wait_for(lambda: holder(out) == first.pid and (out / runs.CHECKPOINT).is_file(),
                 "the first checkpoint", proc=first)
        for args in (["resume", out], ["grow", out],
                     ["fit", "regression", *TINY, "--out", out, "--overwrite"]):
            res = mgdl(*args)
            assert res.returncode == 2, (args, res.stderr)
            assert f"is in use by pid {first.pid}" in res.stderr and "mgdl fit" in res.stderr
        first.kill()
        first.wait()
    runs.lock(out).release()  # the kernel released the killed process's lock
    with running("resume", out, "--quiet") as second:
        wait_for(lambda: holder(out) == second.pid, "the resume's lock", proc=second)
        res = mgdl("resume", out, "--quiet")
        assert res.returncode == 2 and f"in use by pid {second.pid}" in res.stderr
        time.sleep(1.0)  # into its training loop
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=120) == 128 + signal.SIGTERM
    assert runs.read_status(out)["state"] == "interrupted"


@pytest.mark.integration
def test_two_grows_at_once_one_is_refused_and_the_config_stays_whole(tmp_path, tiny_run):
    out = tiny_run
    text = (out / "config.toml").read_text()  # the grown grade trains long
    (out / "config.toml").write_text(text.replace("epochs = 20", "epochs = 100000"))
    with running("grow", out, "--quiet") as grow:
        wait_for(lambda: holder(out) == grow.pid, "the grow's lock", proc=grow)
        res = mgdl("grow", out, "--grades", "2", "--quiet")
        assert res.returncode == 2 and f"in use by pid {grow.pid}" in res.stderr
        time.sleep(1.0)
        grow.send_signal(signal.SIGINT)
        assert grow.wait(timeout=120) == 130
    from multigrade.experiments import load_config

    cfg = load_config(out)
    assert cfg.model.grades == 3  # the one grow that ran, nothing of the refused one
    status = runs.read_status(out)
    assert status["state"] == "interrupted" and status["pending"]["grade"] == 3


# ---------------------------------------------------------------------------------------
# 8: a comparison's sub-run is grown through its comparison


@pytest.mark.integration
def test_growing_a_comparisons_mgdl_updates_the_comparison(tmp_path):
    out = tmp_path / "cmp"
    assert cli.invoke(app, ["compare", "regression", *TINY, "--out", str(out)]).exit_code == 0
    res = cli.invoke(app, ["grow", str(out / "mgdl"), "--quiet"])
    assert res.exit_code == 0, res.output
    comparison = runs.read_json(out / "comparison.json")
    metrics = runs.read_json(out / "mgdl" / "metrics.json")
    assert len(comparison["mgdl"]["grades"]) == 3
    assert comparison["mgdl"]["metrics"] == metrics["metrics"]
    res = cli.invoke(app, ["resume", str(out), "--quiet"])  # crashed on the stale file
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["resume", str(out / "mgdl")])
    assert res.exit_code == 2 and f"part of the comparison {out}" in res.output
    res = cli.invoke(app, ["grow", str(out), "--quiet"])  # the comparison: its MGDL
    assert res.exit_code == 0, res.output
    assert len(runs.read_json(out / "comparison.json")["mgdl"]["grades"]) == 4


# ---------------------------------------------------------------------------------------
# 9: every exit leaves a true status


class _BlockSave(mg.Callback):
    """Puts a folder where the final predictions go, once the last grade ends: saving the
    results then fails as on a full or read-only disk."""

    def __init__(self, run_dir: Path, grades: int):
        self.run_dir, self.grades = run_dir, grades

    def on_grade_end(self, checkpoint):
        if len(checkpoint.grades) == self.grades:
            (self.run_dir / "predictions.npz").mkdir()


def _cfg(**model) -> RunConfig:
    return RunConfig().replace(problem={"size": 16}, train={"epochs": 20},
                               model={"grades": 2, "layers_per_grade": 1, "width": 8, **model})


def test_a_failed_save_leaves_status_failed_with_the_error(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(runs.RunDirError, match="saving the results .* failed .* status says "
                                               "failed"):
        execute(_cfg(), out, progress=lambda label, grades: _BlockSave(out, grades))
    status = runs.read_status(out)
    assert status["state"] == "failed" and "saving the results failed" in status["error"]
    assert "IsADirectoryError" in status["error"] and status["finished_grades"] == [1, 2]


def test_a_failed_overwrite_never_leaves_a_completed_status(tmp_path, monkeypatch):
    out = tmp_path / "run"
    execute(_cfg(), out)
    (out / "grades").mkdir()  # something rmtree has to remove
    import shutil

    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    # the folder is not the store's: refused before anything is deleted
    with pytest.raises(runs.RunDirError, match="did not write"):
        execute(_cfg(), out, overwrite=True)
    assert runs.read_status(out)["state"] == "completed"
    (out / "grades").rmdir()
    (out / "mgdl").mkdir()  # now a sub-run folder of the store's own kind
    runs.write_json(out / "mgdl" / runs.MARKER, {**runs.owner(out), "parent": runs.owner(
        out)["id"], "id": "sub"})
    with pytest.raises(runs.RunDirError, match="could not clear .* status says failed"):
        execute(_cfg(), out, overwrite=True)
    status = runs.read_status(out)
    assert status["state"] == "failed" and "Permission denied" in status["error"]


@pytest.mark.integration
def test_two_signals_during_the_final_save_leave_a_completed_run(tmp_path):
    script = tmp_path / "save.py"
    script.write_text(
        "import os, signal, sys\n"
        "from multigrade import report\n"
        "from multigrade.experiments import RunConfig, execute\n"
        "plot = report.plot_run\n"
        "def interrupted(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return plot(*a, **k)\n"
        "report.plot_run = interrupted\n"
        "cfg = RunConfig().replace(problem={'size': 16}, train={'epochs': 20},\n"
        "                          model={'grades': 2, 'layers_per_grade': 1, 'width': 8})\n"
        "execute(cfg, sys.argv[1])\n")
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert runs.read_status(out)["state"] == "completed"
    for name in ("params.npz", "metrics.json", "images.npz", "grades.png", "history.png"):
        assert (out / name).is_file(), name


@pytest.mark.integration
def test_ctrl_c_in_a_study_leaves_it_interrupted(tmp_path):
    out = tmp_path / "study"
    with running("lr-sweep", "synthetic", "--steps", "2000000", "--lrs", "0.01", "--quiet",
                 "--out", out) as proc:
        wait_for(lambda: holder(out) == proc.pid, "the study's lock", proc=proc)
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
        assert "interrupted" in proc.stderr.read()
    assert runs.read_status(out)["state"] == "interrupted"


# ---------------------------------------------------------------------------------------
# 10-11 and bounds


def test_a_huge_sweep_is_refused_before_it_starts(tmp_path):
    values = ", ".join(str(v) for v in range(100))
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'[base]\ncommand = "fit"\n[axes]\n"train.seed" = [{values}]\n'
                     f'"problem.noise_seed" = [{values}]\n"model.fourier_seed" = [{values}]\n'
                     f'"train.checkpoint_every" = [{", ".join(str(v + 1) for v in range(100))}]\n')
    res = cli.invoke(app, ["sweep", str(sweep), "--out", str(tmp_path / "sw")])
    assert res.exit_code == 2
    assert "100,000,000 runs (100 × 100 × 100 × 100), above the limit of 10,000" in res.output
    assert not (tmp_path / "sw").exists()


def _server(banner: bytes | None) -> tuple[str, socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if banner:
                conn.sendall(banner)

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}", server


def test_a_scheduler_address_that_is_not_dask_is_named(tmp_path):
    from multigrade.experiments.cluster import check_scheduler

    address, server = _server(b"SSH-2.0-OpenSSH_9.6\r\n")
    sweep = tmp_path / "s.toml"
    sweep.write_text('[base]\ncommand = "fit"\n[axes]\n"train.seed" = [0]\n')
    try:
        res = cli.invoke(app, ["sweep", str(sweep), "--out", str(tmp_path / "sw"),
                               "--scheduler", address, "--quiet"])
    finally:
        server.close()
    assert res.exit_code == 2 and f"--scheduler {address}: something answered that is not " \
        "a Dask scheduler" in res.output
    silent, server = _server(None)
    try:
        t0 = time.monotonic()
        with pytest.raises(ValueError, match=f"{silent}: no Dask scheduler answered within"):
            check_scheduler(silent, timeout=1.0)
        assert time.monotonic() - t0 < 30
    finally:
        server.close()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width × height 8-bit gray pixels (its data cut short)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(
        b"IEND", b"")


def test_a_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(12_000, 12_000))
    res = cli.invoke(app, ["fit", "regression", "--image", str(big), "--out",
                           str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "has 144,000,000 pixels, above the limit of 50,000,000" in res.output
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("MULTIGRADE_MAX_PIXELS", "100")
    with pytest.raises(ValueError, match="above the limit of 100 "):
        mg.load_image(str(_small_png(tmp_path)))


def _small_png(tmp_path: Path) -> Path:
    import imageio.v3 as iio

    path = tmp_path / "small.png"
    iio.imwrite(path, np.zeros((16, 16), np.uint8))
    return path


@pytest.mark.integration
def test_files_follow_the_umask(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(["sh", "-c", 'umask 027 && exec "$0" "$@"', sys.executable, "-m",
                          "multigrade", "fit", "regression", *TINY, "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes.values()) == {0o640}, modes
    runs.write_text(tmp_path / "here.txt", "x")  # this process: umask 022 unless set
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "here.txt").stat().st_mode) == 0o666 & ~mask


# ---------------------------------------------------------------------------------------
# The smaller list


def test_empty_out_and_empty_config_are_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli.invoke(app, ["fit", "regression", *TINY, "--out", ""])
    assert res.exit_code == 2 and "empty string" in res.output
    (tmp_path / "empty.toml").write_text("# nothing yet\n")
    res = cli.invoke(app, ["run", "empty.toml"])
    assert res.exit_code == 2 and "empty.toml: the file is empty" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.toml"]


def test_a_bad_setting_is_refused_before_a_directory_is_made(tmp_path):
    res = cli.invoke(app, ["lr-sweep", "synthetic", "--setting", "3", "--out",
                           str(tmp_path / "d")])
    assert res.exit_code == 2 and "setting" in res.output
    assert not (tmp_path / "d").exists()


def test_damaged_files_are_named_in_one_line(tmp_path, tiny_run):
    out = tiny_run
    (out / "metrics.json").write_text('{"metrics": 3, "model": 1}')
    res = cli.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "metrics.json: it is not what mgdl writes" in res.output
    (out / runs.CHECKPOINT).write_bytes(b"PK\x03\x04 cut short")
    res = cli.invoke(app, ["grow", str(out)])
    assert res.exit_code == 2 and "checkpoint.npz is damaged" in res.output
    assert "Traceback" not in res.output


def test_report_names_an_interrupted_run_as_such(tmp_path, tiny_run):
    out = tiny_run
    status = runs.read_status(out)
    runs.write_status(out, "interrupted", command=status["command"], finished=[1],
                      pending={"grade": 2, "epoch": 10})
    (out / "metrics.json").unlink()
    res = cli.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "is not completed (interrupted): `mgdl resume" in res.output


def test_best_by_must_be_a_metric(tmp_path):
    from multigrade.experiments.sweep import load_sweep

    sweep = tmp_path / "s.toml"
    sweep.write_text('[base]\ncommand = "fit"\n[axes]\n"train.seed" = [0]\n')
    res = cli.invoke(app, ["sweep", str(sweep), "--out", str(tmp_path / "sw"),
                           "--best-by", "test_psnrr"])
    assert res.exit_code == 2 and "--best-by must be one of" in res.output
    sweep.write_text(sweep.read_text() + '[sweep]\nbest_by = "val_pnsr"\n')
    with pytest.raises(ValueError, match="sweep.best_by must be one of .* got 'val_pnsr'"):
        load_sweep(sweep)


@pytest.mark.integration
def test_python_api_errors_are_clear(tmp_path):
    """As a user's script sees them (no type checker installed around the package)."""
    script = tmp_path / "api.py"
    script.write_text(
        "import jax, optax, multigrade as mg\n"
        "from multigrade import runs\n"
        "problem = mg.image_regression(mg.load_image('camera', size=16))\n"
        "model, key = mg.mgdl([[8]] * 2), jax.random.key(0)\n"
        "def show(call):\n"
        "    try:\n"
        "        call()\n"
        "        print('ok')\n"
        "    except (TypeError, ValueError) as e:\n"
        "        print(type(e).__name__, e)\n"
        "show(lambda: mg.fit(model, problem, optimizer=optax.adam(1e-2), epochs=10.7, key=key))\n"
        "show(lambda: mg.fit(model, problem, optimizer='adam', epochs=10, key=key))\n"
        "r = mg.fit(model, problem, optimizer=optax.adam(1e-2), epochs=10.0, key=key)\n"
        "print('epochs', r.epochs)\n"
        "show(lambda: mg.load_image(3))\n"
        f"runs.save_params({str(tmp_path / 'p.npz')!r}, r.params, r.scales)\n"
        f"show(lambda: runs.load_params({str(tmp_path / 'p.npz')!r}, like=None))\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "ValueError epochs must be a whole number, got 10.7"
    assert lines[1].startswith("TypeError optimizer must be an Optax transformation such as "
                               "optax.adam(1e-3)") and lines[1].endswith("got 'adam'")
    assert lines[2] == "epochs 20"  # 10.0 epochs is ten, in each of two grades
    assert lines[3] == "TypeError load_image takes an image name or a path, got 3"
    assert lines[4].startswith("TypeError load_params: `like` must be a list")


def test_an_older_run_directory_is_adopted_by_resume(tmp_path):
    """A run made before markers existed (no marker, no lock) still continues."""
    out = tmp_path / "old"
    execute(_cfg(), out)
    (out / runs.MARKER).unlink()
    (out / runs.LOCK).unlink()
    outcome = runner.resume(out)
    assert outcome.results["mgdl"].metrics == runner.load_result(out).metrics
    assert runs.owner(out)["adopted"] is True
