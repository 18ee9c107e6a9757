import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.analysis import (
    classify,
    extreme_eigenvalues,
    hessian,
    hvp,
    lanczos,
    lr_sweep,
    make_stability_probe,
    stability_report,
)
from multigrade.analysis.hessian import flat_loss
from multigrade.problems import synthetic
from multigrade.train import fit_sweep


@pytest.fixture(scope="module")
def data():
    return synthetic(1)


def _net_loss(model, problem):
    x, y = problem.x["train"], problem.y["train"]
    return lambda p: 0.5 * jnp.mean((model.grade_output(p, x) - y) ** 2)


def test_hessian_of_quadratic_is_A():
    A = jax.random.normal(jax.random.key(0), (6, 6))
    A = A @ A.T
    H = hessian(lambda x: 0.5 * x @ A @ x, jnp.ones(6))
    np.testing.assert_allclose(H, A, rtol=1e-12)
    # least squares: the Hessian of ½ mean((Xw − y)²) is XᵀX / n
    X = jax.random.normal(jax.random.key(1), (40, 5))
    y = jax.random.normal(jax.random.key(2), (40,))
    H = hessian(lambda w: 0.5 * jnp.mean((X @ w - y) ** 2), jnp.zeros(5))
    np.testing.assert_allclose(H, X.T @ X / 40, rtol=1e-12)


def test_hessian_equals_finite_differences_and_hvp(data, key):
    model = mg.mgdl([[6, 5]], init="he")
    params = model.init_grade(key, 0, 1)
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # away from ReLU kinks at 0
    loss = _net_loss(model, data)
    f, x = flat_loss(loss, params)
    H = np.asarray(hessian(loss, params))
    g = jax.jit(jax.grad(f))  # compiled once for the 2·61 evaluations
    h = 1e-5
    fd = np.stack([(g(x + h * e) - g(x - h * e)) / (2 * h) for e in np.eye(x.size)], axis=1)
    err = np.linalg.norm(H - fd) / np.linalg.norm(fd)
    assert err < 1e-4, err
    Hv = hvp(loss, params)
    for i in (0, 7, x.size - 1):
        np.testing.assert_allclose(Hv(jnp.eye(x.size)[i]), H[:, i], rtol=1e-9, atol=1e-12)


def test_lanczos_full_order_equals_eigh():
    A = jax.random.normal(jax.random.key(3), (30, 30))
    A = A + A.T
    ritz = lanczos(lambda v: A @ v, 30, 30, key=jax.random.key(4))
    np.testing.assert_allclose(ritz, np.linalg.eigvalsh(np.asarray(A)), rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="key or a start vector"):
        lanczos(lambda v: A @ v, 30, 10)


def test_lanczos_extremes_match_eigh_on_a_network(data, key):
    model = mg.sgdl([44, 44], init="he")  # 2 113 parameters
    params = model.init_grade(key, 0, 1)
    params = mg.fit(model, data, optimizer=optax.sgd(0.05), epochs=100, key=key).params[0]
    loss = _net_loss(model, data)
    exact = np.linalg.eigvalsh(np.asarray(hessian(loss, params)))
    assert exact.size == 2113
    lo, hi = extreme_eigenvalues(loss, params, 3, key=jax.random.key(5), order=300)
    scale = np.abs(exact).max()
    np.testing.assert_allclose(hi, exact[-3:], rtol=1e-3)
    np.testing.assert_allclose(lo, exact[:3], atol=1e-3 * scale)
    # the error at both ends shrinks as the order grows (order 300: the run above)
    errs = []
    for order in (20, 60):
        lo1, hi1 = extreme_eigenvalues(loss, params, 1, key=jax.random.key(5), order=order)
        errs.append(abs(hi1[0] - exact[-1]) + abs(lo1[0] - exact[0]))
    errs.append(abs(hi[-1] - exact[-1]) + abs(lo[0] - exact[0]))
    assert errs[2] < errs[0]


def _gd_losses(A, lr, steps=400):
    x0 = jnp.ones(A.shape[0])

    def step(x, _):
        return x - lr * (A @ x), 0.5 * x @ A @ x

    return np.asarray(jax.lax.scan(step, x0, None, length=steps)[1])


def test_gd_on_quadratic_diverges_just_above_critical_rate():
    A = jnp.diag(jnp.array([4.0, 1.0, 0.25]))
    report = stability_report(lambda x: 0.5 * x @ A @ x, jnp.ones(3), lr=0.1)
    np.testing.assert_allclose(report.critical_lr, 0.5)
    np.testing.assert_allclose(report.eigenvalues, [0.25, 1.0, 4.0])
    above, below = 0.5 * 1.02, 0.5 * 0.98
    assert stability_report(lambda x: 0.5 * x @ A @ x, jnp.ones(3), lr=above).num_unstable == 1
    assert stability_report(lambda x: 0.5 * x @ A @ x, jnp.ones(3), lr=below).num_outside == 0
    assert classify(_gd_losses(A, above)) == "diverged"
    assert classify(_gd_losses(A, below)) == "converged"


def test_classify_labels():
    assert classify([1.0, 0.5, np.nan]) == "diverged"
    assert classify([1.0, 2.0, 3.0]) == "diverged"
    assert classify([1.0, 0.9, 0.9, 0.9, 0.9]) == "stalled"
    assert classify([1.0, 0.3, 0.9, 0.3, 0.9, 0.3, 0.9, 0.3, 0.9]) == "oscillated"
    # bumps on a descent, smaller than the loss level: still converged
    assert classify([1.0, 0.5, 0.3, 0.2, 0.25, 0.15, 0.18, 0.1]) == "converged"
    assert classify([1.0, 0.5, 0.25, 0.125, 0.0625]) == "converged"


def test_vmapped_sweep_equals_separate_runs(data, key):
    model = mg.mgdl([[8]] * 2, init="he")
    lrs = [0.01, 0.05, 0.2]
    swept = fit_sweep(model, data, lrs, epochs=40, key=key)
    for lr, s in zip(lrs, swept):
        single = mg.fit(model, data, optimizer=optax.sgd(lr), epochs=40, key=key)
        for name in ("train_loss", "val_loss"):
            np.testing.assert_allclose(s.history[name], single.history[name], rtol=1e-9)
        for a, b in zip(jax.tree_util.tree_leaves(s.params),
                        jax.tree_util.tree_leaves(single.params)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        assert s.metrics.keys() == single.metrics.keys()


def test_sweep_labels_divergence_without_stopping_others(data, key):
    sweep = lr_sweep(mg.sgdl([16] * 3, init="he"), data, [0.01, 50.0], epochs=100, key=key)
    assert sweep.labels[1] == "diverged" and sweep.labels[0] != "diverged"
    assert sweep.largest_stable_lr in (None, 0.01)
    assert np.isfinite(sweep.results[0].metrics["train_loss"])
    assert len(sweep.results[0].history["step"]) == 10  # trained to the end


def test_a_sweep_stops_between_chunks_when_a_callback_asks(data, key):
    # Ctrl-C on `mgdl lr-sweep` reaches the sweep through a callback (never an exception
    # inside a JAX call); a sweep of members keeps no checkpoint to hand over.
    class StopAfter(mg.Callback):
        def __init__(self, n):
            self.n, self.records = n, 0

        def on_records(self, grade, rows):
            self.records += len(rows)

        def stop_requested(self):
            return self.records >= self.n

    stop = StopAfter(3)
    with pytest.raises(mg.FitInterrupted) as caught:
        lr_sweep(mg.sgdl([8] * 2), data, [0.01, 0.02], epochs=1000, key=key, record_every=10,
                 callbacks=[stop])
    assert caught.value.checkpoint is None
    assert 3 <= stop.records < 100  # stopped at the first chunk boundary after the ask


def test_stability_probe_along_training(data, key):
    model = mg.mgdl([[8]] * 2, init="he")
    r = mg.fit(model, data, optimizer=optax.sgd(0.05), epochs=60, key=key,
               probe=mg.Probe(make_stability_probe(0.05), 30))
    assert [(p["grade"], p["epoch"]) for p in r.probes] == [(1, 0), (1, 30), (1, 60),
                                                          (2, 0), (2, 30), (2, 60)]
    assert [p["num_params"] for p in r.probes] == [25] * 3 + [81] * 3
    last = r.probes[-1]
    # the probed loss is the recorded training loss: the same function at the same point
    assert last["hessian"] == "dense" and last["eigenvalues"].size == 81
    np.testing.assert_allclose(last["critical_lr"], 2 / last["lambda_max"])
    np.testing.assert_allclose(last["jacobian_min"], 1 - 0.05 * last["lambda_max"])


def test_probe_loss_is_the_grade_loss(data, key):
    seen = []
    model = mg.mgdl([[8]] * 2, init="he")
    r = mg.fit(model, data, optimizer=optax.sgd(0.05), epochs=20, key=key,
               probe=mg.Probe(lambda g, e, p, loss: seen.append(float(loss(p))) or {}, 20))
    h = r.history
    np.testing.assert_allclose(seen[1], h["train_loss"][h["grade"] == 1][-1], rtol=1e-10)
    np.testing.assert_allclose(seen[3], h["train_loss"][-1], rtol=1e-10)


def test_lanczos_is_used_above_the_dense_threshold(data, key):
    from multigrade.analysis import hessian_eigenvalues

    model = mg.sgdl([16, 16], init="he")
    params = model.init_grade(key, 0, 1)
    loss = _net_loss(model, data)
    dense, how = hessian_eigenvalues(loss, params)
    assert how == "dense"
    extremes, how = hessian_eigenvalues(loss, params, dense_max=100, k=2, key=key)
    assert how == "lanczos" and extremes.size == 4
    np.testing.assert_allclose(extremes[-1], dense[-1], rtol=1e-6)


def test_probes_compile_their_hessian_once_per_shape(data, key):
    import importlib

    hessian_module = importlib.import_module("multigrade.analysis.hessian")
    before = hessian_module._dense_hessian._cache_size()
    r = mg.fit(mg.mgdl([[8]] * 3, init="he"), data, optimizer=optax.sgd(0.05), epochs=60,
               key=key, probe=mg.Probe(make_stability_probe(0.05), 20))
    assert len(r.probes) == 12
    # grade 1 (input 1) and grades 2-3 (input 8): two programs for twelve probes
    assert hessian_module._dense_hessian._cache_size() - before == 2
