"""Stopping a run cleanly: SIGINT and SIGTERM set a flag that `fit` reads between chunks
(a callback asks it to stop; the grade is checkpointed), a second signal stops at once,
and while results are saved every signal waits. `RunInterrupted` tells the caller what was
kept."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from multigrade.train import Callback


class RunInterrupted(Exception):  # noqa: N818 (a stop asked for by the user)
    """A run stopped by SIGINT or SIGTERM; what was kept is on disk."""

    def __init__(self, run_dir: Path, signum: int, kept: str):
        self.run_dir, self.signum, self.kept = run_dir, signum, kept
        name = signal.Signals(signum).name
        super().__init__(f"interrupted ({name}): {run_dir} keeps {kept}; continue with "
                         f"`mgdl resume {run_dir}`")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclasses.dataclass
class _StopFlag:
    signum: int | None = None
    deferring: bool = False  # saving results: a second signal waits for the save to end


@contextlib.contextmanager
def _deferred(flag: _StopFlag) -> Iterator[None]:
    """While results are saved, every signal only sets the flag: the directory is never
    left half-written (the save takes a moment; the run stops after it)."""
    before, flag.deferring = flag.deferring, True
    try:
        yield
    finally:
        flag.deferring = before


@contextlib.contextmanager
def _catch_signals() -> Iterator[_StopFlag]:
    """SIGINT and SIGTERM set a flag that `fit` reads between chunks; a second one raises
    KeyboardInterrupt at once (after the save, while results are saved). Only the main
    thread can own signals: elsewhere (a Dask worker thread) the flag never rises."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.signum is not None and not flag.deferring:
            raise KeyboardInterrupt
        flag.signum = flag.signum or signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Stop(Callback):
    """Asks `fit` to stop (between chunks) once a signal set the flag."""

    def __init__(self, flag: _StopFlag):
        self.flag = flag

    def stop_requested(self) -> bool:
        return self.flag.signum is not None
