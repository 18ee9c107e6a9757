"""Checkpoints, resume and grow in `fit` (float64, exact equality)."""

import jax
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.problems import denoising
from multigrade.train import Callback, FitInterrupted


class StopAfter(Callback):
    """Asks `fit` to stop after `n` chunks of grade `grade`; keeps every checkpoint."""

    def __init__(self, grade, n):
        self.grade, self.n, self.seen, self.checkpoints = grade, n, 0, []
        self.current = None

    def on_grade_start(self, grade, epochs, done):
        self.current = grade

    def on_records(self, grade, rows):
        self.seen += grade == self.grade

    def on_checkpoint(self, checkpoint):
        self.checkpoints.append(checkpoint)

    def stop_requested(self):
        return self.current == self.grade and self.seen >= self.n


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def assert_same_run(a, b):
    for x, y in zip(_leaves(a.params), _leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.scales == b.scales
    assert a.history.keys() == b.history.keys()
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name])
    assert [(g.epochs, g.status, g.metrics) for g in a.grades] == \
        [(g.epochs, g.status, g.metrics) for g in b.grades]
    for x, y in zip(_leaves(a.aux), _leaves(b.aux), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def problem():
    # denoising: u is carried across grades, the scale s_k depends on earlier grades
    return denoising(mg.load_image("camera", size=16), 0.1, key=jax.random.key(1), beta=1.0,
                     lam=1e-3)


@pytest.mark.parametrize("grade", [1, 2])
def test_resume_equals_an_uninterrupted_run(problem, grade):
    model = mg.mgdl([[8, 8]] * 3)
    kw = dict(optimizer=optax.adam(1e-2), epochs=60, key=jax.random.key(0), record_every=5,
              window=4, checkpoint_every=25)
    full = mg.fit(model, problem, **kw)
    stop = StopAfter(grade, 2)  # chunks end at 20 (window), then 25 (checkpoint)
    with pytest.raises(FitInterrupted) as info:
        mg.fit(model, problem, callbacks=[stop], **kw)
    ckpt = info.value.checkpoint
    assert ckpt.finished == grade - 1
    assert ckpt.pending.grade == grade and ckpt.pending.epochs == 25
    # the history kept holds every record up to the interruption
    assert len(ckpt.history) == 12 * (grade - 1) + 5
    resumed = mg.fit(model, problem, start=ckpt, **kw)
    assert_same_run(resumed, full)
    np.testing.assert_array_equal(resumed.predictions[-1], full.predictions[-1])


def test_checkpoints_come_every_checkpoint_every_epochs(problem):
    stop = StopAfter(0, 10**9)  # never stops; records the checkpoints
    mg.fit(mg.mgdl([[8]] * 2), problem, optimizer=optax.adam(1e-2), epochs=60,
           key=jax.random.key(0), record_every=5, checkpoint_every=20, callbacks=[stop])
    assert [(c.pending.grade, c.pending.epochs) for c in stop.checkpoints] == \
        [(1, 20), (1, 40), (2, 20), (2, 40)]


def test_grow_equals_training_all_grades_at_once(problem):
    kw = dict(optimizer=optax.adam(1e-2), epochs=30, key=jax.random.key(0))
    two = mg.fit(mg.mgdl([[8]] * 2), problem, **kw)
    grown = mg.fit(mg.mgdl([[8]] * 4), problem, start=two.checkpoint(), **kw)
    four = mg.fit(mg.mgdl([[8]] * 4), problem, **kw)
    assert_same_run(grown, four)


def test_init_params_start_from_given_parameters(problem):
    model = mg.mgdl([[8]] * 2)
    given = model.init_params(jax.random.key(7), 2)
    a = mg.fit(model, problem, optimizer=optax.adam(1e-2), epochs=20, key=jax.random.key(0),
               init_params=given)
    b = mg.fit(model, problem, optimizer=optax.adam(1e-2), epochs=20, key=jax.random.key(7))
    assert_same_run(a, b)
    with pytest.raises(ValueError, match="1 entries for 2 grades"):
        mg.fit(model, problem, optimizer=optax.adam(1e-2), epochs=20, key=jax.random.key(0),
               init_params=given[:1])
