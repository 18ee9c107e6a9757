"""Mini-batch grades (`problems.minibatch`, `train.batch`, `--batch`): each step on random
anchor pixels and their stencils (for a blur: tiles and their windows), an unbiased
estimate of the full epoch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade import runs
from multigrade.cli import app
from multigrade.experiments import superres
from multigrade.experiments.checkpoints import checkpoint_arrays, load_checkpoint
from multigrade.problems import deblurring, denoising, tiles
from multigrade.problems.inpainting import inpainting
from multigrade.problems.minibatch import MiniBatch, minibatch, units
from multigrade.train import Divergence, FitInterrupted, GradeState, make_epoch
from multigrade.train._programs import make_batch_epoch
from test_checkpoint import StopAfter, assert_same_run
from test_runner import assert_same_arrays, assert_same_history

MODEL = mg.mgdl([[12, 12], [12]])


def _image():
    return np.random.default_rng(0).random((7, 6))


PROBLEMS = {
    "denoise": lambda: denoising(_image(), 0.1, key=jax.random.key(0), beta=0.7, lam=0.03),
    "held-out": lambda: denoising(_image(), 0.1, key=jax.random.key(0)).held_out(
        0.3, jax.random.key(2)),
    "inpaint": lambda: inpainting(_image(), 0.4, 0.05, key=jax.random.key(1)),
    "regression": lambda: mg.image_regression(np.random.default_rng(1).random((6, 5))),
    # a pixel-wise degradation in tiles: 4 × 4 (overlapping along both axes), 3 × 3, 1 × 1
    "denoise-tiles": lambda: denoising(_image(), 0.1, key=jax.random.key(0), beta=0.7,
                                       lam=0.03).in_tiles(4),
    "held-out-tiles": lambda: denoising(_image(), 0.1, key=jax.random.key(0)).held_out(
        0.3, jax.random.key(2)).in_tiles(3),
    "inpaint-tiles": lambda: inpainting(_image(), 0.4, 0.05, key=jax.random.key(1)
                                        ).in_tiles(1),
    # tiles of 32 with overlaps along both axes, windows reaching past the tiles
    "deblur": lambda: deblurring(np.random.default_rng(2).random((40, 37)), 1.0,
                                 key=jax.random.key(0), beta=0.7, lam=0.03),
    "deblur-held-out": lambda: deblurring(
        np.random.default_rng(3).random((34, 45)), 2.0, key=jax.random.key(0)).held_out(
        0.3, jax.random.key(2)),
}


def _start(problem, grade: int = 0):
    """A grade's start with a nonzero auxiliary state and a nonzero frozen base."""
    params = MODEL.init_grade(MODEL.grade_key(jax.random.key(3), grade), grade,
                              problem.in_dim)
    aux = problem.init_aux(None)
    if jax.tree_util.tree_leaves(aux):
        aux = 0.05 * jax.random.normal(jax.random.key(4), aux.shape)
    n = problem.inputs["train"].shape[0]
    base = 0.1 * jax.random.normal(jax.random.key(5), (n, problem.out_dim))
    return params, aux, base


def _update(state_before, state_after):
    return jax.tree_util.tree_map(lambda a, b: a - b, state_before.params, state_after.params)


# Compiled whole (problems are pytrees): op by op, the denoising cases spent ~15 s compiling
# each primitive separately; the arithmetic is the same.
@jax.jit
def _full_epoch(problem, params, aux, base, scale=0.7):
    """What the full epoch's SGD(1) step moves the parameters by (its gradient), and u."""
    tx = optax.sgd(1.0)
    st = GradeState(params, tx.init(params), aux)
    new, loss = make_epoch(problem, tx, problem.inputs["train"], base, scale, None,
                           MODEL.grade_output)(st)
    return _update(st, new), new.aux, loss


@jax.jit
def _batch_terms(problem, params, aux, base, anchors, scale=0.7):
    """(n/m)·Σ t_a over `anchors` after the anchors' aux update, its gradient, and u."""
    n = units(problem)
    pts = problem.stencil(anchors)

    def loss(p):
        g = MODEL.grade_output(p, problem.inputs["train"][pts.reshape(-1)])
        pred = (base[pts.reshape(-1)] + scale * g).reshape(*pts.shape, -1)
        u = jax.lax.stop_gradient(problem.aux_at(aux, anchors, pred))  # u is fixed in a step
        return n / anchors.size * problem.loss_at(pred, u, anchors), u

    (value, u), grad = jax.value_and_grad(loss, has_aux=True)(params)
    return value, grad, u


@pytest.mark.parametrize("shape, band, side", [
    ((40, 37), 3, None), ((64, 64), 9, None), ((70, 33), 20, None), ((20, 50), 0, None),
    ((7, 6), 0, 4), ((20, 50), 0, 16), ((9, 9), 0, 1), ((40, 37), 3, 8)])
def test_tiles_cover_the_image_once_by_weight_and_windows_hold_their_reach(shape, band,
                                                                           side):
    """Every pixel's weights over the tiles holding it sum to 1, and each window holds
    its tile grown by `band` before it and by `band` (at least 1) past it, clipped to the
    image: with the default side at most four times the tile's pixels; with band 0, one
    row and one column more than the tile (where the image has them)."""
    t = tiles.tiling(shape, band, side)
    h, w = shape
    if side is not None:
        assert t.tile == (min(side, h), min(side, w))
    if band == 0:
        assert t.window == (min(t.tile[0] + 1, h), min(t.tile[1] + 1, w))
    covered = np.zeros(shape)
    for tile in range(t.count):
        px = np.asarray(tiles.pixels(t, jnp.array([tile]), w))
        covered.flat[px] += t.weight.flat[px]
        rows, cols = np.divmod(np.asarray(tiles.stencil(t, jnp.array([tile]), w))[0], w)
        reach = max(band, 1)
        need_r = np.arange(max(0, px.min() // w - band), min(h, px.max() // w + reach + 1))
        need_c = np.arange(max(0, px.min() % w - band), min(w, px.max() % w + reach + 1))
        assert set(need_r) <= set(rows) and set(need_c) <= set(cols)
        assert rows.size == t.window[0] * t.window[1]
        assert side is not None or rows.size <= 4 * t.tile[0] * t.tile[1]
    np.testing.assert_allclose(covered, 1.0)


def _close(a, b, **kw):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


@pytest.mark.parametrize("name", PROBLEMS)
def test_every_anchor_once_is_the_full_epoch(name):
    """The per-anchor terms sum to `loss` and the anchors' aux updates are `update_aux`."""
    problem = PROBLEMS[name]()
    params, aux, base = _start(problem)
    n = units(problem)
    step, u_full, loss_full = _full_epoch(problem, params, aux, base)
    value, grad, u = _batch_terms(problem, params, aux, base, jnp.arange(n))
    assert float(value) == pytest.approx(float(loss_full), rel=1e-5)
    _close(u, u_full, atol=1e-7)
    _close(grad, step, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("name", PROBLEMS)
def test_the_mean_over_single_anchors_is_the_full_gradient(name):
    """A draw's estimator is the mean of independent one-anchor estimators, each with
    expectation (1/n)·Σ_a over every anchor: exactly the full gradient (unbiased)."""
    problem = PROBLEMS[name]()
    params, aux, base = _start(problem)
    n = units(problem)
    step, _, _ = _full_epoch(problem, params, aux, base)
    grads = jax.vmap(lambda a: _batch_terms(problem, params, aux, base, a[None])[1])(
        jnp.arange(n))
    _close(jax.tree_util.tree_map(lambda g: g.mean(0), grads), step, rtol=2e-4, atol=1e-6)


def test_a_minibatch_epochs_gradient_is_an_unbiased_estimate_over_many_draws():
    """The sampler itself: 20 000 steps of the real batch epoch (SGD(1), so the step is
    the gradient), their mean against the full epoch's gradient, component by component
    within 5 standard errors (without the n/size factor the mean would sit at size/n of it)."""
    problem = PROBLEMS["denoise"]()
    params, aux, base = _start(problem, grade=1)
    feats = jax.random.normal(jax.random.key(6), (42, 12))  # a later grade's features
    tx = optax.sgd(1.0)
    st = GradeState(params, tx.init(params), aux)
    full = make_epoch(problem, tx, feats, base, 0.7, None, MODEL.grade_output)(st)[0]
    batch = minibatch(problem, 5, jax.random.key(7))
    epoch = make_batch_epoch(batch, tx, feats, base, 0.7, MODEL.grade_output)
    draws = 20_000
    steps = jax.jit(jax.vmap(lambda i: _update(st, epoch(st, i)[0])))(jnp.arange(draws))
    for s, f in zip(jax.tree_util.tree_leaves(steps),
                    jax.tree_util.tree_leaves(_update(st, full))):
        s, f = np.asarray(s, np.float64), np.asarray(f, np.float64)
        se = s.std(axis=0) / np.sqrt(draws)
        assert np.all(np.abs(s.mean(axis=0) - f) <= 5 * se + 1e-6 * (1 + np.abs(f)))
    # the draws differ from step to step and repeat for the same step index
    a0, a1 = batch.draw(0)[0], batch.draw(1)[0]
    assert not np.array_equal(a0, a1) and np.array_equal(a0, batch.draw(0)[0])


@pytest.mark.slow
def test_a_minibatch_fit_resumed_from_its_checkpoint_file_equals_an_uninterrupted_one(
        tmp_path):
    problem = denoising(mg.load_image("camera", size=16), 0.1, key=jax.random.key(1))
    model = mg.mgdl([[8, 8]] * 3)
    batch = minibatch(problem, 0.25, jax.random.key(9))
    grids = [problem.coarse(2), batch, batch]
    kw = dict(optimizer=optax.adam(1e-2), epochs=60, key=jax.random.key(0), record_every=5,
              window=4, checkpoint_every=25)
    full = mg.fit(model, grids, **kw)
    assert full.grades[1].metrics != full.grades[2].metrics
    for grade in (2, 3):
        with pytest.raises(FitInterrupted) as info:
            mg.fit(model, grids, callbacks=[StopAfter(grade, 2)], **kw)
        runs.write_npz(tmp_path / runs.CHECKPOINT, checkpoint_arrays(info.value.checkpoint))
        start = load_checkpoint(tmp_path, model, grids, [kw["optimizer"]] * 3)
        assert_same_run(mg.fit(model, grids, start=start, **kw), full)
    # the records measure the full problem: the last one is the result's
    last = full.history["test_psnr"][-1]
    assert full.grades[-1].metrics["test_psnr"] == pytest.approx(float(last), rel=1e-6)


def test_minibatch_errors():
    problem = PROBLEMS["denoise"]()
    with pytest.raises(ValueError, match="pixel-wise degradation"):
        minibatch(superres.superresolution(mg.load_image("camera", size=16), 2, 0.0,
                                           key=jax.random.key(0)), 0.5, jax.random.key(0))
    with pytest.raises(ValueError, match="fraction must be in"):
        minibatch(problem, 1.5, jax.random.key(0))
    with pytest.raises(ValueError, match="positive integer"):
        minibatch(problem, 0, jax.random.key(0))
    with pytest.raises(ValueError, match="of a mini-batch"):
        MiniBatch(minibatch(problem, 3, jax.random.key(0)), jax.random.key(0), 3)
    with pytest.raises(ValueError, match="positive integer"):
        problem.in_tiles(0)
    with pytest.raises(ValueError, match="pixel-wise degradation"):
        superres.superresolution(mg.load_image("camera", size=16), 2, 0.0,
                                 key=jax.random.key(0)).in_tiles(4)
    with pytest.raises(ValueError, match="full-batch training"):
        mg.fit(MODEL, minibatch(problem, 3, jax.random.key(0)), optimizer=optax.adam(1e-3),
               epochs=10, key=jax.random.key(0),
               divergence=Divergence(jnp.ones((1, *problem.shape))))


TINY = ["--image", "camera", "--size", "16", "--layers-per-grade", "1", "--width", "8",
        "--epochs", "20", "--quiet"]


@pytest.mark.integration
def test_minibatch_grades_from_the_cli_grow_as_if_trained_at_once(tmp_path):
    """`--batch` through the config and the run store: `grow` draws the batches a run of
    all grades at once would have drawn (the draws follow the run's step index)."""
    args = ["fit", "denoise", *TINY, "--coarse", "2", "--batch", "0.25"]
    for grades, out in ((2, "two"), (3, "three")):
        res = CliRunner().invoke(app, [*args, "--grades", str(grades), "--out",
                                       str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    assert runs.read_toml(tmp_path / "two" / "config.toml")["train"]["batch"] == 0.25
    assert runs.read_summary(tmp_path / "two")["problem"]["batch"] == 64  # a quarter of 16²
    res = CliRunner().invoke(app, ["grow", str(tmp_path / "two"), "--grades", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert_same_arrays(tmp_path / "two" / runs.PARAMS, tmp_path / "three" / runs.PARAMS)
    assert_same_history(tmp_path / "two" / runs.HISTORY, tmp_path / "three" / runs.HISTORY)


@pytest.mark.parametrize("args, message", [
    (["superres", "--batch", "0.5"], "need a pixel-wise degradation or a blur"),
    (["denoise", "--batch", "0"], "batch must be positive"),
    (["denoise", "--batch", "2"], "batch must be at most 1.0"),
    (["denoise", "--batch", "0.5", "--select", "sure"], "follows full-batch training"),
    (["denoise", "--batch-tile", "8"], "give --batch too"),
    (["denoise", "--batch", "0.5", "--batch-tile", "0"], "batch_tile must be a positive"),
    (["regression", "--batch", "0.5", "--batch-tile", "8"], "tiles are a restoration's"),
    (["superres", "--batch", "0.5", "--batch-tile", "8"], "need a pixel-wise degradation"),
])
def test_bad_minibatch_options_are_one_line(tmp_path, args, message):
    res = CliRunner().invoke(app, ["fit", *args, *TINY, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_tiled_minibatches_from_the_cli_reach_the_problem_and_grow_as_if_at_once(tmp_path):
    """`--batch-tile` through the config and the run store: the run's batches are of
    tiles (a batch of a quarter of 16²'s sixteen 4 × 4 tiles: 4), and `grow` draws the
    tiles a run of all grades at once would have drawn."""
    args = ["fit", "denoise", *TINY, "--coarse", "2", "--batch", "0.25", "--batch-tile", "4"]
    for grades, out in ((2, "two"), (3, "three")):
        res = CliRunner().invoke(app, [*args, "--grades", str(grades), "--out",
                                       str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    assert runs.read_toml(tmp_path / "two" / "config.toml")["train"]["batch_tile"] == 4
    described = runs.read_summary(tmp_path / "two")["problem"]
    assert described["batch"] == 4 and described["batch_tile"] == 4
    res = CliRunner().invoke(app, ["grow", str(tmp_path / "two"), "--grades", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert_same_arrays(tmp_path / "two" / runs.PARAMS, tmp_path / "three" / runs.PARAMS)
    assert_same_history(tmp_path / "two" / runs.HISTORY, tmp_path / "three" / runs.HISTORY)
