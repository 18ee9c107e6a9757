"""benchmarks/seed_table.py: the seed table of finished runs, from their own files."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from multigrade import runs
from multigrade.cli import app

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_table.py"
TINY = ["denoise", "--image", "camera", "--size", "16", "--layers-per-grade", "1",
        "--width", "8", "--epochs", "20", "--grades", "2", "--grade-tries", "1,3", "--lr",
        "1e-2", "--quiet"]


def _script():
    spec = importlib.util.spec_from_file_location("seed_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three runs of two seed pairs in a sweep-like store, and one unfinished folder."""
    root = tmp_path_factory.mktemp("seeds")
    for seed, noise in ((0, 0), (1, 0), (1, 1)):
        res = CliRunner().invoke(app, ["fit", *TINY, "--seed", str(seed), "--noise-seed",
                                       str(noise), "--out", str(root / f"r{seed}-{noise}")])
        assert res.exit_code == 0, res.output
    (root / "unfinished").mkdir()
    return root


def test_the_table_is_each_runs_own_numbers(store):
    st = _script()
    dirs = st.run_dirs([store])
    assert [d.name for d in dirs] == ["r0-0", "r1-0", "r1-1"]  # the unfinished one left out
    rows = [st.table_row(d) for d in dirs]
    lines = st.markdown(rows)
    assert len(lines) == 2 + 3
    for d, r, line in zip(dirs, rows, lines[2:], strict=True):
        m = runs.read_summary(d)
        g2 = m["grades"][1]
        assert (r["seed"], r["noise_seed"]) == tuple(int(c) for c in d.name[1:].split("-"))
        assert r["grades"] == [g["metrics"]["test_psnr"] for g in m["grades"]]
        assert r["final"] == m["metrics"]["test_psnr"]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == " / ".join(f"{g['metrics']['test_psnr']:.2f}" for g in m["grades"])
        losses = [float(v) for v in cells[3].split(";")[0].split(",")]
        np.testing.assert_allclose(losses, g2["tries"], rtol=1e-5)
        assert f"try {g2['kept_try']};" in cells[3]
        assert cells[4] == f"{m['seconds'] / 60:.1f}"
    finals = [r["final"] for r in rows]
    mean, std = np.mean(finals), np.std(finals, ddof=1)
    line = st.summary(finals, bar=min(finals), target=mean + 1.0)
    assert line.startswith(f"3 runs: {mean:.2f} ± {std:.2f} dB")
    assert f"least {min(finals):.2f}; 3 of 3 at or over" in line and "mean is under" in line


def test_no_run_is_one_line(tmp_path):
    for args, word in (([str(tmp_path / "none")], "no such run directory"),
                       ([str(tmp_path)], "no finished run")):
        res = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                             text=True, timeout=300)
        assert res.returncode != 0 and word in res.stderr and "Traceback" not in res.stderr
