import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from multigrade import runs
from multigrade.cli import app

runner = CliRunner()
TINY = ["--image", "camera", "--size", "16", "--epochs", "20", "--grades", "2",
        "--layers-per-grade", "1", "--width", "8", "--quiet"]


def test_fit_regression_writes_run_directory(tmp_path):
    out = tmp_path / "fit"
    res = runner.invoke(app, ["fit", "regression", *TINY, "--method", "sgdl", "--optimizer",
                              "gd", "--lr", "0.1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    config = runs.read_toml(out / "config.toml")
    assert config["command"] == "fit" and config["model"]["method"] == "sgdl"
    assert config["train"]["optimizer"] == "gd" and config["train"]["lr"] == 0.1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model_description"]["grades"] == [[8, 8]]  # SGDL: grades × layers
    assert set(metrics["metrics"]) >= {"train_loss", "val_loss", "test_psnr", "test_ssim"}
    status = runs.read_status(out)
    assert status["state"] == "completed" and status["finished_grades"] == [1]
    assert status["command"].startswith("mgdl fit regression")
    for name in ("params.npz", "predictions.npz", "checkpoint.npz", "history.csv",
                 "grades.png", "environment.json"):
        assert (out / name).is_file(), name
    assert "sgdl" in res.output


def test_compare_regression_writes_both_runs(tmp_path):
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", "regression", *TINY, "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "comparison.json").read_text())
    assert set(summary) == {"mgdl", "sgdl"}
    assert len(summary["mgdl"]["grades"]) == 2 and len(summary["sgdl"]["grades"]) == 1
    for m in ("mgdl", "sgdl"):
        assert runs.read_status(out / m)["state"] == "completed"
        assert runs.read_toml(out / m / "config.toml")["model"]["method"] == m
        # the table's figure is the one saved
        psnr = summary[m]["metrics"]["test_psnr"]
        assert f"{psnr:.2f}" in res.output
    assert runs.read_status(out)["state"] == "completed"
    assert (out / "history.png").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--image", "/no/such/image.png"], "/no/such/image.png"),
    (["--image", "camera", "--lr", "-0.1"], "learning rate must be positive"),
    (["--image", "camera", "--lr", "inf"], "learning rate must be a finite number"),
    (["--image", "camera", "--tol", "nan"], "tol must be a finite number"),
    (["--image", "camera", "--seed", str(2**70)], "seed must be an integer from 0 to"),
    (["--image", "camera", "--grades", "0"], "grades must be at least 1"),
    (["--image", "camera", "--optimizer", "nosuch"], "unknown optimiser 'nosuch'; supported: gd"),
    (["--image", "camera", "--optimizer", "clip"], "unknown optimiser 'clip'"),
    (["--image", "camera", "--size", "100000"], "needs about"),
    (["--image", "camera", "--size", "1"], "size must be at least 2"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    res = runner.invoke(app, ["fit", "regression", *args, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "x").exists()


def test_float_image_outside_unit_range_is_refused(tmp_path):
    import imageio.v3 as iio

    path = tmp_path / "bright.tiff"
    iio.imwrite(path, (np.arange(64, dtype=np.float32).reshape(8, 8) * 4))  # 0 … 252
    res = runner.invoke(app, ["fit", "regression", "--image", str(path), "--quiet",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "values span [0, 252]; expected [0, 1] (divide 8-bit data by 255)" in res.stderr


@pytest.mark.integration
def test_fit_denoise_and_compare_deblur(tmp_path):
    res = runner.invoke(app, ["fit", "denoise", *TINY, "--sigma", "20", "--out",
                              str(tmp_path / "dn")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "dn" / "metrics.json").read_text())
    assert metrics["problem"]["kind"] == "denoise"
    assert abs(metrics["problem"]["noise_sigma"] - 20 / 255) < 1e-12
    assert set(metrics["metrics"]) == {"train_loss", "test_loss", "test_psnr", "test_ssim",
                                       "residual"}
    res = runner.invoke(app, ["compare", "deblur", *TINY, "--blur-sigma", "1", "--noise", "3",
                              "--out", str(tmp_path / "db")])
    assert res.exit_code == 0, res.output
    names = [b["name"] for b in json.loads((tmp_path / "db" / "baselines.json").read_text())]
    assert names == ["TV (Chambolle), oracle", "Wiener, oracle"]
    assert (tmp_path / "db" / "comparison.png").is_file()
    assert "observation" in res.output and "Wiener" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--sigma", "-5"], "sigma must be at least 0"),
    (["--beta", "0"], "beta must be positive"),
    (["--alpha", "1.5"], "alpha must be at most 1.0"),
    (["--lam", "inf"], "lam must be a finite number"),
])
def test_bad_restoration_input_is_one_line(tmp_path, args, message):
    res = runner.invoke(app, ["fit", "denoise", "--image", "camera", "--size", "8", *args,
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [f"error: {res.stderr.strip()[7:]}"]
    assert message in res.stderr


@pytest.mark.integration
def test_lr_sweep_and_spectrum_commands(tmp_path):
    res = runner.invoke(app, ["lr-sweep", "synthetic", "--methods", "mgdl,sgdl,msdl",
                              "--lrs", "0.01,100", "--steps", "20", "--width", "8",
                              "--grades", "2", "--quiet", "--out", str(tmp_path / "sw")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    labels = {(r["method"], r["lr"]): r["label"] for r in summary["runs"]}
    assert len(labels) == 6 and labels[("sgdl", 100.0)] == "diverged"
    assert (tmp_path / "sw" / "sweep.png").is_file()
    assert runs.read_status(tmp_path / "sw")["state"] == "completed"
    assert "largest stable learning rate, mgdl" in res.output
    res = runner.invoke(app, ["spectrum", "regression", "--image", "camera", "--size", "12",
                              "--lr", "0.1,0.02", "--steps", "20", "--interval", "10",
                              "--width", "6", "--grades", "2", "--quiet",
                              "--out", str(tmp_path / "sp")])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "sp" / "spectrum.csv").read_text().splitlines()))
    assert [r["method"] for r in rows] == ["mgdl"] * 6 + ["sgdl"] * 3
    with np.load(tmp_path / "sp" / "eigenvalues.npz", allow_pickle=False) as eig:
        assert eig["mgdl/0"].size == 6 * 2 + 6 + 7  # grade 1 [2, 6, 1]
        assert eig["sgdl/2"].size == 2 * 6 + 6 + 6 * 6 + 6 + 7
    # a study refuses an existing --out too
    res = runner.invoke(app, ["lr-sweep", "synthetic", "--steps", "20", "--quiet",
                              "--out", str(tmp_path / "sw")])
    assert res.exit_code == 2 and "exists and is not empty" in res.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["lr-sweep", "synthetic", "--lrs", "0.1,abc"], "comma-separated numbers"),
    (["lr-sweep", "synthetic", "--methods", "mgdl,foo"], "unknown method"),
    (["lr-sweep", "nosuch"], "unknown task"),
    (["spectrum", "regression"], "needs an image"),
    (["spectrum", "synthetic", "--lr", "0.1,0.2,0.3"], "one per method"),
])
def test_bad_study_input_is_one_line(tmp_path, args, message):
    res = runner.invoke(app, [*args, "--steps", "20", "--quiet", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr, res.stderr
