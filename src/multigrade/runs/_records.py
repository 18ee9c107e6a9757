"""What a run says of itself: status records, its summary's shape, the environment."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from multigrade.runs._io import read_json, write_json
from multigrade.runs._layout import ENVIRONMENT, METRICS, STATES, STATUS, RunDirError


class GradeRecord(TypedDict, total=False):
    """One grade in `RunSummary.grades` (a `train.GradeSummary` as JSON)."""

    grade: int
    epochs: int
    status: str  # stopped, max_epochs, diverged, selected or eig_stop
    seconds: float
    compile_seconds: float
    seconds_per_epoch: float
    scale: float
    metrics: dict[str, float]  # every split, after this grade
    selected_epoch: int | None
    criterion: float | None
    lr: float | None
    lambda_max: float | None
    tries: list[float | None] | None  # grade_tries: each try's training loss (null: diverged)
    kept_try: int | None  # and the one kept (1-based)
    tries_dead: list[float] | None  # and each try's dead units and effective rank
    tries_erank: list[float] | None
    # and each try's records as columns (epoch, train_loss, ...; null: not finite)
    tries_history: list[dict[str, list[float | None]]] | None


class RunSummary(TypedDict, total=False):
    """A run directory's `metrics.json` (`experiments.summaries.result_summary` and what
    `experiments.runner.save_result` adds)."""

    model: str  # mgdl, sgdl, msdl, ffn, siren
    params: int
    metrics: dict[str, float]  # after the last kept grade
    epochs: int
    seconds: float
    diverged: bool
    grades: list[GradeRecord]
    dropped: list[GradeRecord]
    model_description: dict[str, Any]
    problem: dict[str, Any]
    selection: dict[str, Any]  # a no-reference rule's choice beside the oracle's
    adaptive: dict[str, Any]  # adaptive grades: gains and why the fit stopped


def read_summary(run_dir: str | os.PathLike) -> RunSummary:
    """A run directory's `metrics.json`."""
    return read_json(Path(run_dir) / METRICS)


def _status_record(state, command, finished, pending, **extra) -> dict:
    return {"state": state, "finished_grades": list(finished), "pending": pending,
            "command": command, "pid": os.getpid(), "host": socket.gethostname(),
            "updated": _dt.datetime.now().isoformat(timespec="seconds"), **extra}


def write_status(out: str | os.PathLike, state: str, *, command: str | None = None,
                 finished: list[int] = (), pending: dict | None = None, **extra) -> None:
    """The status record. Write it after the files it describes."""
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}")
    write_json(Path(out) / STATUS, _status_record(state, command, finished, pending, **extra))


def read_status(out: str | os.PathLike) -> dict:
    """The status.json of run directory `out` (a RunDirError if it is not one)."""
    path = Path(out) / STATUS
    try:
        status = read_json(path)
    except FileNotFoundError:
        raise RunDirError(f"{out} is not a run directory (no {STATUS})") from None
    if not isinstance(status, dict) or status.get("state") not in STATES:
        raise RunDirError(f"{path} is not a run status (no state of {', '.join(STATES)})")
    return status


def cpu() -> str:
    """The CPU that timings ran on: its name, and on Linux its family / model and widest
    vector extension (`AMD EPYC (family 25, model 1, avx2)`). Two machines of one name can
    differ threefold in a matrix product; minutes compare only between like CPUs."""
    name, fields = platform.processor() or platform.machine(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key in ("model name", "cpu family", "model", "flags") and key not in fields:
                    fields[key] = value
    except OSError:
        return name
    name = fields.get("model name", name)
    flags = set(fields.get("flags", "").split())
    vector = next((v for v in ("avx512f", "avx2", "avx", "sse4_2") if v in flags), None)
    extra = [f"family {fields['cpu family']}, model {fields['model']}"] \
        if "cpu family" in fields and "model" in fields else []
    extra += [vector] if vector else []
    return f"{name} ({', '.join(extra)})" if extra else name


def environment() -> dict:
    """Versions, the git commit and the machine (CPU, cores this process may use),
    recorded next to every result."""
    import jax
    import optax

    from multigrade._version import __version__

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "multigrade": __version__, "jax": jax.__version__, "optax": optax.__version__,
        "numpy": np.__version__, "python": platform.python_version(),
        "backend": jax.default_backend(), "x64": bool(jax.config.jax_enable_x64),
        "git_commit": commit, "time": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu(), "cores": len(cores()) or os.cpu_count(),
    }


def record_environment(d: Path, *, resumed: bool = False) -> dict:
    """Writes `environment()` into `d`'s environment.json and returns it. A run resumed
    from its checkpoint (`resumed`) keeps where its earlier sittings ran, oldest first,
    under ``"earlier"``: a run begun on one machine and finished on another says so, and
    its seconds are not read as one machine's. An earlier record that cannot be read is
    kept as ``{"unreadable": why}``."""
    env = environment()
    path = Path(d) / ENVIRONMENT
    if resumed and path.is_file():
        try:
            old = read_json(path)
        except (RunDirError, OSError, ValueError) as e:
            old = {"unreadable": str(e)}
        if not isinstance(old, dict):
            old = {"unreadable": f"{path} is not a JSON object"}
        earlier = old.pop("earlier", [])
        env["earlier"] = [*(earlier if isinstance(earlier, list) else [earlier]), old]
    write_json(path, env)
    return env


def cores() -> list[int]:
    """The cores this process may run on (its affinity: `taskset -c 0` is `[0]`), in
    order; empty where the platform does not say."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
