"""benchmarks/later_grades.py: a finished run's later grades trained again with another
budget equal a whole run with that budget (the same first grades, continued exactly)."""

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from multigrade import runs
from multigrade.cli import app

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "later_grades.py"
spec = importlib.util.spec_from_file_location("later_grades", SCRIPT)
lg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lg)

TINY = ["denoise", "--image", "camera", "--size", "32", "--grades", "3",
        "--layers-per-grade", "1", "--width", "8", "--grade-epochs", "30", "--coarse", "2",
        "--schedule", "warmup-cosine", "--lr", "1e-2", "--record-every", "10", "--quiet"]


def _fit(out: Path, epochs: int) -> None:
    res = CliRunner().invoke(app, ["fit", *TINY, "--epochs", str(epochs), "--out", str(out)])
    assert res.exit_code == 0, res.output


def test_later_grades_again_equal_a_whole_run_with_their_budget(tmp_path):
    _fit(tmp_path / "short", 20)
    _fit(tmp_path / "long", 40)
    out = lg.later_grades(tmp_path / "short", keep=1, epochs=40)
    whole = runs.read_summary(tmp_path / "long")["grades"]
    assert [r["epochs"] for r in out["grades"]] == [30, 40, 40]
    assert [r["psnr"] for r in out["grades"]] == [g["metrics"]["test_psnr"] for g in whole]
    history = runs.read_history(tmp_path / "long" / runs.HISTORY)
    assert out["grades"][-1]["train_loss"] == pytest.approx(
        float(history["train_loss"][-1]), rel=1e-6)
    with pytest.raises(ValueError, match="grade 3 is on grade 2's grid"):
        lg.later_grades(tmp_path / "short", keep=2, epochs=40)
    with pytest.raises(ValueError, match="--keep: between 1 and 2 grades, got 3"):
        lg.later_grades(tmp_path / "short", keep=3, epochs=40)
