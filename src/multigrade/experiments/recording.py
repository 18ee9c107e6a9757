"""A run's files as it trains and when it ends: the checkpoints `fit` hands over (and the
stop flag it reads), the finished result's files, a failure in the status, and what an
interrupted run kept, in words."""

from __future__ import annotations

import contextlib
from pathlib import Path

from multigrade import runs
from multigrade.experiments.checkpoints import checkpoint_arrays
from multigrade.experiments.signals import _Stop, _StopFlag
from multigrade.experiments.summaries import result_summary
from multigrade.train import Checkpoint, FitResult


class _Recorder(_Stop):
    """Writes a run's checkpoints as `fit` makes them, and reads the stop flag."""

    def __init__(self, run_dir: Path, flag: _StopFlag, command: str | None):
        super().__init__(flag)
        self.run_dir, self.command = run_dir, command

    def _save(self, ckpt: Checkpoint) -> None:
        runs.write_npz(self.run_dir / runs.CHECKPOINT, checkpoint_arrays(ckpt))
        runs.write_rows(self.run_dir / runs.HISTORY, ckpt.history)

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._save(checkpoint)
        p = checkpoint.pending
        runs.write_status(self.run_dir, "running", command=self.command,
                          finished=[g.grade for g in checkpoint.grades],
                          pending={"grade": p.grade, "epoch": p.epochs})

    def on_grade_end(self, checkpoint: Checkpoint) -> None:
        self._save(checkpoint)
        runs.save_params(self.run_dir / runs.PARAMS, checkpoint.params, checkpoint.scales)
        runs.write_status(self.run_dir, "running", command=self.command,
                          finished=[g.grade for g in checkpoint.grades])


def _kept(run_dir: Path) -> str:
    """What the status of an interrupted run says was kept, in words."""
    status = runs.read_status(run_dir)
    done = status.get("finished_grades") or []
    parts = [f"grade{'s' if len(done) > 1 else ''} {', '.join(map(str, done))}"] if done \
        else []
    if status.get("pending"):
        p = status["pending"]
        parts.append(f"grade {p['grade']} at epoch {p['epoch']}")
    return " and ".join(parts) or "no finished grade"


def save_result(run_dir: Path, result: FitResult, *, figures: bool = True,
                selection: dict | None = None, adaptive: dict | None = None) -> None:
    """The finished run's files (then the caller marks it completed)."""
    from multigrade import report

    runs.write_npz(run_dir / runs.CHECKPOINT, checkpoint_arrays(result.checkpoint()))
    runs.save_params(run_dir / runs.PARAMS, result.params, result.scales)
    if result.dropped_params:  # grades a rule dropped: kept, not part of the model
        runs.save_params(run_dir / runs.DROPPED, result.dropped_params,
                         [g.scale for g in result.dropped])
    else:  # a grown run may now keep what it dropped before
        (run_dir / runs.DROPPED).unlink(missing_ok=True)
    runs.write_npz(run_dir / runs.PREDICTIONS,
                   {f"grade{k}": p for k, p in enumerate(result.predictions, start=1)})
    runs.write_history(run_dir / runs.HISTORY, result.history)
    runs.write_json(run_dir / runs.METRICS, {
        **result_summary(result), "model_description": result.model.describe(),
        "problem": result.problem.describe(),
        **({} if selection is None else {"selection": selection}),
        **({} if adaptive is None else {"adaptive": adaptive})})
    images = [result.problem.render(p) for p in result.predictions]
    if images and images[0] is not None:
        runs.write_npz(run_dir / runs.IMAGES, {
            **{f"reference/{k}": v for k, v in result.problem.references().items()},
            **{f"grade{k}": im for k, im in enumerate(images, start=1)}})
    if figures:
        report.plot_run(run_dir)


def _failed(run_dir: Path, command: str | None, error: BaseException,
            during: str | None = None) -> None:
    """Records a failure in the status (what was finished, the error's text); a status
    that cannot be written either leaves the error to the caller."""
    text = f"{type(error).__name__}: {error}"
    try:
        status = runs.read_status(run_dir)
    except (OSError, ValueError):  # missing or damaged: nothing finished to carry over
        status = {}
    with contextlib.suppress(OSError):
        runs.write_status(run_dir, "failed", command=command,
                          finished=status.get("finished_grades", []),
                          pending=status.get("pending"),
                          error=f"{during} failed: {text}" if during else text)
