"""The run store: the only reader and writer of run directories. Pure file I/O.

A run directory holds

    status.json       the run's state, written last at every stage: "running",
                      "completed", "interrupted" or "failed"; finished grades; the command
    config.toml       the full configuration, in the schema `mgdl run` reads
    environment.json  versions, backend, git commit
    checkpoint.npz    everything needed to continue: finished grades' parameters, scales and
                      summaries, the auxiliary state, the history so far and, when a grade was
                      interrupted, its parameters and optimiser state
    params.npz        parameters of the finished grades (`grade1/hidden/0/W`, ...; `scales`)
    predictions.npz   the prediction after each finished grade (`grade1`, ...)
    images.npz        for images: the references (`reference/target`, ...) and the image
                      after each grade (`grade1`, ...), what the figures are drawn from
    history.csv       one row per record
    metrics.json      final metrics and one entry per grade
    *.png             figures

Every file is written atomically (a temporary file in the same folder, then a rename), so a
reader never sees a partial file under its final name. `status.json` is written after the
files it describes; readers trust only what it says. Arrays are NPZ read with
`allow_pickle=False`; JSON is strict (no NaN or Infinity: non-finite numbers become null).
Checkpoints use the path-named NPZ of the parameters rather than Orbax: the pytrees are
small (megabytes), one file renamed into place is atomic, and NumPy alone reads it back.

This module imports no model, problem or figure code: it maps named arrays, dicts and
text to files and back.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

STATUS = "status.json"
CONFIG = "config.toml"
CHECKPOINT = "checkpoint.npz"
STATES = ("running", "completed", "interrupted", "failed")


class RunDirError(ValueError):
    """A run directory that cannot be used (exists, is a file, is claimed by another run)."""


# ---------------------------------------------------------------------------------------
# Atomic writes


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Opens a temporary file beside `path`; renames it to `path` when the block succeeds.

    A failure or an interruption inside the block leaves `path` as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def strict(value):
    """`value` with every non-finite float replaced by None and NumPy scalars and arrays by
    Python numbers and lists: what strict JSON can hold."""
    if isinstance(value, Mapping):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, data) -> None:
    write_text(path, json.dumps(strict(data), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_open(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return dict(data)


def write_rows(path: str | os.PathLike, rows: list[Mapping]) -> None:
    """A CSV with one column per key seen in any row (empty where a row lacks it)."""
    names = list(dict.fromkeys(n for row in rows for n in row))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(names)
    for row in rows:
        w.writerow([_fmt(row[n]) if n in row else "" for n in names])
    write_text(path, buf.getvalue())


def write_history(path: str | os.PathLike, history: Mapping[str, np.ndarray]) -> None:
    """Columns of equal length as a CSV (integers as integers, floats round-trip exactly)."""
    names = list(history)
    n = len(history[names[0]]) if names else 0
    write_rows(path, [{k: history[k][i] for k in names} for i in range(n)])


def _fmt(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    if v is None:
        return ""
    if isinstance(v, (bool, int, str)):
        return str(v)
    return repr(float(v))


def read_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    names = rows[0]
    values = np.asarray(rows[1:], dtype=float).reshape(-1, len(names))
    return {n: values[:, i] for i, n in enumerate(names)}


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV written by `write_rows`: numbers as floats, other text as it is,
    empty cells left out."""
    def value(text: str):
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="", encoding="utf-8") as f:
        return [{k: value(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------
# Pytrees as named arrays


def path_name(path) -> str:
    """`(GetAttrKey('hidden'), SequenceKey(0), GetAttrKey('W'))` → `hidden/0/W`."""
    from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

    parts = []
    for entry in path:
        if isinstance(entry, GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, FlattenedIndexKey):
            parts.append(str(entry.key))
        else:
            raise TypeError(f"cannot name pytree path entry {entry!r}")
    return "/".join(parts)


def tree_to_arrays(tree, prefix: str) -> dict[str, np.ndarray]:
    """Every leaf of `tree` as `<prefix>/<path>` → NumPy array (dtype kept)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(filter(None, (prefix, path_name(p)))): np.asarray(leaf)
            for p, leaf in leaves}


def arrays_to_tree(arrays: Mapping[str, np.ndarray], prefix: str, like, *, source: str = ""):
    """The inverse of `tree_to_arrays`: a pytree shaped like `like` (arrays or
    `jax.ShapeDtypeStruct`s), each leaf read from its name. Shapes must match."""
    import jax
    import jax.numpy as jnp

    def read(path, leaf):
        name = "/".join(filter(None, (prefix, path_name(path))))
        if name not in arrays:
            raise ValueError(f"{source or 'arrays'} has no {name!r}: it holds another model")
        a = arrays[name]
        if tuple(a.shape) != tuple(np.shape(leaf)):
            raise ValueError(f"{source or 'arrays'}: {name!r} has shape {tuple(a.shape)}, "
                             f"the model expects {tuple(np.shape(leaf))}")
        return jnp.asarray(a, dtype=leaf.dtype)

    return jax.tree_util.tree_map_with_path(read, like)


def save_params(path: str | os.PathLike, params: list, scales: list[float]) -> None:
    """`scales` and `grade<k>/<path>` for every leaf (`grade1/hidden/0/W`, `grade1/head/b`;
    for MSDL `grade1/<sub-network>/<layer>/W`)."""
    arrays = {"scales": np.asarray(scales, dtype=np.float64)}
    for k, p in enumerate(params, start=1):
        arrays.update(tree_to_arrays(p, f"grade{k}"))
    write_npz(path, arrays)


def load_params(path: str | os.PathLike, like: list) -> tuple[list, list[float]]:
    """Reads `params.npz` back as `(params, scales)`.

    Args:
        like: parameters of the same structure, one entry per stored grade (for a model,
            `model.init_params(key, in_dim)`, or its `jax.eval_shape`); every stored shape
            is checked against it.
    """
    arrays = read_npz(path)
    scales = [float(s) for s in arrays.pop("scales")]
    if len(like) != len(scales):
        raise ValueError(f"{path}: {len(scales)} grades stored, {len(like)} given in like")
    return [arrays_to_tree(arrays, f"grade{k}", p, source=str(path))
            for k, p in enumerate(like, start=1)], scales


# ---------------------------------------------------------------------------------------
# Run directories


def default_out(kind: str, root: str | os.PathLike = "runs") -> Path:
    """A new, unique `runs/<kind>-<time>-<random>`: unique even for runs started in the
    same second (the directory is created here, so no other run can take it)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = root / f"{kind}-{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / STATUS).is_file()


def prepare(out: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Checks and claims `out` for a new run, before any work starts.

    - `out` must be a directory path (not empty, not an existing file);
    - an existing non-empty directory is refused unless `overwrite` (a run directory is
      then cleared first; anything else is never deleted) or `resume` (it must be a run
      directory);
    - the directory is created and claimed by writing `status.json` exclusively: two runs
      given the same `out` at once cannot both have it.
    """
    if str(out).strip() == "":
        raise RunDirError("--out must name a directory, got an empty string")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory")
    if resume:
        if not is_run_dir(out):
            raise RunDirError(f"{out} is not a run directory (no {STATUS})")
        return out
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(f"{out} exists and is not empty: choose another --out, add "
                              f"--overwrite to replace it, or `mgdl resume {out}` to continue it")
        if not is_run_dir(out):
            raise RunDirError(f"{out} is not a run directory (no {STATUS}): --overwrite only "
                              "clears run directories")
        if read_status(out).get("state") == "running" and _alive(read_status(out)):
            raise RunDirError(f"{out} belongs to a run in progress (pid "
                              f"{read_status(out)['pid']})")
        reset(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(out / STATUS, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise RunDirError(f"{out} was claimed by another run") from None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(_status_record("running", None, [], None)) + "\n")
    return out


def reset(out: str | os.PathLike) -> None:
    """Empties a run directory (never anything else). The caller must own the run: `prepare`
    checks that no live process does; a sweep's task owns it by Dask's scheduling."""
    out = Path(out)
    if not is_run_dir(out):
        raise RunDirError(f"{out} is not a run directory (no {STATUS}): not clearing it")
    for child in out.iterdir():
        if child.name == STATUS:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (out / STATUS).unlink()


def _alive(status: dict) -> bool:
    """Whether the process that wrote `status` still runs (on another host: assumed so)."""
    pid = status.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    if status.get("host", socket.gethostname()) != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    path = Path(out) / STATUS
    try:
        return read_json(path)
    except FileNotFoundError:
        raise RunDirError(f"{out} is not a run directory (no {STATUS})") from None
    except json.JSONDecodeError:
        raise RunDirError(f"{path} is damaged") from None


def environment() -> dict:
    """Versions and the git commit, recorded next to every result."""
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
    }


# ---------------------------------------------------------------------------------------
# TOML


def toml_text(data: Mapping) -> str:
    """A nested dict of str / int / float / bool / lists as TOML (None values left out:
    TOML has no null, and every optional field defaults to None)."""
    import tomli_w

    def drop_none(d):
        return {k: drop_none(v) if isinstance(v, Mapping) else v
                for k, v in d.items() if v is not None}

    return tomli_w.dumps(drop_none(data))


def write_toml(path: str | os.PathLike, data: Mapping) -> None:
    write_text(path, toml_text(data))


def read_toml_text(text: str, source: str = "TOML") -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: not valid TOML: {e}") from None


def read_toml(path: str | os.PathLike) -> dict:
    return read_toml_text(Path(path).read_text(encoding="utf-8"), str(path))
