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
import threading
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

# A run directory's files (`experiments.runner.save_result` writes them; the report,
# verdicts, sweeps and the fair protocol read them)
STATUS = "status.json"  # state, finished grades, the command (`write_status`)
CONFIG = "config.toml"  # the whole RunConfig: `mgdl run DIR/config.toml` reruns it
CHECKPOINT = "checkpoint.npz"  # what `fit(start=...)` continues from
METRICS = "metrics.json"  # the summary: a `RunSummary`
HISTORY = "history.csv"  # one row per record: grade, epoch, step and every metric
PARAMS = "params.npz"  # the trained grades' parameters and scales (`save_params`)
DROPPED = "dropped.npz"  # grades a rule tried and dropped (adaptive grades, selection)
PREDICTIONS = "predictions.npz"  # the cumulative prediction after each grade
IMAGES = "images.npz"  # image problems: references and the image after each grade
ENVIRONMENT = "environment.json"  # versions, device, commit (`environment`)
HISTORY_PLOT = "history.png"
GRADES_PLOT = "grades.png"
STATES = ("running", "completed", "interrupted", "failed")
MARKER = ".multigrade.json"  # the store's claim: only `claim` (and `adopt`) write it
LOCK = ".multigrade.lock"  # an OS lock held by the process working in the directory
FORMAT = 1  # the marker's format version
KINDS = ("run", "comparison", "study", "sweep", "reproduction")
SINGLE = ("run", "comparison", "study")  # kinds that `--overwrite` may clear

# Every name the store writes in a directory of each kind (figures included); anything else
# in it is the user's, and no command clears a directory that holds one.
_RUN_FILES = frozenset({
    STATUS, CONFIG, CHECKPOINT, ENVIRONMENT, PARAMS, DROPPED, PREDICTIONS, IMAGES, HISTORY,
    METRICS, "baselines.npz", "baselines.json", "comparison.json", GRADES_PLOT, HISTORY_PLOT,
    "comparison.png",
    "report.html",
    # GD studies (lr-sweep, spectrum)
    "config.json", "sweep.json", "sweep.csv", "histories.csv", "sweep.png", "spectrum.csv",
    "spectrum.png", "eigenvalues.npz", "density.npz", "density.png",
})
STORE_FILES = {
    "run": _RUN_FILES, "comparison": _RUN_FILES, "study": _RUN_FILES,
    "sweep": frozenset({STATUS, "sweep.toml", "results.csv", "results.parquet", "groups.csv",
                        "summary.json", "sweep.png", "report.html"}),
    "reproduction": frozenset({"reproduction.json", "wall_times.json", "summary.md",
                               "summary.csv", "summary.json", "report.html", "fair.json",
                               "fair.md"}),
}


class RunDirError(ValueError):
    """A run directory that cannot be used (exists, is a file, is claimed by another run)."""


_READING = threading.local()


def last_read() -> str | None:
    """The file this thread's last `read_*` call opened (to name it when its content turns
    out to be of another structure than expected)."""
    return getattr(_READING, "path", None)


def _reading(path) -> None:
    _READING.path = str(path)


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
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a file is the user's to share
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask now: from /proc on Linux, else by setting and restoring it
    (under a lock: that is the only portable way to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` atomically (a reader sees the old file or the new one, never half)."""
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
    """Writes `data` as strict JSON (no NaN or infinity), atomically."""
    write_text(path, json.dumps(strict(data), indent=2, allow_nan=False) + "\n")


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


def read_json(path: str | os.PathLike):
    """Strict JSON from `path`; a file that is not JSON is a `RunDirError` naming it."""
    _reading(path)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} is damaged (not JSON: {e})") from None


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes named arrays as an .npz file, atomically."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an NPZ file; a damaged file is a `RunDirError` naming it."""
    _reading(path)
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            return dict(data)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        raise RunDirError(f"{path} is damaged ({type(e).__name__}: {e})") from None


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
    """A history.csv as one float array per column."""
    _reading(path)
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

    _reading(path)
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
    if not isinstance(like, (list, tuple)):
        raise TypeError("load_params: `like` must be a list of parameters, one per grade "
                        "(e.g. `model.init_params(key, in_dim)`), got "
                        f"{type(like).__name__}")
    arrays = read_npz(path)
    if "scales" not in arrays:
        raise RunDirError(f"{path} holds no grade scales: it is not a params.npz")
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
    """Whether `path` holds a status record (a run directory, of this version or older)."""
    return (Path(path) / STATUS).is_file()


def owner(path: str | os.PathLike) -> dict | None:
    """The store's marker of the directory `path` (`kind`, `id`, `format`, `parent`, ...),
    or None when the store did not make it."""
    try:
        data = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("store") != "multigrade" \
            or data.get("kind") not in KINDS or not isinstance(data.get("id"), str):
        return None
    return data


def _store_name(name: str, kind: str) -> bool:
    if name in (MARKER, LOCK) or name in STORE_FILES[kind]:
        return True
    # a temporary file of `atomic_open` left by a process killed while writing
    return name.startswith(".") and name.endswith(".tmp") and any(
        name.startswith(f".{known}.") for known in (MARKER, *STORE_FILES[kind]))


def foreign_files(path: str | os.PathLike) -> list[str]:
    """What a store-made directory holds that the store did not write: files it never
    writes, links, and folders that are not its own sub-runs (relative names, sorted).
    Every entry of a directory without the store's marker is foreign."""
    path = Path(path)
    marker = owner(path)
    if marker is None:
        return sorted(c.name + ("/" if c.is_dir() else "") for c in path.iterdir())
    found = []
    for child in sorted(path.iterdir()):
        if child.is_symlink():
            found.append(child.name)
        elif child.is_dir():
            sub = owner(child)
            if sub is not None and sub.get("parent") == marker["id"] \
                    and marker["kind"] in SINGLE:
                found += [f"{child.name}/{f}" for f in foreign_files(child)]
            else:
                found.append(child.name + "/")
        elif not (child.is_file() and _store_name(child.name, marker["kind"])):
            found.append(child.name)
    return found


def _listed(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# ---------------------------------------------------------------------------------------
# Locks


class Lock:
    """An exclusive lock on a directory, held by this process (an OS file lock on its
    `LOCK` file: the kernel releases it when the process ends, however it ends).

    Locks are re-entrant within one thread (`lock` of a directory this thread holds adds a
    hold); another thread or process is refused.
    """

    def __init__(self, path: Path, key: tuple):
        self.path, self._key = path, key

    def release(self) -> None:
        held = _HELD.get(self._key)
        if held is None or self._key is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[self._key]
            with contextlib.suppress(OSError):
                os.ftruncate(held[0], 0)  # no stale holder left behind
            os.close(held[0])  # closing the descriptor releases the flock
        self._key = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


_HELD: dict[tuple, list] = {}  # (real path, thread id) -> [fd, holds]


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or "pid" not in data:
        return "another process"
    what = f"pid {data['pid']} on {data.get('host', '?')}"
    if data.get("command"):
        what += f" ({data['command']})"
    return what + (f", since {data['since']}" if data.get("since") else "")


def lock(path: str | os.PathLike, command: str | None = None) -> Lock:
    """Locks the directory `path` (which must exist) for this process, or refuses with a
    `RunDirError` naming the holder (pid, host, command)."""
    import fcntl

    path = Path(path)
    key = (os.path.realpath(path), threading.get_ident())
    if key in _HELD:
        _HELD[key][1] += 1
        return Lock(path, key)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunDirError(f"{path} is in use by {holder}: wait for it to finish or stop "
                          "it first") from None
    except BaseException:
        os.close(fd)
        raise
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": _dt.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    _HELD[key] = [fd, 1]
    return Lock(path, key)


def holds_lock(path: str | os.PathLike) -> bool:
    """Whether this thread holds the lock of `path`."""
    return (os.path.realpath(path), threading.get_ident()) in _HELD


# ---------------------------------------------------------------------------------------
# Claiming, opening and clearing directories


def _check_out(out) -> Path:
    if out is None or str(out).strip() == "":
        raise RunDirError("--out must name a directory, got an empty string")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory")
    return out


def _not_ours(out: Path, what: str) -> RunDirError:
    names = foreign_files(out)
    return RunDirError(f"{out} was not made by mgdl (no {MARKER}) and holds "
                       f"{_listed(names)}: {what}")


def clearable(out: str | os.PathLike, parent: str | None = None) -> dict:
    """The marker of `out` if `--overwrite` may clear it: a single run, comparison or study
    that the store made (a sub-run only for its own comparison, `parent`), holding nothing
    the store did not write; else a `RunDirError` that says why (and lists the files that
    are not the store's)."""
    out = Path(out)
    marker = owner(out)
    if marker is None:
        raise _not_ours(out, "--overwrite clears only run directories that mgdl made; "
                        "choose another --out")
    if marker["kind"] not in SINGLE:
        raise RunDirError(f"{out} is a {marker['kind']} directory: --overwrite never clears "
                          "one (continue it, or choose another --out)")
    if marker.get("parent") != parent:
        raise RunDirError(f"{out} is part of the comparison {out.parent}: overwrite the "
                          "comparison, or choose another --out")
    foreign = foreign_files(out)
    if foreign:
        raise RunDirError(f"{out} holds files mgdl did not write ({_listed(foreign)}): "
                          "--overwrite would delete them; move them away or choose another "
                          "--out")
    return marker


def _write_marker(out: Path, kind: str, parent: str | None, **extra) -> dict:
    from multigrade._version import __version__

    marker = {"store": "multigrade", "format": FORMAT, "kind": kind,
              "id": secrets.token_hex(8), "parent": parent, "multigrade": __version__,
              "created": _dt.datetime.now().isoformat(timespec="seconds"), **extra}
    write_json(out / MARKER, marker)
    return marker


def claim(out: str | os.PathLike, kind: str, *, overwrite: bool = False,
          parent: str | None = None, command: str | None = None) -> Lock:
    """Makes `out` a new store directory of `kind`, locked by this process until the
    returned `Lock` is released; before any work starts.

    - `out` must be a directory path (not empty, not an existing file);
    - an existing non-empty directory is refused, unless `overwrite` and `clearable(out)`:
      then it is locked (a directory in use is refused, naming its holder), its status set
      to failed (so nothing vouches for a half-cleared directory) and emptied;
    - the marker (kind, id, format, `parent`: the id of the comparison a sub-run belongs
      to) and a status "running" are written.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown directory kind {kind!r}")
    out = _check_out(out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(f"{out} exists and is not empty: choose another --out, add "
                              f"--overwrite to replace it, or `mgdl resume {out}` to continue it")
        clearable(out, parent)
        held = lock(out, command)
        try:
            clearable(out, parent)  # again, now that no other process can change it
            _clear(out)
        except BaseException:
            held.release()
            raise
    else:
        out.mkdir(parents=True, exist_ok=True)
        held = lock(out, command)
        if any(c.name != LOCK for c in out.iterdir()):
            held.release()
            raise RunDirError(f"{out} was claimed by another run")
    try:
        _write_marker(out, kind, parent)
        if kind != "reproduction":
            write_status(out, "running", command=command)
    except BaseException:
        held.release()
        raise
    return held


def subdir(out: str | os.PathLike, name: str) -> Path:
    """A folder of the store's inside its directory `out` (a study's per-method files),
    marked as part of it, so that `foreign_files` knows it."""
    parent = owner(out)
    path = Path(out) / name
    path.mkdir(exist_ok=True)
    if parent is not None and owner(path) is None:
        _write_marker(path, parent["kind"], parent["id"])
    return path


def _clear(out: Path) -> None:
    """Empties a clearable directory this process has locked: the status first says that
    it is being cleared, then everything but the marker, the lock and the status goes."""
    write_status(out, "failed", error="being cleared by --overwrite for a new run; the "
                 "clearing did not finish")
    try:
        for child in out.iterdir():
            if child.name in (MARKER, LOCK, STATUS):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    except OSError as e:
        with contextlib.suppress(OSError):
            write_status(out, "failed", error=f"--overwrite could not clear it: {e}")
        raise RunDirError(f"--overwrite could not clear {out} ({e}); its status says "
                          "failed") from None
    (out / STATUS).unlink()


def _legacy(out: Path) -> str | None:
    """The kind of a directory made before markers existed, judged by what only the store
    writes (None when it does not look like one)."""
    if (out / "reproduction.json").is_file():
        return "reproduction"
    try:
        status = read_json(out / STATUS)
    except (OSError, ValueError):
        return None
    if not (isinstance(status, dict) and status.get("state") in STATES
            and {"finished_grades", "pid", "host", "updated"} <= set(status)):
        return None
    if (out / "sweep.toml").is_file():
        return "sweep"
    if (out / CONFIG).is_file():
        return "comparison" if (out / "comparison.json").is_file() or \
            (out / "mgdl").is_dir() else "run"
    return None


def open_dir(path: str | os.PathLike, kinds: tuple[str, ...] = SINGLE, *,
             command: str | None = None, what: str = "resume") -> tuple[Lock, dict]:
    """Locks an existing store directory of one of `kinds` to continue it: `(lock,
    marker)`. A directory made by an older version (no marker, but the store's status
    record and files) is adopted: its marker is written once it is locked."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"no run directory at {path}")
    marker = owner(path)
    legacy = _legacy(path) if marker is None else None
    if marker is None and legacy is None:
        raise _not_ours(path, f"{what} continues only directories that mgdl made")
    kind = marker["kind"] if marker is not None else legacy
    if kind not in kinds:
        raise RunDirError(f"{path} is a {kind} directory: {what} does not apply to it")
    held = lock(path, command)
    try:
        if marker is None:
            foreign = foreign_files_as(path, kind)
            if foreign:
                raise RunDirError(f"{path} was made by an older mgdl and holds files it did "
                                  f"not write ({_listed(foreign)}): move them away first")
            marker = _write_marker(path, kind, None, adopted=True)
            if kind == "comparison":
                adopt_children(path, marker)
    except BaseException:
        held.release()
        raise
    return held, marker


def kind_of(path: str | os.PathLike) -> str | None:
    """The store kind of the directory `path`: its marker's, or, for a directory an older
    version made, the kind its files show; None for anything else."""
    marker = owner(path)
    return marker["kind"] if marker is not None else _legacy(Path(path))


def claim_or_open(out: str | os.PathLike, kind: str, *, command: str | None = None,
                  what: str = "continue") -> Lock:
    """`claim` a new (or empty) `out` as `kind`, or `open_dir` the non-empty store
    directory of that kind to continue it: the lock either way."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        return open_dir(out, (kind,), command=command, what=what)[0]
    return claim(out, kind, command=command)


def adopt(path: str | os.PathLike) -> None:
    """Marks a directory an older version made as the store's (`open_dir`); one that
    carries the store's marker already is left as it is."""
    if owner(path) is None:
        open_dir(path, KINDS, what="adopting it")[0].release()


def foreign_files_as(path: Path, kind: str) -> list[str]:
    """`foreign_files` of a directory without a marker, judged as one of `kind` (its
    sub-directories as sub-runs when they look like runs)."""
    found = []
    for child in sorted(path.iterdir()):
        if child.is_symlink():
            found.append(child.name)
        elif child.is_dir():
            if kind in SINGLE and _legacy(child) in ("run",):
                found += [f"{child.name}/{f}" for f in foreign_files_as(child, "run")]
            elif kind in ("sweep", "reproduction"):
                continue  # their runs are opened one by one when continued
            else:
                found.append(child.name + "/")
        elif not _store_name(child.name, kind):
            found.append(child.name)
    return found


def adopt_children(path: Path, parent: dict) -> None:
    """Marks the sub-run folders of an adopted comparison as its own."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink() and owner(child) is None \
                and _legacy(child) == "run":
            _write_marker(child, "run", parent["id"], adopted=True)


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

    def drop_none(d):  # and tables left empty
        out = {k: drop_none(v) if isinstance(v, Mapping) else v
               for k, v in d.items() if v is not None}
        return {k: v for k, v in out.items() if not (isinstance(v, Mapping) and not v)}

    return tomli_w.dumps(drop_none(data))


def write_toml(path: str | os.PathLike, data: Mapping) -> None:
    """Writes `data` as TOML, atomically."""
    write_text(path, toml_text(data))


def read_toml_text(text: str, source: str = "TOML") -> dict:
    """Parses TOML text; a ValueError naming `source` if it is not valid."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: not valid TOML: {e}") from None


def read_toml(path: str | os.PathLike) -> dict:
    """Reads a TOML file."""
    return read_toml_text(Path(path).read_text(encoding="utf-8"), str(path))
