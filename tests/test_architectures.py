"""Grade architectures (random Fourier features, SIREN) and the comparison's baselines."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade import runs
from multigrade.cli import app
from multigrade.experiments import ModelConfig, RunConfig
from multigrade.experiments.networks import baseline_config
from multigrade.model import ffn, fourier_matrix, matched_width, mlp_params, siren
from multigrade.nn import init_siren

runner = CliRunner()


def _uniform_checks(a, bound):
    """Draws of U(−bound, bound): inside it, reaching its ends, variance bound²/3."""
    a = np.asarray(a).ravel()
    assert np.all(np.abs(a) <= bound)
    assert np.abs(a).max() > 0.99 * bound
    # the sample variance of N uniform draws has relative standard deviation √(0.8/N)
    np.testing.assert_allclose(a.var(), bound**2 / 3, rtol=4 * np.sqrt(0.8 / a.size))
    assert abs(a.mean()) < 4 * bound / np.sqrt(3 * a.size)


def test_siren_initialisation_follows_the_paper(key):
    """Sitzmann et al. 2020, Sec. 3.2 and their code: first layer U(−1/n, 1/n), later
    layers and the head U(−√(6/n)/ω₀, √(6/n)/ω₀), biases U(−1/√n, 1/√n)."""
    omega0, n0, n1 = 30.0, 64, 512
    layers = init_siren(key, [n0, n1, n1, 2000], omega0=omega0)
    _uniform_checks(layers[0].W, 1.0 / n0)
    for layer in layers[1:]:
        _uniform_checks(layer.W, np.sqrt(6.0 / n1) / omega0)
    for layer, n in zip(layers, (n0, n1, n1)):
        _uniform_checks(layer.b, 1.0 / np.sqrt(n))
    # a SIREN grade after the first is not on coordinates: every layer takes the later law
    later = init_siren(key, [n1, n1, 1], omega0=omega0, first=False)
    _uniform_checks(later[0].W, np.sqrt(6.0 / n1) / omega0)


def test_siren_activations_keep_the_papers_distribution(key):
    """The point of SIREN's initialisation (their Lemma 1 / Theorem 1): ω₀·xW of a hidden
    layer has variance ω₀²·n·½·2/(nω₀²) = 1 whatever the depth (sin of a standard normal
    has variance ½), so the activations keep their distribution. The code's PyTorch
    biases add ω₀²/(3n): std √(1 + ω₀²/(3n)) ≈ 1.47 at n = 256. A wrong bound (without
    the ω₀ division) gives std ≈ 30."""
    model = siren([256] * 5)
    params = model.init_params(key, 2)[0]
    x = jax.random.uniform(jax.random.key(1), (4096, 2))
    h = 2.0 * x - 1.0
    for i, layer in enumerate(params.hidden):
        pre = model.omega0 * (h @ layer.W + layer.b[None, :])
        if i > 0:
            expected = np.sqrt(1.0 + model.omega0**2 / (3 * 256))
            np.testing.assert_allclose(float(jnp.std(pre)), expected, rtol=0.08)
        h = jnp.sin(pre)


def test_fourier_features_statistics_and_forward(key):
    B = fourier_matrix(3, 2, 20000, 10.0)
    np.testing.assert_allclose(B.std(), 10.0, rtol=0.01)
    assert abs(B.mean()) < 0.1
    np.testing.assert_allclose(10 * fourier_matrix(3, 2, 16, 1.0), fourier_matrix(3, 2, 16, 10.0))
    # forward against an independent NumPy implementation
    model = ffn([16, 8], sigma=3.0, features=12, seed=5)
    params = model.init_params(key, 2)
    x = np.random.default_rng(0).uniform(size=(50, 2))
    B = 3.0 * np.random.default_rng(5).standard_normal((2, 12))
    h = np.concatenate([np.cos(2 * np.pi * x @ B), np.sin(2 * np.pi * x @ B)], axis=1)
    for W, b in params[0].hidden:
        h = np.maximum(h @ np.asarray(W) + np.asarray(b), 0)
    expected = h @ np.asarray(params[0].head.W) + np.asarray(params[0].head.b)
    np.testing.assert_allclose(model.predict(params, jnp.asarray(x)), expected, rtol=1e-10)


def test_siren_forward_against_numpy(key):
    model = siren([16, 16], omega0=30.0)
    params = model.init_params(key, 2)
    x = np.random.default_rng(0).uniform(size=(40, 2))
    h = 2 * x - 1  # SIREN's coordinates lie in [−1, 1]
    for W, b in params[0].hidden:
        h = np.sin(30.0 * (h @ np.asarray(W) + np.asarray(b)))
    expected = h @ np.asarray(params[0].head.W) + np.asarray(params[0].head.b)
    np.testing.assert_allclose(model.predict(params, jnp.asarray(x)), expected, rtol=1e-10)


def test_mixed_grades_train_grade_by_grade(key):
    """A Fourier-feature first grade, then a ReLU and a SIREN grade: each grade reads the
    previous grade's features, and the stair prediction is the sum of the grades'."""
    problem = mg.image_regression(mg.load_image("camera", size=16))
    model = mg.mgdl([[12]] * 3, archs=("fourier", "relu", "siren"), fourier_features=8,
                    fourier_sigma=2.0)
    r = mg.fit(model, problem, optimizer=optax.adam(1e-3), epochs=20, key=key)
    kinds = [type(p).__name__ for p in r.params]
    assert kinds == ["FourierParams", "GradeParams", "SirenParams"]
    assert r.params[0].hidden[0].W.shape == (16, 12)  # 2m encoding features in
    x = problem.x["test"]
    phi1 = model.grade_features(r.params[0], x)
    phi2 = model.grade_features(r.params[1], phi1)
    total = sum(model.grade_output(p, f) for p, f in zip(r.params, (x, phi1, phi2)))
    np.testing.assert_allclose(r.predict(x), total, rtol=1e-10, atol=1e-12)
    assert model.describe()["archs"] == ["fourier", "relu", "siren"]


def test_matched_parameter_counts():
    """The baselines' widths bring them within 5 % of MGDL's parameter count, and
    `mlp_params` counts what the models actually hold."""
    mgdl_count = mg.count_params(ModelConfig().build().init_params(jax.random.key(0), 2))
    assert mgdl_count == 116484  # 4 grades × [128, 128] on 2 inputs: counted by hand
    for name in ("ffn", "siren"):
        cfg = baseline_config(RunConfig(command="compare"), name, mgdl_count, 2, 1)
        count = mg.count_params(cfg.model.build().init_params(jax.random.key(0), 2))
        assert abs(count / mgdl_count - 1) <= 0.05, (name, count)
        first = 2 * cfg.model.fourier_features if name == "ffn" else 2
        assert count == mlp_params(first, cfg.model.width, cfg.model.baseline_layers, 1)
    for target in (300, 5000, 116484, 10**6):
        w = matched_width(target, first=40, layers=3)
        best = min(range(1, 2000), key=lambda v: abs(mlp_params(40, v, 3, 1) - target))
        assert w == best


def test_small_targets_shrink_the_fourier_encoding():
    cfg = baseline_config(RunConfig(command="compare"), "ffn", 400, 2, 1)
    count = mlp_params(2 * cfg.model.fourier_features, cfg.model.width, 4, 1)
    assert cfg.model.fourier_features < 256 and abs(count / 400 - 1) <= 0.05




@pytest.mark.parametrize("args, message", [
    (["--archs", "relu,wavelet"], "unknown architecture"),
    (["--archs", "relu,relu,relu"], "3 architectures for 2 grades"),
    (["--baselines", "ffn,resnet"], "baselines must be distinct names"),
    (["--fourier-sigmas", "1,x"], "--fourier-sigmas must be a number"),
])
def test_bad_architecture_options_get_one_line(tmp_path, args, message):
    res = runner.invoke(app, ["compare", "regression", "--image", "camera", "--size", "8",
                              "--grades", "2", "--epochs", "10", "--quiet", *args,
                              "--out", str(tmp_path / "x")])
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.integration
def test_archs_and_baseline_methods_from_the_cli(tmp_path):
    """`--archs` reaches the model and the config file, which runs again to the same
    numbers; `--method siren` fits one SIREN."""
    out = tmp_path / "mixed"
    base = ["fit", "regression", "--image", "camera", "--size", "16", "--epochs", "20",
            "--grades", "2", "--layers-per-grade", "1", "--width", "8", "--quiet"]
    res = runner.invoke(app, [*base, "--archs", "fourier,relu", "--fourier-sigma", "2",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    desc = runs.read_json(out / "metrics.json")["model_description"]
    assert desc["archs"] == ["fourier", "relu"] and desc["fourier_sigma"] == 2.0
    res = runner.invoke(app, ["run", str(out / "config.toml"), "--out", str(tmp_path / "re"),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    a, b = (runs.read_json(d / "metrics.json")["metrics"] for d in (out, tmp_path / "re"))
    assert a == b
    res = runner.invoke(app, [*base, "--method", "siren", "--out", str(tmp_path / "siren")])
    assert res.exit_code == 0, res.output
    desc = runs.read_json(tmp_path / "siren" / "metrics.json")["model_description"]
    assert desc["archs"] == ["siren"] and desc["grades"] == [[8, 8]]
