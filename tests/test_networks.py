"""A comparison's coordinate-network baselines (`experiments.networks`): FFN and SIREN
sized to MGDL's parameter count."""

import json

import pytest
from typer.testing import CliRunner

from multigrade import runs
from multigrade.cli import app

runner = CliRunner()


@pytest.mark.integration
def test_compare_with_baselines(tmp_path):
    """`--baselines ffn,siren`: four methods, the FFN's σ the grid's best validation loss
    (read back from each grid run's own files), every size within 5 % of MGDL's."""
    out = tmp_path / "cmp"
    res = runner.invoke(app, [
        "compare", "regression", "--image", "camera", "--size", "16", "--epochs", "30",
        "--grades", "2", "--layers-per-grade", "1", "--width", "32", "--quiet",
        "--baselines", "ffn,siren", "--fourier-sigmas", "1,10", "--out", str(out)])
    assert res.exit_code == 0, res.output
    comp = json.loads((out / "comparison.json").read_text())
    assert list(comp) == ["mgdl", "sgdl", "ffn", "siren"]
    val = {s: runs.read_json(out / f"ffn-sigma{s}" / "metrics.json")["metrics"]["val_loss"]
           for s in (1, 10)}
    best = min(val, key=val.get)
    info = comp["ffn"]["baseline"]
    assert info["sigma"] == best and info["dir"] == f"ffn-sigma{best}"
    assert info["chosen_by"] == "validation loss"
    target = comp["mgdl"]["params"]
    for m in ("ffn", "siren"):
        stored = runs.read_npz(out / comp[m]["baseline"]["dir"] / "params.npz")
        count = sum(v.size for k, v in stored.items() if not k.startswith("scale"))
        assert count == comp[m]["params"]
        assert abs(count / target - 1) <= 0.05
    cfg = runs.read_toml(out / "siren" / "config.toml")
    assert cfg["model"]["method"] == "siren" and cfg["train"]["lr"] == 1e-4  # its paper's
    assert "params" in res.output and "chosen by validation loss" in res.output
