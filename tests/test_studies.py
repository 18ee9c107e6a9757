"""The GD studies go through the one schema: `lr-sweep`/`spectrum` write `config.toml`,
`mgdl run` reruns them, and a study builds its problem once."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import multigrade.images
from multigrade.cli import app
from multigrade.experiments import load_config

runner = CliRunner()


@pytest.mark.integration
def test_lr_sweep_writes_config_toml_and_reruns_from_it(tmp_path, monkeypatch):
    loads = []
    real = multigrade.images.load_image

    def counted(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(multigrade.images, "load_image", counted)
    res = runner.invoke(app, ["lr-sweep", "denoise", "--image", "camera", "--size", "12",
                              "--steps", "20", "--lrs", "1e-4,1e-3", "--width", "6",
                              "--grades", "2", "--quiet", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert len(loads) == 1  # the problem is built once: one image load, one noise draw
    cfg = load_config(tmp_path / "a")
    assert cfg.command == "lr-sweep" and cfg.study.learning_rates == (1e-4, 1e-3)
    assert (cfg.model.width, cfg.model.grades, cfg.model.layers_per_grade) == (6, 2, 1)
    assert not (tmp_path / "a" / "config.json").exists()
    res = runner.invoke(app, ["run", str(tmp_path / "a" / "config.toml"), "--quiet",
                              "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    first, again = (json.loads((tmp_path / d / "sweep.json").read_text()) for d in "ab")
    assert all(r["train_loss"] is not None for r in first["runs"])  # none diverged
    assert [r["label"] for r in first["runs"]] == [r["label"] for r in again["runs"]]
    np.testing.assert_allclose([r["train_loss"] for r in first["runs"]],
                               [r["train_loss"] for r in again["runs"]], rtol=1e-6)


@pytest.mark.integration
def test_spectrum_takes_the_paper_architecture_unless_given(tmp_path):
    res = runner.invoke(app, ["spectrum", "synthetic", "--steps", "20", "--interval", "10",
                              "--methods", "mgdl", "--quiet", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    cfg = load_config(tmp_path / "s")
    assert (cfg.model.width, cfg.model.grades, cfg.model.layers_per_grade) == (32, 4, 1)
    assert cfg.train.optimizer == "gd" and cfg.model.init == "he"
