"""`mgdl` in processes of its own, for the tests where a separate process is the point
(signals, locks held by another process, a process killed mid-run, what a fresh process
prints), and the same command run in this process where the process is not the point.
Child processes inherit the session's compilation cache (conftest.py), so each compiles only
what no earlier process of the session compiled."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import traceback
from typing import NamedTuple


def _command(args) -> list[str]:
    return [sys.executable, "-m", "multigrade", *map(str, args)]


def mgdl(*args, cwd=None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """`mgdl ARGS` in a process of its own (text output captured)."""
    return subprocess.run(_command(args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


@contextlib.contextmanager
def running(*args):
    """`mgdl ARGS` running in the background; killed (if still alive) at the end."""
    proc = subprocess.Popen(_command(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


class Result(NamedTuple):
    """What a shell sees of a command: its exit code and its two streams."""

    returncode: int
    stdout: str
    stderr: str


def mgdl_here(*args) -> Result:
    """`mgdl ARGS` in this process (Typer's runner), for tests of what a command does rather
    than of the process it runs in: no interpreter start, and programs compiled once for the
    session. An exception the command did not turn into its one-line error is in `stderr`."""
    from typer.testing import CliRunner

    from multigrade.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "".join(traceback.format_exception(res.exception))
    return Result(res.exit_code, res.stdout, stderr)
