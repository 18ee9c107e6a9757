"""Run directories: finding, claiming, opening, clearing and adopting them (ownership
markers, foreign files)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import shutil
from pathlib import Path

from multigrade.runs._io import read_json, write_json
from multigrade.runs._layout import (
    CONFIG,
    FORMAT,
    KINDS,
    LOCK,
    MARKER,
    SINGLE,
    STATES,
    STATUS,
    STORE_FILES,
    RunDirError,
)
from multigrade.runs._locks import Lock, lock
from multigrade.runs._records import write_status

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
