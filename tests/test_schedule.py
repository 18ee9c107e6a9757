"""Learning-rate schedules along each grade (`train.schedule`, `--schedule`)."""

import math

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade import runs
from multigrade.cli import app
from multigrade.experiments import TrainConfig, load_config
from multigrade.experiments.checkpoints import checkpoint_arrays, load_checkpoint
from multigrade.experiments.optimizers import SCHEDULE_FINAL, SCHEDULE_WARMUP, make_optimizer
from multigrade.experiments.runner import problem_for
from multigrade.problems import denoising
from multigrade.train import FitInterrupted
from test_checkpoint import StopAfter, assert_same_run
from test_runner import assert_same_arrays


def expected_rate(schedule: str, lr: float, epochs: int, t: int) -> float:
    """The rate at step t, written out from the schedules' definitions."""
    if schedule == "constant":
        return lr
    end = SCHEDULE_FINAL * lr
    if schedule == "cosine":
        c = min(t, epochs) / epochs
        return end + (lr - end) * 0.5 * (1 + math.cos(math.pi * c))
    w = max(1, round(SCHEDULE_WARMUP * epochs))
    if t < w:
        return lr * t / w
    c = min(t - w, epochs - w) / (epochs - w)
    return end + (lr - end) * 0.5 * (1 + math.cos(math.pi * c))


@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup-cosine"])
def test_a_schedule_gives_the_rates_it_promises(schedule):
    # plain GD on f(θ) = θ (gradient 1): each step moves θ by −rate_t
    lr, epochs = 0.1, 60
    tx = make_optimizer("gd", lr, schedule, None if schedule == "constant" else epochs)
    assert TrainConfig(optimizer="gd", lr=lr, epochs=epochs, schedule=schedule) \
        .make_optimizer() is tx  # the config builds the same (cached) transformation
    theta, state = np.zeros(()), tx.init(np.zeros(()))
    for t in range(epochs + 5):  # past the end, the rate stays at its last value
        update, state = tx.update(np.ones(()), state)
        assert float(update) == pytest.approx(-expected_rate(schedule, lr, epochs, t),
                                              rel=1e-5, abs=1e-9), t
        theta = theta + update


@pytest.mark.slow
def test_a_scheduled_run_resumed_from_its_checkpoint_file_equals_an_uninterrupted_one(
        tmp_path):
    problem = denoising(mg.load_image("camera", size=16), 0.1, key=jax.random.key(1),
                        beta=1.0, lam=1e-3)
    model = mg.mgdl([[8, 8]] * 2)
    tx = make_optimizer("adam", 1e-2, "warmup-cosine", 60)
    kw = dict(optimizer=tx, epochs=60, key=jax.random.key(0), record_every=5, window=4,
              checkpoint_every=25)
    full = mg.fit(model, problem, **kw)
    with pytest.raises(FitInterrupted) as info:
        mg.fit(model, problem, callbacks=[StopAfter(2, 2)], **kw)
    assert info.value.checkpoint.pending.epochs == 25  # mid-grade 2, mid-schedule
    runs.write_npz(tmp_path / runs.CHECKPOINT, checkpoint_arrays(info.value.checkpoint))
    start = load_checkpoint(tmp_path, model, problem, [tx, tx])
    assert_same_run(mg.fit(model, problem, start=start, **kw), full)


@pytest.mark.parametrize("args, message", [
    (["--schedule", "linear"], "unknown schedule 'linear'"),
    (["--schedule", "cosine", "--optimizer", "gd", "--lr", "auto"], "both set the rate"),
])
def test_a_bad_schedule_is_one_line(tmp_path, args, message):
    res = CliRunner().invoke(app, ["fit", "regression", "--image", "camera", "--size", "16",
                                   "--epochs", "10", "--out", str(tmp_path / "r"), *args])
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


TINY = ["--image", "camera", "--size", "16", "--layers-per-grade", "1", "--width", "8",
        "--epochs", "20", "--quiet"]


@pytest.mark.integration
def test_grade_epochs_give_each_grade_its_own_budget_and_schedule(tmp_path):
    """`--grade-epochs 10,30` with `--epochs 20`: grades of 10, 30 and 20 epochs, each
    running the cosine schedule over its own budget — the run equals `fit` given those
    budgets and optimisers directly; `grow` adds a grade of `--epochs`, as if trained at
    once; SGDL, one grade, trains `--epochs`."""
    args = ["denoise", *TINY, "--schedule", "cosine", "--lr", "1e-2", "--grade-epochs",
            "10,30"]
    for grades, out in ((2, "two"), (3, "three")):
        res = CliRunner().invoke(app, ["fit", *args, "--grades", str(grades), "--out",
                                       str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    history = runs.read_history(tmp_path / "three" / runs.HISTORY)
    assert [int(history["epoch"][history["grade"] == k].max()) for k in (1, 2, 3)] == [
        10, 30, 20]
    cfg = load_config(tmp_path / "three")
    assert cfg.train.grade_epochs == (10, 30)
    problem = problem_for(cfg)
    direct = mg.fit(cfg.model.build(problem.out_dim), problem,
                    optimizer=[make_optimizer("adam", 1e-2, "cosine", e) for e in (10, 30, 20)],
                    epochs=[10, 30, 20], key=jax.random.key(0), record_every=10)
    np.testing.assert_array_equal(history["train_loss"], direct.history["train_loss"])
    res = CliRunner().invoke(app, ["grow", str(tmp_path / "two"), "--grades", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert_same_arrays(tmp_path / "two" / runs.PARAMS, tmp_path / "three" / runs.PARAMS)
    res = CliRunner().invoke(app, ["compare", *args, "--grades", "2", "--out",
                                   str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    sgdl = runs.read_history(tmp_path / "c" / "sgdl" / runs.HISTORY)
    assert int(sgdl["epoch"].max()) == 20


def test_grade_tries_train_a_grade_from_several_starts_and_keep_the_least_loss(tmp_path):
    """`--grade-tries 1,2`: grade 2 trained twice, the run equals `fit(tries=(1, 2, 1))`
    on the same config, and its summary lists both tries' losses; SGDL in a comparison
    trains its one grade once."""
    args = ["denoise", *TINY, "--lr", "1e-2", "--grade-tries", "1,2", "--grades", "3"]
    res = CliRunner().invoke(app, ["fit", *args, "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    cfg = load_config(tmp_path / "r")
    assert cfg.train.grade_tries == (1, 2)
    problem = problem_for(cfg)
    direct = mg.fit(cfg.model.build(problem.out_dim), problem, optimizer=make_optimizer(
        "adam", 1e-2, "constant", None), epochs=20, key=jax.random.key(0), record_every=10,
        tries=(1, 2, 1))
    history = runs.read_history(tmp_path / "r" / runs.HISTORY)
    np.testing.assert_array_equal(history["train_loss"], direct.history["train_loss"])
    grades = runs.read_summary(tmp_path / "r")["grades"]
    assert [g["tries"] for g in grades] == [g.tries for g in direct.grades]
    assert len(grades[1]["tries"]) == 2 and grades[1]["kept_try"] == direct.grades[1].kept_try
    assert grades[1]["tries_erank"] == direct.grades[1].tries_erank
    g2 = direct.grades[1]  # what the run says of its tries, in one line
    # a quarter of 20 epochs is before the first record (epoch 10): the first is read
    quarter = [c["train_loss"][c["epoch"].index(10)] for c in g2.tries_history]
    assert (f"mgdl grade 2: 2 tries, training loss {quarter[0]:.4g} / {quarter[1]:.4g} at a "
            f"quarter, {g2.tries[0]:.4g} / {g2.tries[1]:.4g} at the end; kept try "
            f"{g2.kept_try}") in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["fit", *args, "--try-rule", "erank", "--out",
                                   str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert load_config(tmp_path / "e").train.try_rule == "erank"
    g2 = runs.read_summary(tmp_path / "e")["grades"][1]
    assert g2["tries_erank"] == grades[1]["tries_erank"]  # the same tries, kept by rank
    assert g2["kept_try"] == int(np.argmax(g2["tries_erank"])) + 1
    res = CliRunner().invoke(app, ["compare", *args, "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert runs.read_summary(tmp_path / "c" / "sgdl")["grades"][0]["tries"] is None


@pytest.mark.parametrize("args, message", [
    (["--grades", "2", "--grade-epochs", "10,10,10"], "gives 3 budgets for 2 grades"),
    (["--grade-epochs", "10,x"], "must be whole numbers"),
    (["--grade-epochs", "0"], "must be positive integers"),
    (["--method", "sgdl", "--grade-epochs", "10"], "grade_epochs are MGDL's"),
    (["--grades", "2", "--grade-tries", "1,2,2"], "gives 3 counts for 2 grades"),
    (["--grade-tries", "1,0"], "grade_tries must be positive integers"),
    (["--method", "sgdl", "--grade-tries", "2"], "grade_tries are MGDL's"),
    (["--grade-tries", "1,2", "--try-rule", "psnr"], "unknown try_rule 'psnr'"),
])
def test_bad_grade_epochs_are_one_line(tmp_path, args, message):
    res = CliRunner().invoke(app, ["fit", "denoise", *TINY, *args, "--out",
                                   str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
