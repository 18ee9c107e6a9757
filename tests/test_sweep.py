"""Sweeps on a real Dask LocalCluster (two worker processes)."""

import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest

from multigrade import runs
from multigrade.cli.studies import race_lines
from multigrade.experiments.sweep import aggregate, load_sweep, run_id, run_sweep

pytestmark = pytest.mark.xdist_group("sweep")  # its tests on one worker: one LocalCluster

BASE = """
[base]
x64 = true
[base.problem]
size = 16
[base.model]
grades = 2
layers_per_grade = 1
width = 8
[base.train]
optimizer = "gd"
epochs = {epochs}
checkpoint_every = {every}
"""


def _spec(tmp_path, axes: str, epochs=50, every=1000, name="s.toml"):
    path = tmp_path / name
    path.write_text(BASE.format(epochs=epochs, every=every) + "[axes]\n" + axes)
    return load_sweep(path)


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    from multigrade.experiments.cluster import local_cluster

    with local_cluster(2) as cluster, Client(cluster) as c:
        yield c


def test_sweep_files_are_validated(tmp_path):
    spec = _spec(tmp_path, '"train.seed" = [0, 1]\n"train.lr" = [0.1, 0.2, 0.3]\n')
    configs = spec.expand()
    assert len(configs) == 6 and len({run_id(c) for c in configs}) == 6
    assert [(c.train.seed, c.train.lr) for c in configs[:3]] == [(0, 0.1), (0, 0.2), (0, 0.3)]
    assert spec.groups == ("train.lr",)  # every axis but the seed
    for axes, message in [
        ('"train.lrr" = [0.1]\n', "unknown axis 'train.lrr'"),
        ('"train.lr" = []\n', "needs a non-empty list"),
        ('"train.lr" = [0.1, -1.0]\n', "value -1.0: train: learning rate must be positive"),
        ('"model.method" = ["mgdl", "xgdl"]\n', "unknown method 'xgdl'"),
        ('"train.lr" = [0.1]\n[sweep]\ngroup_by = ["train.seed"]\n', "not an axis"),
    ]:
        with pytest.raises(ValueError, match="s.toml: ") as info:
            _spec(tmp_path, axes)
        assert message in str(info.value)


def test_aggregation_against_a_hand_computation():
    rows = [
        {"run": "a", "lr": 0.1, "seed": 0, "status": "completed", "test_psnr": 20.0},
        {"run": "b", "lr": 0.1, "seed": 1, "status": "completed", "test_psnr": 22.0},
        {"run": "c", "lr": 0.1, "seed": 2, "status": "completed", "test_psnr": 27.0},
        {"run": "d", "lr": 9.0, "seed": 0, "status": "diverged", "test_psnr": None},
        {"run": "e", "lr": 9.0, "seed": 1, "status": "completed", "test_psnr": 5.0},
    ]
    g = {e["lr"]: e for e in aggregate(rows, ["lr"], "test_psnr")}
    # mean (20 + 22 + 27) / 3 = 23; sample variance ((−3)² + (−1)² + 4²) / 2 = 13
    assert g[0.1]["test_psnr_mean"] == 23.0
    assert g[0.1]["test_psnr_std"] == pytest.approx(np.sqrt(13.0), rel=1e-15)
    assert g[0.1]["best_run"] == "c" and g[0.1]["runs"] == 3 and g[0.1]["completed"] == 3
    assert g[9.0]["diverged"] == 1 and g[9.0]["completed"] == 1
    assert g[9.0]["test_psnr_mean"] == 5.0 and g[9.0]["test_psnr_std"] == 0.0
    low = {e["lr"]: e for e in aggregate(rows, ["lr"], "test_loss")}
    assert "best_run" not in low[0.1]  # no run has that metric


def test_a_row_lists_each_tried_grades_losses_and_names_the_machine(tmp_path):
    """A run's row (what results.csv holds): a grade trained from several starts gives
    every try's training loss and the one kept, as the run's metrics.json has them, a
    grade trained once gives none; and the row names the machine of environment.json."""
    from multigrade.experiments.sweep import run_one

    (cfg,) = _spec(tmp_path, '"train.grade_tries" = [[1, 3]]\n').expand()
    row = run_one(cfg.to_dict(), str(tmp_path / "r"))
    assert row["status"] == "completed", row
    g1, g2 = runs.read_summary(tmp_path / "r")["grades"]
    assert len(g2["tries"]) == 3 and "grade1_tries" not in row and g1["tries"] is None
    assert [float(t) for t in row["grade2_tries"].split()] == pytest.approx(g2["tries"],
                                                                             rel=1e-5)
    assert row["grade2_kept_try"] == g2["kept_try"] == 1 + int(np.argmin(g2["tries"]))
    # the race's leader: the least loss at the record a quarter of the way through
    quarter = [c["train_loss"][round(len(c["epoch"]) / 4) - 1] for c in g2["tries_history"]]
    assert row["grade2_lead_at_quarter"] == 1 + int(np.argmin(quarter))
    # what `mgdl sweep` says of the race over its runs (a run whose leader differs counts out)
    other = {**row, "grade2_lead_at_quarter": row["grade2_kept_try"] % 3 + 1}
    same = int(row["grade2_lead_at_quarter"] == row["grade2_kept_try"])
    assert race_lines([row, other, {**row, "status": "failed"}]) == [
        f"grade 2's tries: the try leading at a quarter of the epochs is the try kept in "
        f"{same} of 2 runs"]
    assert race_lines([{"status": "completed", "test_psnr": 1.0}]) == []
    env = runs.read_json(tmp_path / "r" / runs.ENVIRONMENT)
    assert (row["cpu"], row["cores"]) == (env["cpu"], env["cores"])
    assert row["cores"] == len(runs.cores()) >= 1


@pytest.mark.integration
def test_a_sweep_runs_skips_and_reruns_on_a_local_cluster(tmp_path, client):
    spec = _spec(tmp_path, '"train.seed" = [0, 1]\n"train.lr" = [0.1, 1e4]\n')
    out = run_sweep(spec, tmp_path / "sw", client=client)
    assert out.ran == 4 and len(out.rows) == 4
    assert sorted((r["train.seed"], r["train.lr"]) for r in out.rows) == \
        [(0, 0.1), (0, 1e4), (1, 0.1), (1, 1e4)]
    status = {(r["train.seed"], r["train.lr"]): r["status"] for r in out.rows}
    assert status[(0, 1e4)] == status[(1, 1e4)] == "diverged"  # recorded, the sweep went on
    assert status[(0, 0.1)] == status[(1, 0.1)] == "completed"
    for r in out.rows:  # each row is its run directory's result
        metrics = runs.read_json(tmp_path / "sw" / "runs" / r["run"] / "metrics.json")
        assert r.get("test_psnr") == metrics["metrics"]["test_psnr"]
        if r["status"] == "completed":  # and each grade's, as its run directory has it
            assert [(r[f"grade{g['grade']}_test_psnr"], r[f"grade{g['grade']}_seconds"])
                    for g in metrics["grades"]] == \
                [(g["metrics"]["test_psnr"], g["seconds"]) for g in metrics["grades"]]
            assert len(metrics["grades"]) == 2
            assert r["grade2_test_psnr"] == r["test_psnr"]  # the last grade is the run's
        cfg = runs.read_toml(tmp_path / "sw" / "runs" / r["run"] / "config.toml")
        assert (cfg["train"]["seed"], cfg["train"]["lr"]) == (r["train.seed"], r["train.lr"])
    table = (tmp_path / "sw" / "results.csv").read_text().splitlines()
    assert len(table) == 5 and table[0].startswith("run,train.seed,train.lr,status")
    assert (tmp_path / "sw" / "sweep.png").is_file()
    group = {g["train.lr"]: g for g in out.groups}
    psnr = [r["test_psnr"] for r in out.rows if r["train.lr"] == 0.1]
    assert group[0.1]["test_psnr_mean"] == pytest.approx(np.mean(psnr), rel=1e-14)
    first = [r["grade1_test_psnr"] for r in out.rows if r["train.lr"] == 0.1]
    assert group[0.1]["grade1_test_psnr_mean"] == pytest.approx(np.mean(first), rel=1e-14)
    assert group[0.1]["grade1_test_psnr_std"] == pytest.approx(np.std(first, ddof=1), rel=1e-12)
    header = table[0].split(",")
    assert {"grade1_test_psnr", "grade2_test_psnr", "grade1_seconds"} <= set(header)

    again = run_sweep(spec, tmp_path / "sw", client=client)
    assert again.ran == 0 and again.rows == out.rows  # nothing runs twice
    gone = out.rows[2]["run"]
    shutil.rmtree(tmp_path / "sw" / "runs" / gone)
    third = run_sweep(spec, tmp_path / "sw", client=client)
    assert third.ran == 1  # only the deleted run, with the same result
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")}
                          for r in rows]
    assert strip(third.rows) == strip(out.rows)


def _training_pid(runs_dir, after_grade: int):
    """The pid of a worker whose run has finished `after_grade` grades, or None."""
    for d in runs_dir.glob("*"):
        try:
            status = runs.read_status(d)
        except (runs.RunDirError, FileNotFoundError):
            continue
        if status["state"] == "running" and len(status["finished_grades"]) >= after_grade \
                and status["pid"] != os.getpid():
            return status["pid"], d.name
    return None


@pytest.mark.integration
def test_killing_a_worker_loses_no_run(tmp_path, client):
    axes = '"train.seed" = [0, 1, 2]\n'
    spec = _spec(tmp_path, axes, epochs=3000, every=500, name="long.toml")
    clean = run_sweep(spec, tmp_path / "clean", client=client)
    assert [r["status"] for r in clean.rows] == ["completed"] * 3

    box = {}
    sweep = threading.Thread(target=lambda: box.update(
        out=run_sweep(spec, tmp_path / "killed", client=client)))
    sweep.start()
    found, t0 = None, time.monotonic()
    while found is None and sweep.is_alive() and time.monotonic() - t0 < 240:
        found = _training_pid(tmp_path / "killed" / "runs", after_grade=1)
        time.sleep(0.005)
    assert found is not None, "no run was caught training"
    os.kill(found[0], signal.SIGKILL)  # the worker process dies mid-run
    sweep.join(timeout=300)
    out = box["out"]
    assert [r["status"] for r in out.rows] == ["completed"] * 3
    assert len({r["run"] for r in out.rows}) == 3  # no duplicate rows
    for a, b in zip(clean.rows, out.rows, strict=True):
        a, b = ({k: v for k, v in r.items() if not k.endswith("seconds")} for r in (a, b))
        assert a == b  # the same results as the clean sweep (float64, exact); not the time
    status = runs.read_status(tmp_path / "killed" / "runs" / found[1])
    assert status["state"] == "completed" and status["pid"] != found[0]


@pytest.mark.integration
def test_sweep_command(tmp_path):
    from typer.testing import CliRunner

    from multigrade.cli import app

    (tmp_path / "s.toml").write_text(BASE.format(epochs=20, every=1000)
                                     + '[axes]\n"model.method" = ["mgdl", "sgdl"]\n')
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"),
                              "--workers", "1", "--quiet", "--group-by", "model.method"],
                        env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "2 runs (2 trained now)" in res.output and "sgdl" in res.output
    # MGDL's row has its grades' mean PSNR, as groups.csv has them; SGDL's has none
    groups = {g["model.method"]: g for g in runs.read_rows(tmp_path / "o" / "groups.csv")}
    per_grade = " / ".join(f"{groups['mgdl'][f'grade{k}_test_psnr_mean']:.4g}" for k in (1, 2))
    rows = {line.split()[1]: line for line in res.output.splitlines()
            if line.split()[1:2] in (["mgdl"], ["sgdl"])}
    assert per_grade in rows["mgdl"] and " / " not in rows["sgdl"]
    assert groups["sgdl"].get("grade1_test_psnr_mean") in (None, "")
    assert runs.read_status(tmp_path / "o")["state"] == "completed"
    for args, message in [
        (["sweep", str(tmp_path / "none.toml"), "--out", str(tmp_path / "x")], "no sweep file"),
        (["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "x"), "--group-by",
          "train.lr"], "not an axis of the sweep"),
        (["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "s.toml")],
         "is not a directory"),
    ]:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and message in res.stderr, res.output
        assert len(res.stderr.strip().splitlines()) == 1


def test_run_ids_ignore_fields_left_at_their_defaults():
    """A run's name depends on what its config sets, not on the schema's other fields:
    a field added later with its default keeps every existing name."""
    from multigrade.experiments import RunConfig

    cfg = RunConfig().replace(train={"lr": 0.01}, problem={"size": 16})
    same = RunConfig().replace(problem={"size": 16}).replace(train={"lr": 0.01})
    assert run_id(cfg) == run_id(same)
    assert run_id(cfg) != run_id(cfg.replace(train={"lr": 0.02}))
    # setting a field to its default value is the same run as leaving it out
    assert run_id(cfg.replace(model={"baselines": []})) == run_id(cfg)
    assert run_id(cfg.replace(model={"baselines": ["ffn"]}, command="compare")) != run_id(
        cfg.replace(command="compare"))


@pytest.mark.integration
def test_workers_keep_their_programs_in_the_compilation_cache(tmp_path, monkeypatch):
    from distributed import Client

    from multigrade import compile_cache
    from multigrade.experiments.cluster import local_cluster

    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "cache"))  # the workers inherit it
    spec = _spec(tmp_path, '"train.seed" = [0]\n', epochs=20)
    with local_cluster(1) as cluster, Client(cluster) as c:
        out = run_sweep(spec, tmp_path / "sw", client=c)
    assert [r["status"] for r in out.rows] == ["completed"]
    kept = {p.name.split("-")[0] for p in (tmp_path / "cache").glob("xla-*/*-cache")}
    assert {"jit__chunk", "jit__freeze"} <= kept  # this process compiled nothing of them
