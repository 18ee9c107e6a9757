import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.train import GradeState, make_epoch


@pytest.fixture(scope="module")
def problem():
    return mg.image_regression(mg.load_image("camera", size=24))


def test_stopping_rule_on_hand_computed_sequence():
    # window 2: checks after records 4, 6, 8, ...
    # after 4: old mean(10, 8) = 9, new mean(6, 4) = 5 -> change 4/9, keep going
    # after 6: old 5, new mean(4.9, 5.1) = 5 -> change 0 < tol: stop at record 6
    seq = [10, 8, 6, 4, 4.9, 5.1, 1, 1]
    assert mg.stop_index(seq, window=2, tol=1e-3) == 6
    assert not mg.should_stop(seq[:5], window=2, tol=1e-3)  # not a multiple of the window
    assert mg.stop_index(seq, window=2, tol=None) is None
    # relative change exactly at the tolerance does not stop (strictly below)
    seq = [1.0, 1.0, 1.5, 1.5]  # |1.5 - 1| / 1 = 0.5
    assert mg.stop_index(seq, window=2, tol=0.5) is None
    assert mg.stop_index(seq, window=2, tol=0.5000001) == 4
    # the rule needs two full windows
    assert mg.stop_index([1.0] * 39, window=20, tol=1.0) is None
    assert mg.stop_index([1.0] * 40, window=20, tol=1.0) == 40


def test_fit_applies_the_stopping_rule(problem, key):
    # A huge tolerance makes the rule fire at its first check: 2 windows of records.
    r = mg.fit(mg.mgdl([[8]] * 2), problem, optimizer=optax.adam(1e-3), epochs=500,
               key=key, record_every=5, window=4, tol=10.0)
    assert [g.epochs for g in r.grades] == [40, 40]
    assert [g.status for g in r.grades] == ["stopped", "stopped"]
    assert len(r.history["step"]) == 16
    np.testing.assert_array_equal(r.history["step"], np.arange(1, 17) * 5)


def test_training_reduces_loss_and_psnr_matches_skimage(problem, key):
    from skimage.metrics import peak_signal_noise_ratio

    r = mg.fit(mg.mgdl([[32, 32]] * 2), problem, optimizer=optax.adam(3e-3), epochs=300,
               key=key)
    loss = r.history["train_loss"]
    assert loss[-1] < 0.5 * loss[0]
    assert r.grades[1].metrics["train_loss"] < r.grades[0].metrics["train_loss"]
    pred = np.asarray(r.predict(problem.x["test"])).reshape(problem.image_shape)
    target = np.asarray(problem.y["test"]).reshape(problem.image_shape)
    expected = peak_signal_noise_ratio(target, pred, data_range=1.0)
    np.testing.assert_allclose(r.metrics["test_psnr"], expected, rtol=1e-10)
    np.testing.assert_allclose(mg.psnr(pred, target), expected, rtol=1e-10)


def test_scan_equals_python_loop_of_steps(problem, key):
    # fit's compiled chunks give the same parameters as stepping by hand in Python.
    tx = optax.adam(1e-2)
    model = mg.sgdl([6, 6])
    r = mg.fit(model, problem, optimizer=tx, epochs=20, key=key, record_every=5,
               window=2)
    params = model.init_grade(model.grade_key(key, 0), 0, 2)
    x = problem.x["train"]
    state = GradeState(params, tx.init(params), ())
    epoch = jax.jit(make_epoch(problem, tx, x, jnp.zeros((x.shape[0], 1)), 1.0))  # one step
    for _ in range(20):
        state, _ = epoch(state)
    np.testing.assert_allclose(
        np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(r.params[0])]),
        np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(state.params)]),
        rtol=1e-9, atol=1e-12)


def test_divergence_is_a_result_not_a_crash(problem, key):
    r = mg.fit(mg.mgdl([[16, 16]] * 3), problem, optimizer=optax.sgd(1e6), epochs=50,
               key=key)
    assert r.diverged
    assert r.grades[-1].status == "diverged"
    assert len(r.grades) < 3  # no grade is trained on top of a diverged one
    assert not np.all(np.isfinite(r.history["train_loss"]))


def test_later_grades_reuse_the_compiled_program(problem, key):
    r = mg.fit(mg.mgdl([[8, 8]] * 3), problem, optimizer=optax.adam(1e-3), epochs=20,
               key=key)
    assert r.grades[0].compile_seconds > 0 and r.grades[1].compile_seconds > 0
    assert r.grades[2].compile_seconds == 0.0  # same shapes as grade 2


@pytest.mark.slow
def test_a_crowded_process_releases_jax_caches_and_keeps_its_programs(problem, key):
    # JAX keeps every compiled program; past half of vm.max_map_count the chunk cache
    # clears JAX's caches (a process at the limit crashes in XLA's compiler) and keeps its
    # own programs, so a later run of the same model still compiles nothing.
    from multigrade.train._engine import _COMPILED, memory_maps

    if memory_maps() is None:
        pytest.skip("no /proc: the kernel's mapping count is not readable here")
    net, tx = mg.mgdl([[8, 8]]), optax.adam(1e-3)
    first = mg.fit(net, problem, optimizer=tx, epochs=20, key=key)
    jax.clear_caches()
    kept, (low, limit) = dict(_COMPILED.programs), memory_maps()
    for n in range(2, 42):  # programs only JAX's caches hold
        jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((n, 3))).block_until_ready()
    high = memory_maps()[0]
    assert high > low + 60, (low, high)
    assert not _COMPILED.release_if_crowded(fraction=(high + 20) / limit)
    assert _COMPILED.release_if_crowded(fraction=(low + high) / 2 / limit)
    assert memory_maps()[0] < (low + high) / 2 and _COMPILED.programs == kept
    again = mg.fit(net, problem, optimizer=tx, epochs=20, key=key)
    assert again.grades[0].compile_seconds == 0.0
    np.testing.assert_array_equal(again.history["train_loss"], first.history["train_loss"])
    assert _COMPILED.release_if_crowded(fraction=0.0) and not _COMPILED.programs


def test_per_grade_optimisers_and_budgets(problem, key):
    r = mg.fit(mg.mgdl([[8]] * 2), problem, optimizer=[optax.sgd(0.1), optax.adam(1e-3)],
               epochs=[20, 40], key=key)
    assert [g.epochs for g in r.grades] == [20, 40]
    with pytest.raises(ValueError, match="2 values given for 3 grades"):
        mg.fit(mg.mgdl([[8]] * 3), problem, optimizer=optax.sgd(0.1), epochs=[10, 10],
               key=key)


def test_a_budget_off_the_record_grid_trains_in_full_with_a_last_record(problem, key):
    # 15 epochs with records every 10: 15 epochs, records at 10 and 15, and the same
    # parameters as 15 single-epoch records
    a = mg.fit(mg.mgdl([[8]] * 2), problem, optimizer=optax.adam(1e-2), epochs=15, key=key)
    assert [g.epochs for g in a.grades] == [15, 15]
    np.testing.assert_array_equal(a.history["epoch"], [10, 15, 10, 15])
    np.testing.assert_array_equal(a.history["step"], [10, 15, 25, 30])
    b = mg.fit(mg.mgdl([[8]] * 2), problem, optimizer=optax.adam(1e-2), epochs=15, key=key,
               record_every=1)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"][[9, 14, 24, 29]],
                               rtol=1e-12)


def test_same_key_same_result_other_key_other_result(problem):
    kw = dict(optimizer=optax.adam(1e-2), epochs=20)
    a = mg.fit(mg.mgdl([[8]] * 2), problem, key=jax.random.key(3), **kw)
    b = mg.fit(mg.mgdl([[8]] * 2), problem, key=jax.random.key(3), **kw)
    c = mg.fit(mg.mgdl([[8]] * 2), problem, key=jax.random.key(4), **kw)
    np.testing.assert_array_equal(a.history["train_loss"], b.history["train_loss"])
    assert not np.allclose(a.history["train_loss"], c.history["train_loss"])


def test_blocked_evaluation_equals_whole_batch(problem, key):
    from multigrade.model import blocked

    x = jax.random.normal(key, (30, 3))
    fn = lambda v: jnp.tanh(v @ jnp.ones((3, 2)))
    np.testing.assert_array_equal(blocked(fn, x, 7), fn(x))  # 30 = 4 blocks of 7 + 2
    kw = dict(optimizer=optax.adam(1e-2), epochs=30, key=key)
    a = mg.fit(mg.mgdl([[8, 8]] * 2), problem, block=None, **kw)
    b = mg.fit(mg.mgdl([[8, 8]] * 2), problem, block=50, **kw)  # 144 train samples
    np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=1e-10)
    np.testing.assert_allclose(a.predictions[-1], b.predictions[-1], rtol=1e-10, atol=1e-13)


def test_stopping_rule_is_checked_at_windows_when_probes_interleave(problem, key):
    seen = []
    r = mg.fit(mg.mgdl([[8]]), problem, optimizer=optax.adam(1e-3), epochs=500, key=key,
               record_every=5, window=4, tol=10.0,
               probe=mg.Probe(lambda g, e, p, loss: seen.append(e) or {}, every=15))
    assert r.grades[0].epochs == 40 and r.grades[0].status == "stopped"
    assert seen == [0, 15, 30]
