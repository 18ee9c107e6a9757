"""What a finished grade hands the next, read off its features (`metrics.feature_stats`
against arrays whose answer is known and the SVD, and benchmarks/grade_features.py on a
real run)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from multigrade.cli import app
from multigrade.metrics import effective_rank, feature_stats

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "grade_features.py"
spec = importlib.util.spec_from_file_location("grade_features", SCRIPT)
gf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gf)


def test_the_statistics_of_features_whose_answer_is_known():
    rng = np.random.default_rng(0)
    h, w = 16, 12
    q, _ = np.linalg.qr(rng.standard_normal((h * w, 3)))  # 3 orthonormal directions
    q -= q.mean(0)
    q /= np.linalg.norm(q, axis=0)  # centred, equal energy: effective rank 3
    phi = np.concatenate([q, np.zeros((h * w, 2))], axis=1)  # and two dead units
    stats = feature_stats(phi, (h, w))
    assert stats["dead"] == pytest.approx(2 / 5)
    assert stats["erank"] == pytest.approx(3.0, rel=1e-2)
    ramp = np.repeat(np.arange(h, dtype=float), w)[:, None]  # one unit rising one a row
    r = feature_stats(ramp, (h, w))
    assert r["erank"] == pytest.approx(1.0) and r["dead"] == 0.0
    spread = np.mean(np.abs(np.arange(h) - (h - 1) / 2))
    assert r["rough"] == pytest.approx(1.0 / spread)


def test_the_effective_rank_from_the_gram_matrix_is_the_svds():
    """The Gram route (units² eigenvalues) against the definition on the SVD."""
    rng = np.random.default_rng(1)
    phi = np.maximum(rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12)), 0.0)
    s = np.linalg.svd(phi - phi.mean(0), compute_uv=False)
    share = s**2 / np.sum(s**2)
    assert effective_rank(phi.astype(np.float32)) == pytest.approx(
        float(np.exp(-np.sum(share * np.log(share)))), rel=1e-5)
    assert effective_rank(np.ones((5, 3))) == 0.0  # constant features span nothing


def test_a_run_reads_back_grade_by_grade(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["fit", "denoise", "--image", "camera", "--size", "16",
                                   "--grades", "2", "--layers-per-grade", "1", "--width",
                                   "8", "--epochs", "20", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = gf.grade_features(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["grade"] for r in rows] == [1, 2]
    assert [r["test_psnr"] for r in rows] == [g["metrics"]["test_psnr"]
                                              for g in metrics["grades"]]
    assert all(0 <= r["dead"] <= 1 and 1 <= r["erank"] <= 8 for r in rows)
