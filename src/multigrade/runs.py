"""Run directories: config (JSON), history (CSV), metrics (JSON), parameters (NPZ), figures.

Never pickle: parameters are stored as named float arrays (`grade1/hidden0/W`, ...) and
loaded with `allow_pickle=False`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from multigrade.model import GradeParams
from multigrade.nn import Layer


def default_out(kind: str) -> Path:
    """`runs/<kind>-<timestamp>` in the current folder."""
    return Path("runs") / f"{kind}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def environment() -> dict:
    """Versions and the git commit, recorded next to every result."""
    import jax
    import optax

    import multigrade

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "multigrade": multigrade.__version__, "jax": jax.__version__,
        "optax": optax.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "backend": jax.default_backend(),
        "x64": bool(jax.config.jax_enable_x64), "git_commit": commit,
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def write_history(path: Path, history: dict[str, np.ndarray]) -> None:
    names = list(history)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for i in range(len(history[names[0]]) if names else 0):
            w.writerow([_fmt(history[n][i]) for n in names])


def _fmt(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return str(v) if isinstance(v, int) else repr(float(v))


def read_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    names, values = rows[0], np.asarray(rows[1:], dtype=float).reshape(-1, len(rows[0]))
    return {n: values[:, i] for i, n in enumerate(names)}


def _path_name(path) -> str:
    """`(GetAttrKey('hidden'), SequenceKey(0), GetAttrKey('W'))` → `hidden/0/W`."""
    from jax.tree_util import DictKey, GetAttrKey, SequenceKey

    parts = []
    for entry in path:
        if isinstance(entry, GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, DictKey):
            parts.append(str(entry.key))
        else:
            raise TypeError(f"cannot name parameter path entry {entry!r}")
    return "/".join(parts)


def params_to_arrays(params: list, scales: list[float]) -> dict[str, np.ndarray]:
    """Named arrays: `scales`, then `grade<k>/<path>` for every leaf (`grade1/hidden/0/W`,
    `grade1/head/b`; for MSDL `grade1/<sub-network>/<layer>/W`)."""
    import jax

    arrays = {"scales": np.asarray(scales)}
    for k, p in enumerate(params, start=1):
        for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
            arrays[f"grade{k}/{_path_name(path)}"] = np.asarray(leaf)
    return arrays


def save_params(path: str | os.PathLike, params: list, scales: list[float]) -> None:
    np.savez(path, **params_to_arrays(params, scales))


def load_params(path: str | os.PathLike, like: list | None = None) -> tuple[list, list[float]]:
    """Reads `params.npz` back: `(params, scales)`.

    Without `like`, the file must hold a multi-grade model (`GradeParams` per grade). For any
    other model pass `like`, parameters of the same structure (e.g. `[model.init_grade(key,
    0, in_dim)]`): each leaf is read from the name of its path.
    """
    import jax
    import jax.numpy as jnp

    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    scales = [float(s) for s in arrays.pop("scales")]
    if like is not None:
        if len(like) != len(scales):
            raise ValueError(f"{path}: {len(scales)} grades stored, {len(like)} given in like")
        try:
            return [jax.tree_util.tree_map_with_path(
                lambda path, _, k=k: jnp.asarray(arrays[f"grade{k}/{_path_name(path)}"]), p)
                for k, p in enumerate(like, start=1)], scales
        except KeyError as e:
            raise ValueError(f"{path} has no parameter {e.args[0]}: "
                             "it holds another model") from None
    params = []
    for k in range(1, len(scales) + 1):
        if f"grade{k}/head/W" not in arrays:
            raise ValueError(f"{path} does not hold a multi-grade model; pass like=... "
                             "(parameters of the same structure) to read it")
        layer = lambda name: Layer(jnp.asarray(arrays[f"{name}/W"]),
                                   jnp.asarray(arrays[f"{name}/b"]))
        hidden, i = [], 0
        while f"grade{k}/hidden/{i}/W" in arrays:
            hidden.append(layer(f"grade{k}/hidden/{i}"))
            i += 1
        params.append(GradeParams(hidden, layer(f"grade{k}/head")))
    return params, scales


def result_summary(result) -> dict:
    """The JSON-able summary of a `FitResult`: final metrics and one entry per grade."""
    return {
        "model": result.model.name,
        "metrics": result.metrics,
        "epochs": result.epochs,
        "seconds": result.seconds,
        "diverged": result.diverged,
        "grades": [{
            "grade": g.grade, "epochs": g.epochs, "status": g.status, "seconds": g.seconds,
            "compile_seconds": g.compile_seconds, "seconds_per_epoch": g.seconds_per_epoch,
            "scale": g.scale, "metrics": g.metrics} for g in result.grades],
    }


def save_run(out: str | os.PathLike, result, config: dict, *, figures: bool = True) -> Path:
    """Writes a run directory and returns its path.

    Files: `config.json` (the config, model, problem and environment), `history.csv`,
    `metrics.json`, `params.npz`, and `grades.png` / `history.png` when `figures`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {
        **config, "model": result.model.describe(), "problem": result.problem.describe(),
        "environment": environment()})
    write_history(out / "history.csv", result.history)
    write_json(out / "metrics.json", result_summary(result))
    save_params(out / "params.npz", result.params, result.scales)
    if figures:
        from multigrade import report

        report.plot_grades(result, out / "grades.png")
        report.plot_history({result.model.name: result}, out / "history.png")
    return out


def _rows_csv(path: Path, rows: list[dict]) -> None:
    names = list(dict.fromkeys(n for row in rows for n in row))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for row in rows:
            w.writerow([row.get(n, "") for n in names])


def save_sweep(out: str | os.PathLike, sweeps: dict, config: dict) -> Path:
    """A learning-rate sweep: `sweep.json` / `sweep.csv` (one row per method × rate),
    `histories.csv` (every record of every run), `config.json`, `sweep.png`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for s in sweeps.values() for row in s.rows()]
    write_json(out / "config.json", {**config, "environment": environment()})
    write_json(out / "sweep.json", {
        "runs": rows,
        "largest_stable_lr": {m: s.largest_stable_lr for m, s in sweeps.items()},
        "seconds": {m: s.seconds for m, s in sweeps.items()}})
    _rows_csv(out / "sweep.csv", [{k: v for k, v in r.items() if k != "grade_labels"}
                                  for r in rows])
    hist = []
    for m, s in sweeps.items():
        for lr, r in zip(s.learning_rates, s.results):
            n = len(r.history.get("step", []))
            hist += [{"method": m, "lr": float(lr), **{k: r.history[k][i].item()
                                                       for k in r.history}} for i in range(n)]
    _rows_csv(out / "histories.csv", hist)
    from multigrade import report

    report.plot_sweep(sweeps, out / "sweep.png")
    return out


def save_spectrum(out: str | os.PathLike, results: dict, config: dict) -> Path:
    """Spectra along training: `spectrum.csv` (one row per method × probe),
    `eigenvalues.npz` (`<method>/<probe index>`: Hessian eigenvalues, ascending),
    `config.json`, and per method `<method>/history.csv` and `spectrum.png`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {**config, "environment": environment()})
    rows, arrays = [], {}
    for m, r in results.items():
        for i, p in enumerate(r.probes):
            rows.append({"method": m, **{k: v for k, v in p.items() if k != "eigenvalues"}})
            arrays[f"{m}/{i}"] = np.asarray(p["eigenvalues"])
        (out / m).mkdir(exist_ok=True)
        write_history(out / m / "history.csv", r.history)
        write_json(out / m / "metrics.json", result_summary(r))
    _rows_csv(out / "spectrum.csv", rows)
    np.savez(out / "eigenvalues.npz", **arrays)
    from multigrade import report

    report.plot_spectrum(results, out / "spectrum.png")
    return out
