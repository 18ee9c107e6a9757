"""The OS lock of the process working in a directory."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import threading
from pathlib import Path

from multigrade.runs._layout import LOCK, RunDirError

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
