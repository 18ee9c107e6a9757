"""Atomic writes; strict JSON, NPZ, CSV and TOML, each read naming the file it opened."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from multigrade.runs._layout import RunDirError, _reading

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
    """A history.csv as one float array per column (an empty cell, a row without that
    column as `write_rows` leaves it, is NaN)."""
    _reading(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    names = rows[0]
    values = np.asarray([[c if c else "nan" for c in r] for r in rows[1:]],
                        dtype=float).reshape(-1, len(names))
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
