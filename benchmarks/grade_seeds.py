"""Grade by grade over seeds: the fast scale's MGDL recipe, its first grades only.

Runs the first `--grades` grades of `mgdl reproduce EXPERIMENT --scale fast`'s MGDL recipe
(the same config, programs and numbers: `presets.FAST`) for each (initialisation seed,
noise seed) pair. For denoising the base is the recipe these variants were made from
and measured on, the fast scale's first (`FIRST`, coarse-warmup-batch16: 2 000 epochs on
each coarse grid, one try each), not today's g1x4-t3-x2 (variants g1x4 and g2t3 at once,
with grades 3 and 4 twice as long). It prints per grade its PSNR on the full grid (grades
on coarse grids are evaluated there when they end), the minute it ended and its
**training loss** at the end (what the run sees without the clean image). A variant
changes one grade's budget or peak rate, to study where the seeds part:

  base      the recipe
  g2x2      grade 2 takes twice its epochs (4 000 on the 2× coarser grid)
  g2lr5     grade 2 peaks at 5e-3 instead of 1e-2
  g2t2, g2t3  grade 2 trained 2 or 3 times from fresh starts, the try of least training
              loss kept (`--grade-tries 1,3`); each try's loss is printed
  g1t3      grade 1 trained from 3 starts (least loss kept): grade 2, from its own start,
            then learns on another grade 1's features
  g1x4      grade 1 takes four times its epochs (8 000 on the 4× coarser grid)
  g1x4g2x2  grade 1 four times (8 000) and grade 2 twice (4 000 on the 2× coarser grid)
  g1x4t3    g1x4 with grade 2 from three starts: the first grades of today's recipe

Every try's training-loss curve (each record's, every 100 epochs) goes into the JSON line
(`curves`); for a grade of several tries the script prints each try's loss at a quarter,
half and all of its budget, and which try each would keep: whether a race (every try for
part of its budget, only the leader finishing) would keep the same try.

One JSON line per run goes to `--jsonl` (appended: a study can be run in pieces, e.g. one
process per core).

Usage:
  python benchmarks/grade_seeds.py --pairs 0:0,1:0,2:1,3:1 --variant base --grades 2
  # one run per core, one thread each (the way docs/time-to-quality.md measured it):
  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
      taskset -c 0 python benchmarks/grade_seeds.py --pairs 2:1 --variant g2x2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import multigrade as mg
from multigrade.experiments.building import fit_arguments
from multigrade.experiments.optimizers import make_optimizer
from multigrade.experiments.presets import EXPERIMENTS
from multigrade.experiments.reproduce import experiment_config
from multigrade.experiments.runner import problem_for
from multigrade.metrics import psnr
from multigrade.train import Callback, tries_at

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "images"
# denoising's base, the fast scale's first MGDL recipe (presets.FAST's until 2026-12-07):
# the variants below change it, and docs/time-to-quality.md's runs measured them on it
FIRST = {"denoise": {"grade_epochs": (2000, 2000), "grade_tries": (), "epochs": 6000}}
VARIANTS = {  # grade (1-based) -> {"epochs": budget, "lr": peak rate, "tries": tries}
    "base": {},
    "g2x2": {2: {"epochs": 4000}},
    "g2lr5": {2: {"lr": 5e-3}},
    "g2t2": {2: {"tries": 2}},
    "g2t3": {2: {"tries": 3}},
    "g1t3": {1: {"tries": 3}},
    "g1x4": {1: {"epochs": 8000}},
    "g1x4g2x2": {1: {"epochs": 8000}, 2: {"epochs": 4000}},
    "g1x4t3": {1: {"epochs": 8000}, 2: {"tries": 3}},
}


class GradeEnds(Callback):
    """(grade, full-grid PSNR, minutes since the start, training loss) at each grade's
    end, and every try's training-loss curve (the run's own records: the history's for a
    grade trained once, `tries_history` for one of several tries); the full-grid
    measurement's time is not counted."""

    def __init__(self, t0: float, model, full):
        self.t0, self.model, self.full, self.paused, self.rows = t0, model, full, 0.0, []
        self.curves: list[dict] = []  # one per try: grade, epochs, training losses

    def on_grade_end(self, checkpoint):
        minutes = (time.perf_counter() - self.t0 - self.paused) / 60
        t = time.perf_counter()
        pred = self.model.predict(checkpoint.params, self.full.coords, checkpoint.scales)
        value = psnr(np.asarray(pred).reshape(self.full.shape), np.asarray(self.full.clean))
        summary, k = checkpoint.grades[-1], checkpoint.finished
        self.rows.append({"grade": k, "psnr": float(value), "minutes": minutes,
                          "train_loss": float(checkpoint.history[-1]["train_loss"]),
                          "tries": summary.tries})
        mine = [r for r in checkpoint.history if r["grade"] == k]
        self.curves += [{"grade": k, "epoch": [int(e) for e in c["epoch"]],
                         "train_loss": c["train_loss"]}
                        for c in summary.tries_history or [
                            {n: [r[n] for r in mine] for n in ("epoch", "train_loss")}]]
        self.paused += time.perf_counter() - t
        tries = summary.tries
        print(f"  grade {k}: {float(value):.2f} dB at {minutes:.1f} min, "
              f"training loss {self.rows[-1]['train_loss']:.1f}"
              + (f" (tries' losses {', '.join(f'{v:.1f}' for v in tries)})" if tries else ""),
              flush=True)
        if tries:
            race(k, summary.tries_history)


def race(grade: int, curves: list[dict]) -> None:
    """Each try's training loss at a quarter, half and all of its budget, and the try of
    least loss at each (what a race stopped there would keep: `train.tries_at`)."""
    for part in (0.25, 0.5, 1.0):
        at = tries_at(curves, part)
        print(f"    grade {grade} at {part:.0%} of its epochs: tries' losses "
              f"{', '.join(f'{v:.1f}' for v in at)}; least: try {int(np.argmin(at)) + 1}",
              flush=True)


def run(experiment: str, variant: str, seed: int, noise_seed: int, grades: int,
        size: int | None, data_dir: str) -> dict:
    t0 = time.perf_counter()
    cfg = experiment_config(EXPERIMENTS[experiment], "fast", data_dir).for_method("mgdl")
    cfg = cfg.replace(problem={"noise_seed": noise_seed, **({"size": size} if size else {})},
                      train={"seed": seed, **FIRST.get(cfg.problem.task, {})})
    problem = problem_for(cfg)
    args = fit_arguments(cfg, problem, grades=grades)
    tr, budgets, optimizers = cfg.train, list(args["epochs"]), list(args["optimizer"])
    tries = list(args["tries"])
    for grade, change in VARIANTS[variant].items():
        if grade <= grades:
            budgets[grade - 1] = change.get("epochs", budgets[grade - 1])
            tries[grade - 1] = change.get("tries", tries[grade - 1])
            optimizers[grade - 1] = make_optimizer(tr.optimizer, change.get("lr", tr.lr),
                                                   tr.schedule, budgets[grade - 1])
    ends = GradeEnds(t0, args["model"], problem)
    mg.fit(**{**args, "epochs": budgets, "optimizer": optimizers, "tries": tries,
              "record_every": 100},
           window=1, callbacks=[ends])
    return {"experiment": experiment, "size": cfg.problem.size, "variant": variant,
            "seed": seed, "noise_seed": noise_seed, "epochs": budgets, "grades": ends.rows,
            "curves": ends.curves}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="denoise-butterfly-10")
    ap.add_argument("--variant", default="base", choices=sorted(VARIANTS))
    ap.add_argument("--pairs", default="0:0", help="init:noise seed pairs, comma-separated")
    ap.add_argument("--grades", type=int, default=2, help="train the first N grades")
    ap.add_argument("--size", type=int, default=None, help="default: the paper's")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--jsonl", type=Path, default=None)
    a = ap.parse_args(argv)
    if EXPERIMENTS.get(a.experiment) is None or a.experiment.split("-")[0] not in (
            "denoise", "deblur"):
        ap.error(f"--experiment: a denoising or deblurring experiment, got {a.experiment!r}")
    if a.grades < 1:
        ap.error(f"--grades: at least 1, got {a.grades}")
    try:
        pairs = [tuple(int(v) for v in p.split(":")) for p in a.pairs.split(",")]
    except ValueError:
        ap.error(f"--pairs: init:noise integer pairs, e.g. 0:0,1:0, got {a.pairs!r}")
    if any(len(p) != 2 for p in pairs):
        ap.error(f"--pairs: init:noise integer pairs, e.g. 0:0,1:0, got {a.pairs!r}")
    data_dir = a.data_dir or (str(SHARED) if SHARED.is_dir() else None)
    for seed, noise in pairs:
        print(f"{a.variant}, init seed {seed}, noise seed {noise}:", flush=True)
        row = run(a.experiment, a.variant, seed, noise, a.grades, a.size, data_dir)
        if a.jsonl is not None:
            with a.jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
