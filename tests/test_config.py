"""The run config (`experiments.config`): TOML round trip, one-line errors, --set."""

import pytest

from multigrade import experiments, runs
from multigrade.cli import app
from multigrade.experiments import ModelConfig, ProblemConfig, RunConfig, TrainConfig
from test_runner import TINY, _cli, assert_same_arrays, assert_same_history, runner


def test_config_round_trip_and_reproduction(tmp_path):
    cfg = RunConfig(problem=ProblemConfig(task="denoise", size=16, sigma=20.0),
                    model=ModelConfig(grades=2, layers_per_grade=1, width=8),
                    train=TrainConfig(epochs=30, tol=1e-3, lr=5e-3), x64=True)
    experiments.save_config(tmp_path / "c.toml", cfg)
    assert experiments.load_config(tmp_path / "c.toml") == cfg
    # `mgdl run RUN/config.toml` reproduces a run exactly
    _cli("fit", "denoise", *TINY, "--epochs", 30, "--out", tmp_path / "a")
    _cli("run", tmp_path / "a" / "config.toml", "--quiet", "--out", tmp_path / "b")
    assert_same_arrays(tmp_path / "a" / "params.npz", tmp_path / "b" / "params.npz")
    assert_same_history(tmp_path / "a" / "history.csv", tmp_path / "b" / "history.csv")
    # overrides on top of a config
    _cli("run", tmp_path / "a", "--set", "train.epochs=10", "--set", "model.grades=1",
         "--quiet", "--out", tmp_path / "c")
    status = runs.read_status(tmp_path / "c")
    assert status["finished_grades"] == [1]
    assert runs.read_toml(tmp_path / "c" / "config.toml")["train"]["epochs"] == 10


@pytest.mark.parametrize(("text", "message"), [
    ("[train]\nlrr = 0.1\n", "unknown key 'train.lrr'; train has: optimizer, lr"),
    ("[train]\nlr = 'fast'\n", "train.lr must be a number, got 'fast'"),
    ("[model]\ngrades = 2.5\n", "model.grades must be an integer, got 2.5"),
    ("colour = true\n", "unknown key 'colour'"),
    ("[train]\nlr = -1.0\n", "train: learning rate must be positive"),
    ("[problem]\ntask = 'nosuch'\n", "unknown task 'nosuch'"),
    ("[train\n", "not valid TOML"),
    ("command = 'lr-sweep'\n[train]\nschedule = 'cosine'\n",
     "schedule, coarse, batch, batch_tile, grade_epochs, grade_tries, curriculum"),
    ("command = 'spectrum'\n[train]\nbatch = 0.5\n",
     "schedule, coarse, batch, batch_tile, grade_epochs, grade_tries, curriculum"),
    ("command = 'spectrum'\n[train]\nbatch_tile = 8\n", "batch_tile, grade_epochs"),
    ("[train]\nbatch_tile = 0\n", "batch_tile must be a positive integer, got 0"),
    ("command = 'lr-sweep'\n[train]\ngrade_epochs = [10]\n", "curriculum and baselines"),
    ("command = 'lr-sweep'\n[train]\ngrade_tries = [1, 2]\n", "curriculum and baselines"),
    ("[train]\ngrade_epochs = [10, 0]\n", "grade_epochs must be positive integers, got 0"),
    ("[train]\ngrade_tries = [1, 0]\n", "grade_tries must be positive integers, got 0"),
    ("[problem]\ntask = 'denoise'\n[train]\ncoarse = [0]\n", "positive integers, got 0"),
    ("[train]\nschedule = 'step'\n", "unknown schedule 'step'"),
])
def test_a_bad_config_is_one_line_naming_the_key(tmp_path, text, message):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ValueError, match="c.toml: ") as info:
        experiments.load_config(tmp_path / "c.toml")
    assert message in str(info.value)
    res = runner.invoke(app, ["run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert message in res.stderr and not (tmp_path / "x").exists()


def test_set_overrides_are_validated(tmp_path):
    cfg = RunConfig()
    assert experiments.apply_overrides(cfg, ["train.lr=0.5", "problem.image=moon"]) == \
        cfg.replace(train={"lr": 0.5}, problem={"image": "moon"})
    with pytest.raises(ValueError, match="unknown key 'train.nosuch'"):
        experiments.apply_overrides(cfg, ["train.nosuch=1"])
    with pytest.raises(ValueError, match="SECTION.KEY=VALUE"):
        experiments.apply_overrides(cfg, ["train.lr"])
