"""Hutchinson's trace and SLQ against dense spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.analysis import hessian
from multigrade.analysis.density import hutchinson_trace, slq
from multigrade.analysis.hessian import flat_loss
from multigrade.problems import synthetic


@pytest.fixture(scope="module")
def network():
    """A small trained network's loss, its parameters and its dense Hessian."""
    data = synthetic(1)
    model = mg.sgdl([12, 12], init="he")
    key = jax.random.key(0)
    params = mg.fit(model, data, optimizer=optax.sgd(0.05), epochs=200, key=key).params[0]
    x, y = data.x["train"], data.y["train"]

    def loss(p):
        return 0.5 * jnp.mean((model.grade_output(p, x) - y) ** 2)

    return loss, params, np.asarray(hessian(loss, params), np.float64)


def test_hutchinson_trace_within_its_error_of_the_dense_trace(network):
    loss, params, H = network
    est, se = hutchinson_trace(loss, params, key=jax.random.key(1), num_probes=2000)
    exact = np.trace(H)
    assert abs(est - exact) < 4 * se
    # its standard error is what theory says: Var vᵀHv = 2 (‖H‖²_F − Σ H_ii²)
    predicted = np.sqrt(2 * (np.sum(H**2) - np.sum(np.diag(H) ** 2)) / 2000)
    assert 0.8 < se / predicted < 1.2
    assert abs(est - exact) < 0.05 * np.sum(np.abs(np.linalg.eigvalsh(H)))


def test_slq_moments_are_gauss_quadrature_of_each_probe(network):
    loss, params, H = network
    order, probes = 30, 8
    found = slq(loss, params, key=jax.random.key(2), num_probes=probes, order=order)
    assert found.nodes.shape == (probes, order)
    np.testing.assert_allclose(found.weights.sum(axis=1), 1.0, rtol=1e-10)
    # the same Rademacher vectors, through the dense Hessian: vᵀH^k v / n, exact up to
    # degree 2·order − 1
    n = H.shape[0]
    V = np.stack([np.asarray(jax.random.rademacher(k, (n,), dtype=jnp.float64))
                  for k in jax.random.split(jax.random.key(2), probes)])
    scale = np.abs(np.linalg.eigvalsh(H)).max()
    for k in (1, 2, 3, 4):
        direct = np.mean([v @ np.linalg.matrix_power(H, k) @ v / n for v in V])
        assert abs(found.moment(k) - direct) < 1e-8 * scale**k
    # and the moments estimate tr(H^k)/n of the whole spectrum
    eig = np.linalg.eigvalsh(H)
    assert abs(found.moment(2) - np.mean(eig**2)) < 0.5 * np.mean(eig**2)
    # the smoothed density integrates to 1
    width = 0.05 * scale
    grid = np.linspace(eig.min() - 8 * width, eig.max() + 8 * width, 4001)
    dens = found.smoothed(grid, width=width)
    assert abs(np.sum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid)) - 1.0) < 1e-3


def test_density_refuses_bad_sizes(network):
    loss, params, _ = network
    with pytest.raises(ValueError, match="num_probes"):
        hutchinson_trace(loss, params, key=jax.random.key(0), num_probes=1)
    assert flat_loss(loss, params)[1].size == 193


@pytest.mark.integration
def test_spectrum_density_cli(tmp_path):
    """`mgdl spectrum --density`: a density per probe in density.npz whose weights sum to
    one and whose trace (in spectrum.csv) is within four standard errors of the sum of
    the dense eigenvalues stored beside it; the figure is drawn."""
    import csv

    from typer.testing import CliRunner

    from multigrade import runs
    from multigrade.cli import app

    out = tmp_path / "sp"
    res = CliRunner().invoke(app, ["spectrum", "synthetic", "--steps", "40", "--interval", "20",
                                   "--width", "6", "--grades", "2", "--density",
                                   "--density-probes", "20", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "SLQ" in res.output and (out / "density.png").stat().st_size > 0
    dens, eig = runs.read_npz(out / "density.npz"), runs.read_npz(out / "eigenvalues.npz")
    with (out / "spectrum.csv").open() as f:
        rows = list(csv.DictReader(f))
    seen = {"mgdl": 0, "sgdl": 0}
    for row in rows:
        m = row["method"]
        i, seen[m] = seen[m], seen[m] + 1
        np.testing.assert_allclose(dens[f"{m}/{i}/weights"].sum(axis=1), 1.0, rtol=1e-9)
        exact = eig[f"{m}/{i}"].sum()
        np.testing.assert_allclose(float(row["trace_dense"]), exact, rtol=1e-9)
        assert abs(float(row["trace"]) - exact) < 4 * float(row["trace_se"]) + 1e-9
    assert seen == {"mgdl": 6, "sgdl": 3}
