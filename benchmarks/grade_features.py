"""What each finished grade of an MGDL run hands the next: its features on the full grid.

A grade k > 1 learns from grade k-1's last hidden activations φ_{k-1} (`grade_features`).
For each finished grade of each run directory given (running or completed; its
params.npz), on the run's full image grid, this prints

- dead: the fraction of φ_k's units that are zero at every pixel (ReLU units that died);
- erank: the effective rank of φ_k, exp(entropy of its centred singular values' squared
  shares) (Roy & Vetterli 2007): how many directions the next grade can combine;
  (`multigrade.metrics.feature_stats`, which `fit(tries=...)` records for every try)
- rough: mean |row difference| of φ_k over its mean deviation (fine detail per unit);

and the grade's test PSNR where the run recorded it. None of these reads the clean image
except the PSNR, so a low erank is a no-reference sign that the next grade is starved
(docs/time-to-quality.md: the seed whose grade 3 stalled).

Usage: python benchmarks/grade_features.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import jax
import numpy as np

from multigrade import runs
from multigrade.experiments import load_config
from multigrade.experiments.building import problem_for
from multigrade.metrics import feature_stats


def grade_features(run_dir: Path) -> list[dict[str, float]]:
    """Each stored grade's `feature_stats`, in order, with its test PSNR when recorded."""
    cfg = load_config(run_dir / runs.CONFIG)
    problem = problem_for(cfg)
    model = cfg.model.build(problem.out_dim)
    stored = {int(m.group(1)) for k in runs.read_npz(run_dir / runs.PARAMS)
              if (m := re.match(r"grade(\d+)/", k))}
    like = jax.eval_shape(lambda: model.init_params(jax.random.key(0), problem.in_dim))
    params, _ = runs.load_params(run_dir / runs.PARAMS, like[:len(stored)])
    summary = runs.read_summary(run_dir) if (run_dir / runs.METRICS).is_file() else None
    psnr = {g["grade"]: g["metrics"].get("test_psnr") for g in summary["grades"]} \
        if summary else {}
    x, out = problem.coords, []
    for k, p in enumerate(params, start=1):
        x = model.grade_features(p, x)
        out.append({"grade": k, **feature_stats(np.asarray(x), problem.shape[:2]),
                    "test_psnr": psnr.get(k, float("nan"))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="MGDL run directories")
    args = parser.parse_args()
    print("run | grade | dead | erank | rough | test PSNR")
    for run_dir in args.runs:
        for row in grade_features(run_dir):
            print(f"{run_dir.name} | {row['grade']} | {row['dead']:.2f} | {row['erank']:.1f} "
                  f"| {row['rough']:.4f} | {row['test_psnr']:.2f}")


if __name__ == "__main__":
    main()
