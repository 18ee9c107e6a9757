"""What a store directory holds: its files' names, the kinds of directory, and the
error a directory that cannot be used raises."""

from __future__ import annotations

import threading

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
