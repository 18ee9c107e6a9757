"""Learning-rate schedules along each grade (`train.schedule`, `--schedule`)."""

import math

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade import runs
from multigrade.cli import app
from multigrade.experiments import TrainConfig
from multigrade.experiments.checkpoints import checkpoint_arrays, load_checkpoint
from multigrade.experiments.config import SCHEDULE_FINAL, SCHEDULE_WARMUP, make_optimizer
from multigrade.problems import denoising
from multigrade.train import FitInterrupted
from test_checkpoint import StopAfter, assert_same_run


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
