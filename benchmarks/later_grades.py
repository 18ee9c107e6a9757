"""A finished MGDL run's later grades trained again with other budgets, on the same first
grades.

Grades 1..K of RUN_DIR (its checkpoint) are kept, and grades K+1.. are trained again with
`--epochs` epochs (steps, for mini-batch grades) each, the run's config otherwise, its
schedule stretched over the new budget. `fit(start=...)` continues a run exactly, so the
later grades start from the numbers the run's own did and a change of their budget is
measured on the same first grades (a restoration recipe's seeds part at grade 2:
docs/time-to-quality.md). Grade K+1 must be on another grid than grade K (coarse-to-fine:
the run's u after grade K is then not needed; it is not stored once later grades end).

Prints each grade's PSNR on the full grid, its training loss and its minutes; `--json`
appends one line per run.

Usage: python benchmarks/later_grades.py RUN_DIR [RUN_DIR ...] --keep 2 --epochs 12000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import multigrade as mg
from multigrade.experiments import load_config
from multigrade.experiments.building import fit_arguments, problem_for
from multigrade.experiments.checkpoints import load_checkpoint
from multigrade.problems.minibatch import unbatched
from multigrade.train import Checkpoint


def later_grades(run_dir: Path, keep: int, epochs: int) -> dict:
    """Grades `keep`+1.. of `run_dir` trained again for `epochs` each: per grade its
    PSNR, final training loss, epochs and minutes."""
    cfg = load_config(run_dir)
    problem = problem_for(cfg)
    args = fit_arguments(cfg, problem)
    n = args["model"].num_grades
    if not 1 <= keep < n:
        raise ValueError(f"--keep: between 1 and {n - 1} grades, got {keep}")
    if unbatched(args["problem"][keep]) is unbatched(args["problem"][keep - 1]):
        raise ValueError(f"grade {keep + 1} is on grade {keep}'s grid: it would need the "
                         f"run's u after grade {keep}, which the checkpoint no longer holds")
    done = load_checkpoint(run_dir, args["model"], args["problem"], args["optimizer"])
    if done.finished < n:
        raise ValueError(f"{run_dir} has {done.finished} of {n} grades: not finished")
    start = Checkpoint(done.params[:keep], done.scales[:keep], done.grades[:keep],
                       [r for r in done.history if r["grade"] <= keep], done.aux)
    # the same config with the later grades' budget: its optimisers and schedules as a
    # run of that config builds them
    again = cfg.replace(train={"grade_epochs": tuple(args["epochs"][:keep]), "epochs": epochs})
    t0 = time.perf_counter()
    res = mg.fit(**fit_arguments(again, problem), start=start)
    minutes = (time.perf_counter() - t0) / 60
    rows = [{"grade": g.grade, "psnr": g.metrics["test_psnr"], "epochs": g.epochs,
             "minutes": g.seconds / 60,
             "train_loss": float(res.history["train_loss"][res.history["grade"] == g.grade][-1])}
            for g in res.grades]
    return {"run": str(run_dir), "keep": keep, "epochs": epochs, "minutes": minutes,
            "grades": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished MGDL run directories")
    parser.add_argument("--keep", type=int, default=2, help="first grades kept as run")
    parser.add_argument("--epochs", type=int, required=True, help="each later grade's budget")
    parser.add_argument("--json", type=Path, default=None, help="append one line per run")
    a = parser.parse_args()
    for run_dir in a.runs:
        try:
            out = later_grades(run_dir, a.keep, a.epochs)
        except ValueError as e:
            raise SystemExit(f"{run_dir}: {e}") from None
        for r in out["grades"]:
            print(f"{run_dir.name} | grade {r['grade']} | {r['psnr']:.2f} dB | "
                  f"{r['epochs']} epochs | loss {r['train_loss']:.1f} | "
                  f"{r['minutes']:.1f} min", flush=True)
        if a.json is not None:
            with a.json.open("a") as f:
                f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
