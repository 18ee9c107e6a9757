"""The report's figures, checked by their data (the plotted arrays against the run's
files), not their pixels."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from multigrade import runs
from multigrade.cli import app
from multigrade.experiments.verdicts import timeline
from multigrade.report_html import timeline_series

runner = CliRunner()
BASE = ["--image", "camera", "--size", "16", "--epochs", "40", "--layers-per-grade", "1",
        "--width", "8", "--quiet"]


@pytest.fixture(scope="module")
def dropped_run(tmp_path_factory):
    """A fit whose last grade a rule dropped (adaptive grades, least gain 3 dB)."""
    out = tmp_path_factory.mktemp("report") / "auto"
    res = runner.invoke(app, ["fit", "regression", *BASE, "--grades", "auto",
                              "--max-grades", "5", "--min-gain", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["dropped"], "no grade was dropped"
    return out


def test_a_dropped_grade_is_drawn_after_the_kept_ones(dropped_run):
    metrics = json.loads((dropped_run / "metrics.json").read_text())
    h = runs.read_history(dropped_run / "history.csv")
    t = timeline(dropped_run)
    trained = metrics["grades"] + metrics["dropped"]
    start = 0.0
    for g in trained:  # each grade's seconds start where the grades before it ended
        rows = h["grade"] == g["grade"]
        expect = start + h["epoch"][rows] * g["seconds"] / g["epochs"]
        np.testing.assert_allclose(t["seconds"][rows], expect, rtol=1e-12)
        start += g["seconds"]
    assert np.all(np.diff(t["seconds"]) >= 0) and np.all(np.diff(t["flops"]) > 0)
    last = h["grade"] == metrics["dropped"][0]["grade"]
    assert t["seconds"][last].min() >= sum(g["seconds"] for g in metrics["grades"])


def test_the_plotted_curves_are_the_history(dropped_run):
    series, psnr = timeline_series({"mgdl": dropped_run})
    h = runs.read_history(dropped_run / "history.csv")
    t = timeline(dropped_run)
    assert psnr == "val_psnr"
    for row, col, label, x, y, _ in series:
        assert label == "mgdl"
        axis = ("step", "seconds", "flops")[col]
        np.testing.assert_allclose(x, t[axis] / (1e9 if axis == "flops" else 1.0))
        np.testing.assert_array_equal(y, h["train_loss" if row == 0 else psnr])


def test_a_regression_report_speaks_of_no_classical_baselines(tmp_path):
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", "regression", *BASE, "--grades", "2",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    assert "MGDL after each grade" in html and "classical" not in html
    env = runs.read_json(out / runs.ENVIRONMENT)  # the machine its minutes were measured on
    assert f"ran on {env['cpu']}, {env['cores']} core(s), {env['backend']}" in html


def test_a_run_continued_elsewhere_names_every_machine_its_seconds_came_from(tmp_path):
    """A run grown on another sitting keeps the earlier sitting's environment, and its
    report names both machines; `--overwrite` starts a new history."""
    out = tmp_path / "fit"
    res = runner.invoke(app, ["fit", "regression", *BASE, "--grades", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    elsewhere = {**runs.read_json(out / runs.ENVIRONMENT), "cpu": "Elsewhere CPU", "cores": 64}
    runs.write_json(out / runs.ENVIRONMENT, elsewhere)
    res = runner.invoke(app, ["grow", str(out), "--grades", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    env = runs.read_json(out / runs.ENVIRONMENT)
    assert env["earlier"] == [elsewhere] and env["cpu"] == runs.environment()["cpu"]
    res = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    assert f"ran on {env['cpu']}, {env['cores']} core(s)" in html
    assert "resumed from earlier sittings on Elsewhere CPU, 64 core(s)" in html
    res = runner.invoke(app, ["fit", "regression", *BASE, "--grades", "1", "--out", str(out),
                              "--overwrite"])
    assert res.exit_code == 0, res.output
    assert "earlier" not in runs.read_json(out / runs.ENVIRONMENT)


def test_the_tries_a_grade_did_not_keep_are_drawn_thin_from_the_summary(tmp_path):
    """`--grade-tries 1,3`: history.png's panels draw grade 2's two tries not kept, their
    records as metrics.json has them, beside the history's kept curve."""
    import matplotlib.pyplot

    from multigrade.report import curves_figure, history_curves, plot_history

    out = tmp_path / "t"
    res = runner.invoke(app, ["fit", "denoise", *BASE, "--grades", "2", "--grade-tries",
                              "1,3", "--lr", "1e-2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    g2 = runs.read_summary(out)["grades"][1]
    others = [c for t, c in enumerate(g2["tries_history"], start=1) if t != g2["kept_try"]]
    assert len(others) == 2
    fig = curves_figure(*history_curves({"mgdl": out}))
    loss, psnr = fig.axes
    for ax, name in ((loss, "train_loss"), (psnr, "test_psnr")):
        thin = [ln for ln in ax.lines if ln.get_linewidth() == 0.7]
        assert len(thin) == 2
        for ln, c in zip(thin, others, strict=True):
            np.testing.assert_array_equal(ln.get_xdata(), c["step"])
            np.testing.assert_allclose(ln.get_ydata(), c[name], rtol=1e-6)
    matplotlib.pyplot.close(fig)
    plot_history({"mgdl": out}, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
