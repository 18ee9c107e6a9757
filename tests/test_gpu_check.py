"""benchmarks/gpu_check.py at a tiny scale on the CPU: the four runs, the table, the budget
that stops a run by SIGTERM (its checkpoint keeps where it stood) and the exit code."""

import subprocess
import sys
from pathlib import Path

import pytest

from multigrade import runs

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def check(tmp_path, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--scale", "tiny", "--out",
                           str(tmp_path / "out"), "--parallel", "4", *args],
                          capture_output=True, text=True, timeout=600)


def rows(stdout: str) -> dict:
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[1] in ("mgdl", "sgdl"):
            found[(cells[0], cells[1])] = cells
    return found


def test_the_four_runs_complete_and_are_tabulated(tmp_path):
    if not (Path(__file__).resolve().parents[2] / "shared" / "images").is_dir():
        pytest.skip("the paper's images (../shared/images) are not beside the checkout")
    res = check(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    table = rows(res.stdout)
    assert set(table) == {(e, m) for e in ("denoise-butterfly-10", "deblur-butterfly-3")
                          for m in ("mgdl", "sgdl")}
    for (exp, method), cells in table.items():
        run = tmp_path / "out" / exp / method
        assert cells[2] == "completed" and runs.read_status(run)["state"] == "completed"
        metrics = runs.read_json(run / "metrics.json")
        psnr = [float(v) for v in cells[3].split(" / ")]
        assert len(psnr) == (4 if method == "mgdl" else 1)
        assert psnr[-1] == pytest.approx(metrics["metrics"]["test_psnr"], abs=0.006)
        ms = [float(v) for v in cells[6].split(" / ")]
        want = [1e3 * g["seconds_per_epoch"] for g in metrics["grades"]]
        assert ms == pytest.approx(want, abs=0.006)


def test_a_run_past_its_budget_is_stopped_and_kept(tmp_path):
    if not (Path(__file__).resolve().parents[2] / "shared" / "images").is_dir():
        pytest.skip("the paper's images (../shared/images) are not beside the checkout")
    res = check(tmp_path, "--epochs", "10000000", "--minutes", "0.35")
    assert res.returncode == 0, res.stdout + res.stderr
    for (exp, method), cells in rows(res.stdout).items():
        assert cells[2] == "interrupted (budget)"
        status = runs.read_status(tmp_path / "out" / exp / method)
        assert status["state"] == "interrupted"
        assert cells[7] == f"grade 1 at epoch {status['pending']['epoch']}"


def test_a_failed_run_fails_the_check(tmp_path, monkeypatch):
    monkeypatch.delenv("MULTIGRADE_DATA", raising=False)
    empty = tmp_path / "no-images"
    empty.mkdir()
    res = subprocess.run([sys.executable, str(SCRIPT), "--scale", "tiny", "--out",
                          str(tmp_path / "out"), "--parallel", "4", "--data-dir", str(empty)],
                         capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)  # no ../shared/images beside this folder either
    assert res.returncode == 1
    assert res.stdout.count("failed: ") == 4 and "image not found" in (
        tmp_path / "out" / "denoise-butterfly-10-mgdl.log").read_text()
