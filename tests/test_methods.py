"""Per-method settings in one comparison ([methods.mgdl], [methods.sgdl]) and the
restoration commands' defaults (the authors' values, SPEC §3)."""

import numpy as np
import pytest
from typer.testing import CliRunner

from multigrade import runs
from multigrade.cli import app
from multigrade.experiments.config import RunConfig
from multigrade.experiments.configfile import load_config
from multigrade.experiments.runner import method_problem, problem_for

cli = CliRunner()
SMALL = ["--image", "camera", "--size", "16", "--epochs", "20", "--grades", "2",
         "--layers-per-grade", "1", "--width", "8", "--quiet"]


@pytest.mark.integration
def test_a_comparisons_method_trains_as_a_fit_with_its_own_values(tmp_path):
    res = cli.invoke(app, ["compare", "denoise", *SMALL, "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert "mgdl: lr 0.005, β 1, λ 0.01 (the authors'" in res.output
    assert "sgdl: lr 0.005, β 0.1, λ 0.0001 (the authors'" in res.output
    for method, (lr, beta, lam) in {"mgdl": (5e-3, 1.0, 1e-2),
                                    "sgdl": (5e-3, 0.1, 1e-4)}.items():
        sub = load_config(tmp_path / "cmp" / method)
        assert (sub.train.lr, sub.problem.beta, sub.problem.lam) == (lr, beta, lam)
        problem = runs.read_json(tmp_path / "cmp" / method / "metrics.json")["problem"]
        assert (problem["beta"], problem["lam"]) == (beta, lam)
        # the same method fitted alone with those values, given explicitly
        alone = tmp_path / f"fit-{method}"
        res = cli.invoke(app, ["fit", "denoise", *SMALL, "--method", method, "--lr", str(lr),
                               "--beta", str(beta), "--lam", str(lam), "--out", str(alone)])
        assert res.exit_code == 0, res.output
        a = runs.read_npz(tmp_path / "cmp" / method / "params.npz")
        b = runs.read_npz(alone / "params.npz")
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{method} {k}")
    from multigrade.report_html import write_report

    html = write_report([tmp_path / "cmp"], tmp_path / "report.html").read_text()
    for row in ("<td>mgdl</td><td>0.005</td><td>1</td><td>0.01</td>",
                "<td>sgdl</td><td>0.005</td><td>0.1</td><td>0.0001</td>"):
        assert row + "<td>epochs 20</td><td>the authors" in html


def test_restoration_defaults_leave_what_the_user_sets_to_every_method(tmp_path):
    res = cli.invoke(app, ["fit", "deblur", *SMALL[:2], "--size", "24", *SMALL[4:],
                           "--method", "sgdl", "--beta", "0.5", "--out", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    cfg = load_config(tmp_path / "f")  # a fit's config is what it trained with
    assert (cfg.train.lr, cfg.problem.beta, cfg.problem.lam) == (5e-3, 0.5, 0.1)
    res = cli.invoke(app, ["fit", "denoise", *SMALL, "--optimizer", "gd", "--lr", "0.1",
                           "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    cfg = load_config(tmp_path / "g")
    assert (cfg.train.lr, cfg.problem.beta, cfg.problem.lam) == (0.1, 1.0, 1e-2)
    res = cli.invoke(app, ["fit", "regression", *SMALL, "--out", str(tmp_path / "r")])
    assert res.exit_code == 0 and "methods" not in runs.read_toml(tmp_path / "r" /
                                                                   "config.toml")


def test_method_problem_changes_only_the_weights():
    cfg = RunConfig().replace(problem={"task": "denoise", "size": 16},
                              methods={"sgdl": {"beta": 0.3, "lam": 0.002}})
    shared = problem_for(cfg)
    own = method_problem(shared, cfg.for_method("sgdl"))
    assert (float(own.beta), float(own.lam)) == (0.3, 0.002)
    assert (float(shared.beta), float(shared.lam)) == (0.1, 0.01)
    np.testing.assert_array_equal(own.observed, shared.observed)
    assert method_problem(shared, cfg.for_method("mgdl")) is shared
