"""Sweeps: grids of runs on Dask distributed that survive dead workers and resume.

A sweep file names a base config (the run store's `RunConfig` schema) and the axes to vary:

```toml
base = "base.toml"           # a config file (relative to this file), or a [base] table

[axes]                       # any config field: every combination is one run
"train.seed" = [0, 1, 2]
"train.lr" = [1e-3, 5e-3]
"problem.sigma" = [10.0, 20.0]
"model.method" = ["mgdl", "sgdl"]

[sweep]                      # optional
best_by = "test_psnr"        # the metric that picks the best run of a group (max for PSNR
                             # and SSIM, min for losses)
group_by = ["problem.sigma", "model.method"]   # default: every axis but train.seed
```

Every run is a run directory `OUT/runs/<id>`, where `<id>` is a hash of its whole config.
Running a sweep again skips completed runs, resumes interrupted ones from their checkpoints
and reruns failed ones. A run whose worker dies is rescheduled by Dask on another worker;
there it resumes from its last checkpoint (or starts again), so the sweep ends with every
run completed once. `OUT` must be on a file system every worker sees.

At the end: `results.csv` (and `results.parquet` when pyarrow is installed) with one row per
run (a multi-grade run's row has each grade's PSNR and seconds too), `groups.csv` with mean
± standard deviation over seeds (per grade too) and the best run of every group,
`summary.json`, and `sweep.png` (the metric against each swept axis).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from multigrade import runs
from multigrade.experiments.cluster import client as cluster_client
from multigrade.experiments.cluster import pin_worker
from multigrade.experiments.config import RunConfig
from multigrade.experiments.configfile import from_dict, load_config

SEED_AXIS = "train.seed"
RESULTS = "results.csv"
MAX_RUNS = 10_000  # a larger grid is refused unless asked for (`max_runs`, --max-runs)

@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A base config and the values of each axis (dotted config fields)."""

    base: RunConfig
    axes: dict[str, tuple]
    best_by: str = "test_psnr"
    group_by: tuple[str, ...] | None = None

    @property
    def size(self) -> int:
        """The number of runs (every combination of the axes), without listing them."""
        return math.prod(len(v) for v in self.axes.values())

    @property
    def groups(self) -> tuple[str, ...]:
        return self.group_by if self.group_by is not None else tuple(
            a for a in self.axes if a != SEED_AXIS)

    def expand(self) -> list[RunConfig]:
        """Every combination of the axes' values, as validated configs."""
        names = list(self.axes)
        out = []
        for values in itertools.product(*(self.axes[n] for n in names)):
            out.append(_with(self.base, dict(zip(names, values))))
        return out


def _with(cfg: RunConfig, fields: Mapping[str, object]) -> RunConfig:
    data = cfg.to_dict()
    for dotted, value in fields.items():
        *path, last = dotted.split(".")
        node = data
        for part in path:
            node = node[part]
        node[last] = value
    return from_dict(data)


def axis_value(cfg: RunConfig, dotted: str):
    """The value of a config field by its dotted name (`train.lr`), as a sweep axis reads it."""
    node = cfg.to_dict()
    for part in dotted.split("."):
        node = node[part]
    return node


def _check_axis(base: RunConfig, dotted: str, values, where: str) -> tuple:
    node = base.to_dict()
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"{where}: unknown axis {dotted!r}")
        node = node[part]
    if parts[-1] not in node or isinstance(node[parts[-1]], dict):
        raise ValueError(f"{where}: unknown axis {dotted!r}")
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: axis {dotted!r} needs a non-empty list of values")
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"{where}: axis {dotted!r} repeats a value")
    for v in values:
        try:
            _with(base, {dotted: v})
        except ValueError as e:
            raise ValueError(f"{where}: axis {dotted!r}, value {v!r}: {e}") from None
    return tuple(values)


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Reads and validates a sweep file; every error names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no sweep file at {path}")
    data = runs.read_toml(path)
    unknown = set(data) - {"base", "axes", "sweep"}
    if unknown:
        raise ValueError(f"{path}: unknown key {sorted(unknown)[0]!r}; a sweep file has "
                         "base, axes and sweep")
    base = data.get("base", {})
    if isinstance(base, str):
        base = load_config(path.parent / base)
    else:
        try:
            base = from_dict(base)
        except ValueError as e:
            raise ValueError(f"{path}: base: {e}") from None
    if base.command != "fit":
        raise ValueError(f"{path}: a sweep runs single models (command = \"fit\"); sweep "
                         "\"model.method\" to compare methods")
    axes = data.get("axes", {})
    if not isinstance(axes, dict) or not axes:
        raise ValueError(f"{path}: [axes] must name at least one field to vary")
    axes = {k: _check_axis(base, k, v, str(path)) for k, v in axes.items()}
    opts = data.get("sweep", {})
    unknown = set(opts) - {"best_by", "group_by"}
    if unknown:
        raise ValueError(f"{path}: unknown key 'sweep.{sorted(unknown)[0]}'; [sweep] has "
                         "best_by, group_by")
    group_by = opts.get("group_by")
    if group_by is not None:
        bad = [g for g in group_by if g not in axes]
        if bad:
            raise ValueError(f"{path}: sweep.group_by names {bad[0]!r}, which is not an axis")
        group_by = tuple(group_by)
    best_by = opts.get("best_by", "test_psnr")
    check_metric(best_by, f"{path}: sweep.best_by")
    return SweepSpec(base, axes, best_by, group_by)


METRIC_SPLITS = ("train", "val", "test")
METRIC_KINDS = ("loss", "psnr", "ssim")


def check_metric(name, where: str = "--best-by") -> str:
    """`name` if it is a metric a run reports (`<split>_<kind>`: train, val or test loss,
    PSNR or SSIM); else a ValueError listing them."""
    known = [f"{s}_{k}" for s in METRIC_SPLITS for k in METRIC_KINDS]
    if name not in known:
        raise ValueError(f"{where} must be one of {', '.join(known)}, got {name!r}")
    return name


def run_id(cfg: RunConfig) -> str:
    """A stable name for a config: the first 12 hex digits of the SHA-256 of the JSON of
    what differs from the defaults, so that a field added to the schema later (with a
    default that keeps the old behaviour) leaves every existing run's name as it was."""
    data = {k: v for k, v in cfg.to_dict().items() if k != "inputs"}  # what it read: no
    text = json.dumps(_differs(data, RunConfig().to_dict()), sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _differs(d: dict, default: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _differs(v, default.get(k, {}))
            if sub:
                out[k] = sub
        elif k not in default or default[k] != v:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------
# One run, on a worker


def run_row(run_dir: Path) -> dict:
    """A finished run's row: its status, epochs, seconds and final metrics; for a run of
    several grades each grade's PSNR / SSIM on every split and its seconds
    (`grade2_test_psnr`, `grade2_seconds`), so a seed table per grade is one `groups.csv`,
    and for a grade trained from several starts each try's training loss, space-separated
    (`grade2_tries`; "nan" a diverged try), the one kept (`grade2_kept_try`, from 1) and
    the one of least loss at a quarter of the grade's epochs (`grade2_lead_at_quarter`:
    what a race of the tries stopped there would keep, `train.tries_at`); and the machine
    it last ran on (`cpu`, `cores`: its environment.json), so its seconds carry their
    machine."""
    from multigrade.train import tries_at

    metrics = runs.read_summary(run_dir)
    row = {"status": "diverged" if metrics["diverged"] else "completed",
           "epochs": metrics["epochs"], "seconds": metrics["seconds"],
           **{k: v for k, v in metrics["metrics"].items()}}
    grades = metrics.get("grades") or []
    for g in grades if len(grades) > 1 else ():
        k = g["grade"]
        row.update({f"grade{k}_{m}": v for m, v in g["metrics"].items()
                    if m.endswith(("_psnr", "_ssim"))})
        row[f"grade{k}_seconds"] = g["seconds"]
        if len(g.get("tries") or ()) > 1:
            row[f"grade{k}_tries"] = " ".join(
                "nan" if t is None else f"{t:.6g}" for t in g["tries"])
            row[f"grade{k}_kept_try"] = g["kept_try"]
            if g.get("tries_history"):
                row[f"grade{k}_lead_at_quarter"] = 1 + int(np.argmin(
                    tries_at(g["tries_history"], 0.25)))
    with contextlib.suppress(OSError, ValueError, runs.RunDirError):
        env = runs.read_json(run_dir / runs.ENVIRONMENT)
        row.update(cpu=env.get("cpu"), cores=env.get("cores"))
    return row


def run_one(cfg_data: dict, run_dir: str) -> dict:
    """Runs (or resumes, or reads) one run of a sweep in `run_dir`; returns its row.

    Idempotent: a completed run is read, not trained again; an interrupted one, or one
    whose worker died, resumes from its checkpoint; a failed one starts again. A run that
    raises is returned as `failed` with its error, so the sweep goes on.
    """
    import jax

    from multigrade.compile_cache import enable_compilation_cache
    from multigrade.experiments import runner

    pin_worker()
    enable_compilation_cache()  # a worker's later runs, and other workers, load its programs
    cfg = from_dict(cfg_data)
    if cfg.x64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    trained = True
    try:
        state = runs.read_status(run_dir)["state"] if runs.is_run_dir(run_dir) else None
        if state == "completed":
            trained = False
        elif state is not None and (run_dir / runs.CHECKPOINT).is_file() \
                and state != "failed":
            runner.resume(run_dir)
        else:  # failed, or died before its first checkpoint: start again
            if state is not None:
                runs.adopt(run_dir)  # a run of an older version: mark it the store's
            runner.execute(cfg, run_dir, overwrite=run_dir.is_dir() and any(run_dir.iterdir()))
        row = run_row(run_dir)
    except Exception as e:  # a run's failure is a result of the sweep, not its end
        row = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    return {**row, "trained": trained, "task_seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------
# The sweep, on the client


@dataclasses.dataclass
class SweepOutcome:
    """A sweep's result: its folder, one row per run, the rows grouped over seeds, the spec,
    how many runs this call trained and the seconds each task took."""
    out: Path
    rows: list[dict]
    groups: list[dict]
    spec: SweepSpec
    ran: int  # runs trained (or resumed) in this call; the others were read from disk
    task_seconds: list[float] = dataclasses.field(default_factory=list)  # inside each task

    def best(self) -> dict | None:
        done = [r for r in self.rows if _finite(r.get(self.spec.best_by))]
        if not done:
            return None
        return (max if maximise(self.spec.best_by) else min)(
            done, key=lambda r: r[self.spec.best_by])


def maximise(metric: str) -> bool:
    """Whether larger is better for `metric` (PSNR, SSIM); otherwise smaller (losses)."""
    return metric.endswith(("psnr", "ssim"))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def aggregate(rows: Sequence[dict], group_by: Sequence[str], metric: str) -> list[dict]:
    """Per group (rows equal in `group_by`): the count, how many completed, the mean and
    standard deviation (ddof 1; 0 for one run) of every metric over the group's completed
    runs, and the id of its best run by `metric`."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(repr(r.get(g)) for g in group_by), []).append(r)
    out = []
    for members in groups.values():
        ok = [r for r in members if r.get("status") == "completed"]
        entry = {g: members[0].get(g) for g in group_by}
        entry.update(runs=len(members), completed=len(ok),
                     diverged=sum(r.get("status") == "diverged" for r in members),
                     failed=sum(r.get("status") == "failed" for r in members))
        names = sorted({k for r in ok for k, v in r.items()
                        if k.endswith(("_loss", "_psnr", "_ssim")) and _finite(v)})
        for name in names:
            values = np.asarray([r[name] for r in ok if _finite(r.get(name))], dtype=float)
            entry[f"{name}_mean"] = float(values.mean())
            entry[f"{name}_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        scored = [r for r in ok if _finite(r.get(metric))]
        if scored:
            best = (max if maximise(metric) else min)(scored, key=lambda r: r[metric])
            entry["best_run"], entry[f"best_{metric}"] = best["run"], best[metric]
        out.append(entry)
    return out


def check_out(out: str | os.PathLike) -> Path:
    """A sweep directory must be new, empty, or a sweep directory mgdl made (to continue
    it); nothing is written here."""
    if str(out).strip() == "":
        raise runs.RunDirError("--out must name a directory, got an empty string")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise runs.RunDirError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and runs.kind_of(out) != "sweep":
        raise runs.RunDirError(f"{out} is not empty and holds no sweep: choose another "
                               "--out")
    return out


def check_size(spec: SweepSpec, max_runs: int | None = MAX_RUNS) -> int:
    """The sweep's number of runs, refused above `max_runs` (None: no limit)."""
    n = spec.size
    if max_runs is not None and n > max_runs:
        shape = " × ".join(str(len(v)) for v in spec.axes.values())
        raise ValueError(f"the sweep has {n:,} runs ({shape}), above the limit of "
                         f"{max_runs:,}: give --max-runs {n} to run it")
    return n


def run_sweep(spec: SweepSpec, out: str | os.PathLike, *, scheduler: str | None = None,
              workers: int | None = None, client=None,
              progress: Callable[[dict], None] | None = None,
              max_runs: int | None = MAX_RUNS) -> SweepOutcome:
    """Runs every run of `spec` not yet completed in `out`, on Dask.

    Args:
        scheduler: address of a running Dask scheduler (e.g. one started by dask-jobqueue);
            None starts a LocalCluster.
        workers: worker processes of the LocalCluster (default: one per core).
        client: an existing `distributed.Client` (then `scheduler`, `workers` are unused).
        progress: called with `{"done", "pending", "failed", "diverged", "total", "best"}`
            after every finished run (`pending`: submitted, queued or running).
        max_runs: a sweep of more runs is refused before anything starts (None: no limit).
    """
    check_size(spec, max_runs)
    out = check_out(out)
    with runs.claim_or_open(out, "sweep", command="sweep", what="a sweep"):
        try:
            return _run_sweep(spec, out, scheduler=scheduler, workers=workers, client=client,
                              progress=progress)
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                runs.write_status(out, "interrupted", command="sweep")
            raise
        except BaseException as e:
            with contextlib.suppress(OSError):
                runs.write_status(out, "failed", command="sweep",
                                  error=f"{type(e).__name__}: {e}")
            raise


def _run_sweep(spec: SweepSpec, out: Path, *, scheduler, workers, client,
               progress) -> SweepOutcome:
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs.write_toml(out / "sweep.toml", {
        "base": spec.base.to_dict(), "axes": {k: list(v) for k, v in spec.axes.items()},
        "sweep": {"best_by": spec.best_by, "group_by": list(spec.groups)}})
    runs.write_status(out, "running", command="sweep")
    configs = spec.expand()
    ids = [run_id(c) for c in configs]
    rows: dict[str, dict] = {}
    todo = []
    for cfg, rid in zip(configs, ids):
        run_dir = out / "runs" / rid
        if runs.is_run_dir(run_dir) and runs.read_status(run_dir)["state"] == "completed":
            rows[rid] = {**run_row(run_dir), "trained": False}
        else:
            todo.append((cfg, rid))
    report = _reporter(spec, rows, len(configs), progress)
    report(0)
    if todo:
        own = None
        if client is None:
            client, own = cluster_client(scheduler, workers)
        try:
            _submit(client, todo, out, rows, report)
        finally:
            if own is not None:
                client.close()
                own.close()
    table = []
    for cfg, rid in zip(configs, ids):
        result = {k: v for k, v in rows[rid].items() if k not in ("trained", "task_seconds")}
        table.append({"run": rid, **{a: axis_value(cfg, a) for a in spec.axes}, **result})
    groups = aggregate(table, spec.groups, spec.best_by)
    _write_results(out, spec, table, groups)
    return SweepOutcome(out, table, groups, spec,
                        ran=sum(r.get("trained", True) for r in rows.values()),
                        task_seconds=[r["task_seconds"] for r in rows.values()
                                      if "task_seconds" in r])


def _submit(client, todo: list, out: Path, rows: dict, report: Callable[[int], None]) -> None:
    """Every run of `todo` as one Dask task keyed by its id; rows filled as they finish."""
    from distributed import as_completed

    futures = {client.submit(run_one, cfg.to_dict(), str(out / "runs" / rid),
                             key=f"mgdl-run-{rid}", pure=False): rid for cfg, rid in todo}
    pending = len(futures)
    for future in as_completed(futures):
        rid = futures[future]
        try:
            rows[rid] = future.result()
        except Exception as e:  # the worker died too often (KilledWorker), ...
            rows[rid] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        pending -= 1
        report(pending)


def _reporter(spec: SweepSpec, rows: dict, total: int,
              progress: Callable[[dict], None] | None) -> Callable[[int], None]:
    def report(pending: int) -> None:
        if progress is None:
            return
        done = list(rows.values())
        scored = [r[spec.best_by] for r in done if _finite(r.get(spec.best_by))]
        best = None if not scored else (max if maximise(spec.best_by) else min)(scored)
        progress({"done": len(done), "pending": pending, "total": total,
                  "failed": sum(r["status"] == "failed" for r in done),
                  "diverged": sum(r["status"] == "diverged" for r in done), "best": best})
    return report


def _write_results(out: Path, spec: SweepSpec, table: list[dict], groups: list[dict]):
    from multigrade import report

    runs.write_rows(out / RESULTS, table)
    runs.write_rows(out / "groups.csv", groups)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = list(dict.fromkeys(n for r in table for n in r))
        pq.write_table(pa.table({n: [r.get(n) for r in table] for n in names}),
                       out / "results.parquet")
    counts = {s: sum(r["status"] == s for r in table)
              for s in ("completed", "diverged", "failed")}
    runs.write_json(out / "summary.json", {
        "runs": len(table), **counts, "best_by": spec.best_by, "group_by": list(spec.groups),
        "groups": groups})
    report.plot_sweep_axes(table, list(spec.axes), spec.best_by, out / "sweep.png")
    runs.write_status(out, "completed", command="sweep", **counts)
