"""Learning rates from the spectrum (`StepSize`: --lr auto, --lower-lr, --eig-stop) and
adaptive grades (--grades auto)."""

import json

import jax
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

import multigrade as mg
from multigrade import runs
from multigrade.analysis import StepSize, hessian
from multigrade.analysis.stability import make_stability_probe
from multigrade.cli import app
from multigrade.train import FitInterrupted, grade_gain

runner = CliRunner()


def _problem():
    x = np.linspace(0, 1, 64)
    xv = np.linspace(0.005, 0.995, 40)
    f = lambda t: np.sin(6 * t) + 0.5 * np.cos(17 * t)  # noqa: E731
    return mg.Regression.from_arrays({"train": (x, f(x)), "val": (xv, f(xv))})


def _gd(lr=0.01):
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr)


def _dense_lambda_max(loss, params) -> float:
    return float(np.linalg.eigvalsh(np.asarray(hessian(loss, params), np.float64))[-1])


def test_lr_auto_is_c_times_2_over_dense_lambda_max(key):
    """η of each grade = c·2/λ_max, λ_max checked against a dense Hessian of that grade's
    loss at its start (a probe at epoch 0 sees exactly the loss the rule saw)."""
    seen = []

    def probe(grade, epoch, params, loss):
        seen.append(_dense_lambda_max(loss, params))
        return {}

    model = mg.mgdl([[6]] * 3, init="he")
    r = mg.fit(model, _problem(), optimizer=_gd(), epochs=30, key=key, record_every=10,
               probe=mg.Probe(probe, 1000), step_size=StepSize(c=0.4))
    starts = [seen[i] for i, p in enumerate(r.probes) if p["epoch"] == 0]
    assert len(starts) == 3
    for g, lam in zip(r.grades, starts):
        np.testing.assert_allclose(g.lambda_max, lam, rtol=1e-6)
        np.testing.assert_allclose(g.lr, 0.4 * 2 / lam, rtol=1e-6)
    rows = r.history
    for g in r.grades:
        np.testing.assert_allclose(rows["lr"][rows["grade"] == g.grade], g.lr)


def test_lr_auto_trains_like_a_fixed_rate_of_that_value(key):
    """Setting η in the optimiser's state is all the rule does: grade 1 then equals plain
    GD at that rate."""
    model = mg.mgdl([[6]], init="he")
    auto = mg.fit(model, _problem(), optimizer=_gd(), epochs=40, key=key,
                  step_size=StepSize(c=0.5))
    fixed = mg.fit(model, _problem(), optimizer=optax.sgd(auto.grades[0].lr), epochs=40,
                   key=key)
    np.testing.assert_allclose(auto.history["train_loss"], fixed.history["train_loss"],
                               rtol=1e-10)


def test_eig_stop_ends_the_grade_where_1_minus_eta_lambda_passes(key):
    """A rate past 2/λ_max: the grade stops at the first estimate where 1 − ηλ_max <
    −0.95; λ_max there equals the dense Hessian's at the kept parameters, and every
    earlier estimate was above the threshold."""
    problem, model = _problem(), mg.mgdl([[8]] * 2, init="he")
    loss = lambda p: 0.5 * ((model.grade_output(p, problem.x["train"])  # noqa: E731
                             - problem.y["train"]) ** 2).mean()
    lam0 = _dense_lambda_max(loss, model.init_params(key, 1)[0])
    # (at 1.9/λ₀ … 2.4/λ₀ this grade settles below the edge: ηλ_max ≈ 1.4 … 1.7)
    r = mg.fit(model, problem, optimizer=_gd(3.0 / lam0), epochs=400, key=key,
               record_every=10, step_size=StepSize(c=None, every=20, eig_stop=-0.95))
    g1 = r.grades[0]
    assert g1.status == "eig_stop" and g1.epochs < 400
    h = r.history
    mine = (h["grade"] == 1) & np.isfinite(h["sharpness"])
    jac_min = 1 - h["lr"][mine] * h["sharpness"][mine]
    assert jac_min[-1] < -0.95 and np.all(jac_min[:-1] >= -0.95)
    assert h["epoch"][mine][-1] == g1.epochs
    np.testing.assert_allclose(h["sharpness"][mine][-1], _dense_lambda_max(loss, r.params[0]),
                               rtol=1e-4)
    assert len(r.grades) == 2  # the next grade trains


def test_lower_lr_follows_the_sharpness(key):
    """With `lower`, the rate after an estimate λ > 2/η is c·2/λ; otherwise it stays."""
    r = mg.fit(mg.mgdl([[16]], init="he"), _problem(), optimizer=_gd(), epochs=600,
               key=key, record_every=10, step_size=StepSize(c=0.9, every=50, lower=True))
    h = r.history
    lr, sharp = h["lr"], h["sharpness"]
    changed = 0
    for i in np.flatnonzero(np.isfinite(sharp))[:-1]:
        want = 0.9 * 2 / sharp[i] if sharp[i] * lr[i] > 2 else lr[i]
        np.testing.assert_allclose(lr[i + 1], want, rtol=1e-12)
        changed += want != lr[i]
    assert np.all(np.diff(lr) <= 0)


def test_step_size_resumes_exactly(key):
    """Interrupted mid-grade (after a rate change) and continued: the same history."""
    class StopAt(mg.Callback):
        def __init__(self):
            self.n = 0

        def on_records(self, grade, rows):
            self.n += 1

        def stop_requested(self):
            return self.n == 7

    args = dict(optimizer=_gd(), epochs=200, key=key, record_every=10, checkpoint_every=20,
                step_size=StepSize(c=0.9, every=30, lower=True, eig_stop=-0.99))
    model = mg.mgdl([[16]] * 2, init="he")
    whole = mg.fit(model, _problem(), **args)
    with pytest.raises(FitInterrupted) as stop:
        mg.fit(model, _problem(), callbacks=[StopAt()], **args)
    again = mg.fit(model, _problem(), start=stop.value.checkpoint, **args)
    for name in ("train_loss", "lr", "sharpness"):
        np.testing.assert_array_equal(again.history[name], whole.history[name])
    assert [g.lr for g in again.grades] == [g.lr for g in whole.grades]


def test_grade_gain_rule_on_a_hand_made_sequence():
    """Validation losses 1, 0.5, 0.45, 0.44: gains 3.01, 0.46, 0.10 dB; with a least gain
    of 0.2 dB grades 1-3 are kept and grade 4 is dropped."""
    losses = [1.0, 0.5, 0.45, 0.44]
    gains = [grade_gain(a, b) for a, b in zip(losses, losses[1:])]
    np.testing.assert_allclose(gains, [10 * np.log10(2), 10 * np.log10(1 / 0.9),
                                       10 * np.log10(0.45 / 0.44)])
    kept = 1 + next((i for i, g in enumerate(gains) if not g >= 0.2), len(gains))
    assert kept == 3
    assert grade_gain(1.0, float("nan")) == -np.inf


def test_adaptive_grades_keep_what_the_rule_says(key):
    """The adaptive fit keeps the grades a fixed fit's validation losses say it should,
    with the same parameters, and drops the next one (its parameters kept aside)."""
    problem, model = _problem(), mg.mgdl([[8]] * 6, init="he")
    args = dict(optimizer=optax.adam(1e-2), epochs=100, key=key)
    fixed = mg.fit(model, problem, **args)
    val = [g.metrics["val_loss"] for g in fixed.grades]
    gains = [grade_gain(a, b) for a, b in zip(val, val[1:])]
    least = float(np.median(gains))  # a bar some grades pass and some do not
    expect = 1 + next(i for i, g in enumerate(gains) if not g >= least)
    auto = mg.fit(model, problem, adaptive=mg.AdaptiveGrades(least), **args)
    assert len(auto.grades) == expect and [g.grade for g in auto.dropped] == [expect + 1]
    for a, b in zip(auto.params, fixed.params):
        jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    jax.tree_util.tree_map(np.testing.assert_array_equal, auto.dropped_params[0],
                           fixed.params[expect])


@pytest.mark.integration
def test_grades_auto_cli_grow_and_resume(tmp_path):
    """`--grades auto` from the CLI: metrics say what was kept and why; `grow --min-gain 0`
    then trains on from the dropped grade and equals a fixed run of that many grades."""
    out = tmp_path / "auto"
    base = ["fit", "regression", "--image", "camera", "--size", "16", "--epochs", "40",
            "--layers-per-grade", "1", "--width", "8", "--quiet"]
    res = runner.invoke(app, [*base, "--grades", "auto", "--max-grades", "5",
                              "--min-gain", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    a = json.loads((out / "metrics.json").read_text())["adaptive"]
    assert a["stopped_by"] == "no gain" and a["kept"] < 5 and (out / "dropped.npz").is_file()
    assert a["gains_db"][a["kept"]] < 3 and all(g >= 3 for g in a["gains_db"][1:a["kept"]])
    assert f"kept {a['kept']} of at most 5" in res.output
    res = runner.invoke(app, ["grow", str(out), "--grades", "2", "--min-gain", "0",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    fixed = tmp_path / "fixed"
    res = runner.invoke(app, [*base, "--grades", str(a["kept"] + 2), "--out", str(fixed)])
    assert res.exit_code == 0, res.output
    h1 = np.genfromtxt(out / "history.csv", delimiter=",", names=True)
    h2 = np.genfromtxt(fixed / "history.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(h1["train_loss"], h2["train_loss"])
    assert not (out / "dropped.npz").exists()  # the grade it dropped is kept now
    res = runner.invoke(app, ["resume", str(out), "--quiet"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("args, message", [
    (["--lr", "auto"], "plain gradient descent"),  # with Adam
    (["--optimizer", "gd", "--lr", "auto:2"], "lr auto factor c must be at most 1"),
    (["--optimizer", "gd", "--lr", "fast"], "--lr (a number or auto[:c]) must be a number"),
    (["--optimizer", "gd", "--lower-lr"], "use it with --lr auto"),
    (["--grades", "many"], "--grades must be an integer or auto"),
    (["--method", "sgdl", "--grades", "auto"], "adaptive grades (--grades auto) add MGDL"),
])
def test_bad_spectrum_and_grade_options_get_one_line(tmp_path, args, message):
    res = runner.invoke(app, ["fit", "regression", "--image", "camera", "--size", "8",
                              "--epochs", "10", "--quiet", *args, "--out", str(tmp_path / "x")])
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output


def test_grades_auto_refused_for_restoration(tmp_path):
    res = runner.invoke(app, ["fit", "denoise", "--image", "camera", "--size", "8",
                              "--grades", "auto", "--quiet", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "--select chooses grades" in res.output


@pytest.mark.integration
def test_lr_auto_cli_records_rates(tmp_path):
    out = tmp_path / "gd"
    res = runner.invoke(app, ["fit", "regression", "--image", "camera", "--size", "16",
                              "--epochs", "40", "--grades", "2", "--layers-per-grade", "1",
                              "--width", "8", "--optimizer", "gd", "--lr", "auto:0.3",
                              "--eig-stop", "--sharpness-every", "20", "--quiet",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    grades = json.loads((out / "metrics.json").read_text())["grades"]
    for g in grades:
        np.testing.assert_allclose(g["lr"] * g["lambda_max"], 0.6, rtol=1e-9)
    cfg = runs.read_toml(out / "config.toml")["train"]
    assert cfg["lr_auto"] == 0.3 and cfg["eig_stop"] == -0.95
    assert "sharpness" in (out / "history.csv").read_text().splitlines()[0]
    # the config file runs again to the same rates
    res = runner.invoke(app, ["run", str(out / "config.toml"), "--out", str(tmp_path / "re"),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "re" / "metrics.json").read_text())["grades"]
    assert [g["lr"] for g in again] == [g["lr"] for g in grades]


def test_stability_probe_density_matches_dense_trace(key):
    """The spectrum probe's SLQ trace agrees with the dense eigenvalues' sum within four
    of its standard errors, and its density has the dense spectrum's first moments."""
    model = mg.mgdl([[10]], init="he")
    problem = _problem()
    params = model.init_params(key, 1)[0]
    loss = lambda p: 0.5 * ((model.grade_output(p, problem.x["train"])  # noqa: E731
                             - problem.y["train"]) ** 2).mean()
    out = make_stability_probe(0.1, key=key, density=30)(1, 0, params, loss)
    eig = out["eigenvalues"]
    assert abs(out["trace"] - eig.sum()) < 4 * out["trace_se"]
    w, th = out["density_weights"], out["density_nodes"]
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-10)
    second = np.mean(np.sum(w * th**2, axis=1))
    assert abs(second - np.mean(eig**2)) < 0.5 * np.mean(eig**2)
