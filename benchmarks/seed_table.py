"""A seed table of finished restoration runs, as docs/time-to-quality.md keeps them.

Reads each run directory (a `mgdl fit` run, or every run of a sweep's store) and prints
one Markdown row per run: its seeds, the PSNR after each grade, the final PSNR, each
try's training loss for a grade trained from several starts with the try kept and the
try leading at a quarter of the epochs (what a race would keep), the training minutes
and the CPU; then the count, the mean ± sample standard deviation, the least run, and how
many runs reach `--bar` (issue 30: every run ≥ 30.5 dB, the mean ≥ 31.0). The row is the
sweep's (`experiments.sweep.run_row`), so the table is the same from a sweep's store or
from runs made one by one.

Usage:
  python benchmarks/seed_table.py runs/seeds-g1x4-t3-x2 runs/r1-0 runs/r5-0
  python benchmarks/seed_table.py RUN_DIR ... --bar 30.5 --target 31.0
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from multigrade import runs
from multigrade.experiments import load_config
from multigrade.experiments.sweep import run_row


def run_dirs(paths: list[Path]) -> list[Path]:
    """The finished run directories among `paths` and their subfolders (a sweep's store
    holds its runs one level down), in name order; unfinished ones are left out."""
    found = []
    for p in paths:
        for d in [p, *sorted(q for q in p.iterdir() if q.is_dir())] if p.is_dir() else [p]:
            if (d / runs.METRICS).is_file():
                found.append(d)
    return found


def table_row(run_dir: Path) -> dict:
    """What the table shows of one run: its seeds, the row `mgdl sweep` keeps, the grades'
    PSNR in order."""
    cfg = load_config(run_dir)
    row = run_row(run_dir)
    grades, k = [], 1
    while f"grade{k}_test_psnr" in row:
        grades.append(row[f"grade{k}_test_psnr"])
        k += 1
    return {"seed": cfg.train.seed, "noise_seed": getattr(cfg.problem, "noise_seed", None),
            "grades": grades, "final": row.get("test_psnr"), "row": row}


def markdown(rows: list[dict]) -> list[str]:
    tried = sorted({int(n[5:-6]) for r in rows for n in r["row"]
                    if n.startswith("grade") and n.endswith("_tries")})
    head = ["init / noise", "grades (dB)", "final", *[
        f"grade {k}'s tries (loss), kept, lead at ¼" for k in tried], "minutes", "cpu"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        row = r["row"]
        cells = [f"{r['seed']} / {r['noise_seed']}",
                 " / ".join(f"{v:.2f}" for v in r["grades"]), _db(r["final"])]
        for k in tried:
            losses = row.get(f"grade{k}_tries")
            cells.append("-" if losses is None else
                         f"{', '.join(losses.split())}; try {row[f'grade{k}_kept_try']}; "
                         f"try {row.get(f'grade{k}_lead_at_quarter', '?')}")
        cells += [f"{row['seconds'] / 60:.1f}", str(row.get("cpu") or "-")]
        out.append("| " + " | ".join(cells) + " |")
    return out


def summary(finals: list[float], bar: float, target: float) -> str:
    """Count, mean ± sample std, least, and the runs at or over `bar`."""
    v = np.asarray(finals, dtype=float)
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    mean = float(v.mean())
    return (f"{v.size} run{'s' if v.size > 1 else ''}: {mean:.2f} ± {std:.2f} dB (mean ± "
            f"sample std), least {v.min():.2f}; {int((v >= bar).sum())} of {v.size} at or "
            f"over {bar:g} dB; the mean is "
            f"{'at or over' if mean >= target else 'under'} {target:g} dB")


def _db(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", type=Path, nargs="+", help="run directories or sweep stores")
    ap.add_argument("--bar", type=float, default=30.5, help="every run's floor (dB)")
    ap.add_argument("--target", type=float, default=31.0, help="the mean's target (dB)")
    a = ap.parse_args(argv)
    missing = [str(p) for p in a.paths if not p.exists()]
    if missing:
        ap.error(f"no such run directory: {', '.join(missing)}")
    dirs = run_dirs(a.paths)
    if not dirs:
        print("seed_table.py: no finished run (metrics.json) under "
              f"{', '.join(map(str, a.paths))}", file=sys.stderr)
        return 1
    rows = [table_row(d) for d in dirs]
    print("\n".join(markdown(rows)))
    finals = [r["final"] for r in rows if r["final"] is not None]
    if finals:
        print()
        print(summary(finals, a.bar, a.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
