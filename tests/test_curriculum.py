"""A coarse-to-fine curriculum within one grade (`problems.Curriculum`): SGDL's network
on coarser grids first, then on the image's own, one state throughout."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.experiments.checkpoints import checkpoint_arrays, load_checkpoint
from multigrade.problems import Curriculum, denoising
from multigrade.problems.minibatch import minibatch
from multigrade.train import FitInterrupted
from test_checkpoint import StopAfter, assert_same_run


@pytest.fixture(scope="module")
def problem():
    return denoising(mg.load_image("camera", size=16), 0.1, key=jax.random.key(1), beta=1.0,
                     lam=1e-3)


MODEL = mg.sgdl([8, 8, 8])


def decaying(offset=0):
    """A rate that falls with the step count (from `offset` on): it tells whether the
    optimiser's count carries across stages."""
    return lambda count: 0.004 / (1.0 + 0.01 * (count + offset))


@pytest.mark.parametrize("weigh", [True, False])
def test_a_curriculum_is_the_stages_fitted_one_after_another_from_the_last_state(problem,
                                                                                  weigh):
    """Plain GD with a decaying rate: the curriculum equals fitting the 4× coarser grid,
    then the 2× one and the full grid each from the parameters the last left, the rate's
    count moved on by the epochs before (the independent chain of three `fit`s); weighed,
    the coarse stages' losses count 16 and 4 times."""
    c4, c2 = problem.coarse(4), problem.coarse(2)
    kw = dict(key=jax.random.key(0), record_every=5)
    got = mg.fit(MODEL, Curriculum(((c4, 30), (c2, 20)), problem, weigh=weigh),
                 optimizer=optax.sgd(decaying()), epochs=65, **kw)
    if weigh:
        c4, c2 = c4.weighted(16), c2.weighted(4)
    params, start = None, 0
    for p, e in ((c4, 30), (c2, 20), (problem, 15)):
        step = mg.fit(MODEL, p, optimizer=optax.sgd(decaying(start)), epochs=e,
                      init_params=None if params is None else params, **kw)
        params, start = step.params, start + e
    for x, y in zip(jax.tree_util.tree_leaves(got.params), jax.tree_util.tree_leaves(params),
                    strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)
    # one grade of 65 epochs, records at every 5 (each stage's end among them), the
    # result on the full grid
    assert [(g.grade, g.epochs) for g in got.grades] == [(1, 65)]
    np.testing.assert_array_equal(got.history["epoch"], np.arange(5, 66, 5))
    np.testing.assert_allclose(got.grades[0].metrics["test_psnr"],
                               step.grades[0].metrics["test_psnr"], rtol=1e-5)
    assert got.predictions[-1].shape == (16 * 16, 1)
    if not weigh:  # the coarse stages' losses are sums over 16 and 64 pixels, then 256
        loss = got.history["train_loss"]
        assert loss[5] < loss[6] and loss[9] < loss[10]


def test_adams_state_carries_across_stages(problem):
    """Adam's moments carry: restarting them at each stage (the chain of `fit`s) is
    another run."""
    c2 = problem.coarse(2)
    kw = dict(key=jax.random.key(0), record_every=5, optimizer=optax.adam(1e-2))
    got = mg.fit(MODEL, Curriculum(((c2, 20),), problem), epochs=30, **kw)
    first = mg.fit(MODEL, c2, epochs=20, **kw)
    chain = mg.fit(MODEL, problem, epochs=10, init_params=first.params, **kw)
    assert not np.allclose(jax.tree_util.tree_leaves(got.params)[0],
                           jax.tree_util.tree_leaves(chain.params)[0])


# records of 5 epochs: stages 4× (epochs 0-20), 2× (20-30), full (30-50)
@pytest.mark.parametrize("stop_after", [2, 4, 5, 6, 8])  # in, at the end of, in, at the
def test_a_curriculum_resumes_as_an_uninterrupted_run(problem, stop_after, tmp_path):  # end
    """Interrupted in a stage or at a stage's end (the checkpoint written to disk and read
    back, as a run directory's is), the resumed fit equals the uninterrupted one."""
    c4, c2 = problem.coarse(4), problem.coarse(2)
    grade = Curriculum(((c4, 20), (c2, 10)), minibatch(problem, 0.25, jax.random.key(3)))
    kw = dict(optimizer=optax.adam(1e-2), epochs=50, key=jax.random.key(0), record_every=5,
              window=2, checkpoint_every=5)
    full = mg.fit(MODEL, grade, **kw)
    with pytest.raises(FitInterrupted) as info:
        mg.fit(MODEL, grade, callbacks=[StopAfter(1, stop_after)], **kw)
    ckpt = info.value.checkpoint
    assert ckpt.pending.epochs == 5 * stop_after
    from multigrade import runs

    runs.write_npz(tmp_path / runs.CHECKPOINT, checkpoint_arrays(ckpt))
    read = load_checkpoint(tmp_path, MODEL, grade, [kw["optimizer"]])
    assert read.pending.state.aux.shape == ckpt.pending.state.aux.shape
    assert_same_run(mg.fit(MODEL, grade, start=read, **kw), full)


def test_a_curriculums_checkpoints_come_every_so_many_epochs_of_a_stage_and_at_its_end(
        problem):
    """A long stage is not a long stretch without a resume point: checkpoints every
    `checkpoint_every` epochs of each stage and at the end of every stage but the last
    (whose end is the grade's). Before, a 4 000-epoch SGDL deblurring curriculum at 512²
    went 2 500 epochs, a thousand of them on the full grid, without one."""
    c4, c2 = problem.coarse(4), problem.coarse(2)
    seen = StopAfter(1, 10**6)  # keeps every checkpoint, never stops
    mg.fit(MODEL, Curriculum(((c4, 15), (c2, 10)), problem), optimizer=optax.adam(1e-2),
           epochs=50, key=jax.random.key(0), record_every=5, checkpoint_every=10,
           callbacks=[seen])
    got = [c.pending.epochs for c in seen.checkpoints if c.pending is not None]
    # stage 1 (0-15): 10, its end 15; stage 2 (15-25): 25 (its end; 10 epochs in);
    # stage 3 (25-50): 35, 45 (its end, 50, is the grade's: no pending grade there)
    assert got == [10, 15, 25, 35, 45], got


def test_a_curriculum_is_checked_before_training(problem):
    c2 = problem.coarse(2)
    with pytest.raises(ValueError, match="grade 1: the curriculum's coarse stages take 30 "
                                         "epochs of the grade's 30"):
        mg.fit(MODEL, Curriculum(((c2, 30),), problem), optimizer=optax.adam(1e-2), epochs=30,
               key=jax.random.key(0))
    with pytest.raises(ValueError, match="positive whole number"):
        Curriculum(((c2, 0),), problem)
    regression = mg.image_regression(mg.load_image("camera", size=8))
    with pytest.raises(ValueError, match="one problem on several grids"):
        Curriculum(((regression, 5),), problem)
    with pytest.raises(ValueError, match="positive number"):
        problem.weighted(0.0)
    with pytest.raises(ValueError, match="not a grid per grade or stage"):
        mg.fit(MODEL, Curriculum(((c2, 5),), problem), optimizer=optax.adam(1e-2), epochs=10,
               key=jax.random.key(0), divergence=mg.Divergence(jnp.ones((1, *problem.shape))))


def test_a_coarser_stages_stopping_rule_ends_the_stage_and_divergence_the_grade(problem):
    c2 = problem.coarse(2)
    kw = dict(key=jax.random.key(0), record_every=5, window=2)
    # tol 1: every window "stalls", so each stage stops at its first window (10 epochs);
    # the coarse stage's stop hands over to the last stage, whose stop ends the grade
    got = mg.fit(MODEL, Curriculum(((c2, 40),), problem), optimizer=optax.adam(1e-3),
                 epochs=80, tol=1.0, **kw)
    assert got.history["epoch"].tolist() == [5, 10, 15, 20, 45, 50, 55, 60]
    assert [(g.epochs, g.status) for g in got.grades] == [(60, "stopped")]
    # GD far past the edge on the coarse grid: the grade diverges there, and its
    # (non-finite) result is still the full grid's
    bad = mg.fit(MODEL, Curriculum(((c2, 40),), problem), optimizer=optax.sgd(1.0), epochs=80,
                 **kw)
    assert bad.grades[0].status == "diverged" and bad.grades[0].epochs <= 40
    assert bad.predictions[-1].shape == (16 * 16, 1)


TINY = ["--image", "camera", "--size", "16", "--width", "8", "--quiet"]


def test_sgdls_curriculum_from_the_cli(tmp_path):
    """`--curriculum 4,2 --curriculum-epochs 30,10 --epochs 20`: one grade of 60 epochs,
    its schedule over all of them, its records marked by grid, the oracle among the full
    grid's records only."""
    from typer.testing import CliRunner

    from multigrade import runs
    from multigrade.cli import app
    from multigrade.experiments import load_config
    from multigrade.experiments.building import fit_arguments, problem_for

    res = CliRunner().invoke(app, ["fit", "denoise", "--method", "sgdl", "--layers-per-grade",
                                   "2", *TINY, "--curriculum", "4,2", "--curriculum-epochs",
                                   "30,10", "--epochs", "20", "--lr", "1e-2", "--schedule",
                                   "warmup-cosine", "--record-every", "10",
                                   "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    cfg = load_config(tmp_path / "s" / "config.toml")
    assert cfg.train.stages() == [(4, 30), (2, 10)] and cfg.train.budgets(1) == [60]
    metrics = runs.read_json(tmp_path / "s" / "metrics.json")
    assert [g["epochs"] for g in metrics["grades"]] == [60]
    history = runs.read_history(tmp_path / "s" / runs.HISTORY)
    assert history["epoch"].tolist() == [10, 20, 30, 40, 50, 60]
    assert history["coarse"][:4].tolist() == [4, 4, 4, 2]
    assert np.isnan(history["coarse"][4:]).all()  # the image's own grid
    assert metrics["selection"]["oracle"]["epoch"] > 40
    # fit gets one grade of 60 epochs (a schedule's horizon: `TrainConfig.optimizers`)
    args = fit_arguments(cfg, problem_for(cfg))
    assert args["epochs"] == [60]
    problem = args["problem"]
    assert [(p.shape, e) for p, e in problem.stages] == [((4, 4, 1), 30), ((8, 8, 1), 10)]


@pytest.mark.parametrize("args, message", [
    (["--grades", "2", "--curriculum", "2"], "MGDL's grades go coarse to fine with"),
    (["--method", "sgdl", "--curriculum", "2", "--curriculum-epochs", "5,5"],
     "gives 2 budgets for 1 coarse stages"),
    (["--method", "sgdl", "--curriculum", "2", "--select", "holdout"],
     "block means would read the held-out pixels"),
])
def test_a_bad_curriculum_is_one_line(tmp_path, args, message):
    from typer.testing import CliRunner

    from multigrade.cli import app

    res = CliRunner().invoke(app, ["fit", "denoise", *args, *TINY, "--epochs", "10",
                                   "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_curriculum_in_words():
    from multigrade.experiments.summaries import recipe_words

    assert recipe_words({"epochs": 20, "schedule": "cosine", "curriculum": [4, 2],
                         "curriculum_epochs": [30]}, 1) == \
        "epochs 20, cosine, first on 4×, 2× coarser grids (30/20 epochs)"


def test_a_weighed_loss_is_the_loss_times_its_weight_on_batches_too(problem):
    c2 = problem.coarse(2)
    pred = jax.random.normal(jax.random.key(5), (64, 1))
    u = 0.1 * jax.random.normal(jax.random.key(6), (2, 8, 8, 1))
    np.testing.assert_allclose(c2.weighted(4).loss(pred, u), 4 * c2.loss(pred, u), rtol=1e-6)
    anchors = jnp.arange(5)
    at = pred[c2.stencil(anchors)]
    np.testing.assert_allclose(c2.weighted(4).loss_at(at, u, anchors),
                               4 * c2.loss_at(at, u, anchors), rtol=1e-6)
    # a curriculum weighs a mini-batched coarse stage's problem by the pixel ratio
    grade = Curriculum(((minibatch(c2, 0.5, jax.random.key(0)), 5),), problem)
    assert grade.stages[0][0].problem.weight == 4.0 and grade.final is problem


def test_tries_in_words_name_the_rule_that_keeps_one():
    from multigrade.experiments.summaries import recipe_words

    train = {"epochs": 20, "grade_tries": [1, 3]}
    assert recipe_words(train, 2) == "epochs 20, grade 2 best of 3 tries by training loss"
    assert recipe_words({**train, "try_rule": "erank"}, 2) == \
        "epochs 20, grade 2 best of 3 tries by their features' effective rank"
    assert recipe_words(train, 1) == "epochs 20"  # grade 2's tries: not in one grade
