"""Run directories of the previous version (tests/data/v0.1, made at c771897) still read:
a fit loads and resumes as completed with the same predictions, and both it and an
old-schema study go into a report."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from multigrade import runs
from multigrade.cli import app
from multigrade.experiments import load_result, resume

OLD = Path(__file__).parent / "data" / "v0.1"


@pytest.fixture
def old(tmp_path):
    shutil.copytree(OLD, tmp_path / "old")
    return tmp_path / "old"


def test_an_old_fit_loads_with_its_predictions(old):
    result = load_result(old / "fit-denoise")
    stored = runs.read_npz(old / "fit-denoise" / "predictions.npz")
    assert len(result.grades) == 2
    for k, pred in enumerate(result.predictions, start=1):
        np.testing.assert_allclose(np.asarray(pred), stored[f"grade{k}"], rtol=1e-5, atol=1e-6)
    outcome = resume(old / "fit-denoise")
    assert runs.read_status(old / "fit-denoise")["state"] == "completed"
    np.testing.assert_allclose(outcome.results["mgdl"].metrics["test_psnr"],
                               runs.read_json(old / "fit-denoise" / "metrics.json")
                               ["metrics"]["test_psnr"], rtol=1e-5)


def test_old_directories_go_into_a_report(old, tmp_path):
    res = CliRunner().invoke(app, ["report", str(old / "fit-denoise"), str(old / "lr-sweep"),
                                   "-o", str(tmp_path / "report.html")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "report.html").read_text()
    assert "config.json" in html and "config.toml" in html  # each directory's own config
