"""The fair protocol on a tiny grid: the kept setting is the argmin of the no-reference
score recomputed from the run files, the oracle's the argmax of the true PSNR, and each
chosen setting is trained again over seeds; the whole is resumable."""

import math

import numpy as np
import pytest

from multigrade import runs
from multigrade.experiments.config import RunConfig
from multigrade.experiments.fair import FAIR_GRID, fair, grid_base, parse_grid

pytestmark = pytest.mark.xdist_group("fair")  # its tests on one worker: one Dask client


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    from multigrade.experiments.cluster import local_cluster

    with local_cluster(2) as cluster, Client(cluster) as c:
        yield c


def _cfg() -> RunConfig:
    return RunConfig(command="compare").replace(
        problem={"task": "denoise", "image": "camera", "size": 16, "sigma": 20.0},
        model={"grades": 2, "layers_per_grade": 1, "width": 8},
        train={"epochs": 40, "record_every": 10})


def _sure_of_kept_state(run_dir) -> float:
    """SURE at the record the run's last grade kept, read from history.csv."""
    h = runs.read_history(run_dir / "history.csv")
    last = runs.read_json(run_dir / "metrics.json")["grades"][-1]
    at = (h["grade"] == last["grade"]) & (h["epoch"] == last["selected_epoch"])
    assert at.sum() == 1
    return float(h["sure"][at][0])


@pytest.mark.slow
def test_fair_protocol_on_a_tiny_grid(tmp_path, client):
    grid = {"train.lr": (1e-3, 2e-2), "problem.beta": (0.1,), "problem.lam": (0.01,)}
    summary = fair(_cfg(), tmp_path / "fair", seeds=2, grid=grid, client=client)
    assert summary["rule"] == "sure"
    for method in ("mgdl", "sgdl"):
        entry = summary["methods"][method]
        assert len(entry["grid"]) == 2
        sweep_runs = tmp_path / "fair" / method / "grid" / "runs"
        scores = {r["run"]: _sure_of_kept_state(sweep_runs / r["run"]) for r in entry["grid"]}
        psnr = {r["run"]: runs.read_json(sweep_runs / r["run"] / "metrics.json")["metrics"][
            "test_psnr"] for r in entry["grid"]}
        chosen = entry["chosen"]
        assert chosen["no-reference"]["run"] == min(scores, key=scores.get)
        assert chosen["oracle"]["run"] == max(psnr, key=psnr.get)
        assert entry["gap_db"] == pytest.approx(
            max(psnr.values()) - psnr[chosen["no-reference"]["run"]])
        for rule in ("no-reference", "oracle"):  # trained again over the seeds
            seeds = chosen[rule]["seeds_test_psnr"]
            assert len(seeds) == 2 and all(math.isfinite(v) for v in seeds)
            # seed 0 is the grid's run trained again: the same numbers
            assert seeds[0] == pytest.approx(psnr[chosen[rule]["run"]], abs=1e-6)
    v = summary["mgdl_vs_sgdl"]["no-reference"]
    mgdl = summary["methods"]["mgdl"]["chosen"]["no-reference"]["seeds_test_psnr"]
    assert v["mgdl"] == pytest.approx(np.mean(mgdl)) and v["n"] == 2
    assert (tmp_path / "fair" / "fair.md").read_text().count("| mgdl |") == 2
    again = fair(_cfg(), tmp_path / "fair", seeds=2, grid=grid, client=client)
    assert again == summary  # everything found done: nothing trained twice


def test_fair_protocol_inputs_are_checked():
    assert parse_grid(["train.lr=1e-3,1e-2"])["train.lr"] == (1e-3, 1e-2)
    assert parse_grid([])["problem.beta"] == FAIR_GRID["problem.beta"]
    for bad in ("train.epochs=3", "train.lr=", "problem.lam=-1", "problem.beta=x"):
        with pytest.raises(ValueError, match="--grid"):
            parse_grid([bad])
    with pytest.raises(ValueError, match="tunes restoration"):
        grid_base(RunConfig(command="compare"), "mgdl")
    base = grid_base(_cfg().replace(methods={"mgdl": {"lr": 5e-3}}), "sgdl")
    assert base.command == "fit" and base.model.method == "sgdl" and base.train.select == \
        "sure" and base.methods.mgdl.lr is None


@pytest.mark.slow
def test_reproduce_protocol_fair_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from multigrade.cli import app

    cli = CliRunner()
    res = cli.invoke(app, ["reproduce", "regression-camera", "--protocol", "fair"])
    assert res.exit_code == 2 and "tunes restoration experiments" in res.output
    res = cli.invoke(app, ["reproduce", "denoise-butterfly-10", "--grid", "train.lr=1e-3"])
    assert res.exit_code == 2 and "belong to --protocol fair" in res.output
    args = ["reproduce", "denoise-butterfly-10", "--protocol", "fair", "--set",
            "problem.image=camera", "--set", "problem.size=16", "--set", "train.epochs=20",
            "--set", "train.record_every=10", "--grid", "train.lr=5e-3", "--grid",
            "problem.beta=0.1", "--grid", "problem.lam=0.01", "--seeds", "1", "--workers",
            "1", "--quiet", "--out", str(tmp_path / "f")]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = runs.read_json(tmp_path / "f" / "denoise-butterfly-10" / "fair.json")
    assert summary["image"] == "camera" and summary["grid"]["train.lr"] == [5e-3]
    assert "| mgdl | no-reference | lr 0.005, beta 0.1, lam 0.01 |" in res.output
    assert runs.owner(tmp_path / "f")["kind"] == "reproduction"
