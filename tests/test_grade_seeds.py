"""benchmarks/grade_seeds.py at a tiny size: a variant changes only what it names."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "grade_seeds.py"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def test_a_variant_changes_its_grade_only(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("the paper's images (../shared/images) are not beside the checkout")
    out = tmp_path / "g.jsonl"
    for variant in ("base", "g2x2", "g2t3"):
        res = subprocess.run([sys.executable, str(SCRIPT), "--size", "32", "--grades", "2",
                              "--pairs", "1:2", "--variant", variant, "--data-dir",
                              str(SHARED), "--jsonl", str(out)],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
    base, longer, tried = (json.loads(line) for line in out.read_text().splitlines())
    assert (base["seed"], base["noise_seed"], base["size"]) == (1, 2, 32)
    assert base["epochs"] == [2000, 2000] and longer["epochs"] == [2000, 4000]
    assert [g["grade"] for g in base["grades"]] == [1, 2]
    # grade 1 is the same run in both; grade 2 trained longer from the same start
    assert base["grades"][0]["psnr"] == longer["grades"][0]["psnr"]
    assert base["grades"][0]["train_loss"] == longer["grades"][0]["train_loss"]
    assert base["grades"][1]["psnr"] != longer["grades"][1]["psnr"]
    for row in (base, longer, tried):
        minutes = [g["minutes"] for g in row["grades"]]
        assert np.all(np.diff(minutes) > 0)
        assert all(np.isfinite(g["psnr"]) and g["train_loss"] > 0 for g in row["grades"])
        # one loss curve a try, a record every 100 epochs, ending at the grade's loss
        tries = [len(g["tries"] or [None]) for g in row["grades"]]
        assert [c["grade"] for c in row["curves"]] == [k for k, n in zip((1, 2), tries)
                                                      for _ in range(n)]
        for c in row["curves"]:
            assert c["epoch"] == list(range(100, row["epochs"][c["grade"] - 1] + 1, 100))
    assert [len(c["train_loss"]) for c in base["curves"]] == [20, 20]
    assert base["curves"][1]["train_loss"][-1] == base["grades"][1]["train_loss"]
    # grade 2 from three starts: the same grade 1, each try's curve ends at its loss, and
    # the try kept is the one of least loss
    assert tried["grades"][0]["train_loss"] == base["grades"][0]["train_loss"]
    ends = [c["train_loss"][-1] for c in tried["curves"][1:]]
    assert ends == pytest.approx(tried["grades"][1]["tries"], rel=1e-6) and len(ends) == 3
    assert tried["grades"][1]["train_loss"] == pytest.approx(min(ends), rel=1e-6)
    assert tried["curves"][1]["train_loss"] == base["curves"][1]["train_loss"]  # try 1


def test_bad_pairs_are_one_line():
    res = subprocess.run([sys.executable, str(SCRIPT), "--pairs", "0-1"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "--pairs: init:noise integer pairs" in res.stderr
    assert "Traceback" not in res.stderr
