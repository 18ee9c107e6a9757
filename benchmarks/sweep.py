"""Sweeps on Dask: a 2-worker LocalCluster against the same runs one after another.

Measured in one run, on this machine:
1. 8 small runs (image regression of cameraman 64², MGDL 2 grades × [64, 64], Adam, 4 seeds ×
   2 learning rates) one after another in this process (`experiments.execute`, XLA's
   default threading);
2. the same 8 runs as a sweep on a LocalCluster of 2 single-threaded worker processes
   (the cluster's start-up is timed apart), into a fresh directory;
3. the per-run scheduling overhead: the workers' wall time not spent inside the runs'
   tasks, per run;
4. the same 8 runs one after another in a fresh process with the workers' settings (XLA
   and BLAS on one thread): XLA's own speed-up from 2 threads on these runs, and so the
   most a 2-worker sweep can gain over the 2-thread sequential runs, 2·sequential /
   single-threaded (perfect workers, no overhead).

Target: sequential / sweep wall time ≥ 1.6 on 2 cores (the workers must not fight over
cores). The last line is `ratio=<sequential s / sweep s>`.

Usage: python benchmarks/sweep.py [--epochs N] [--size N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from multigrade.experiments import ModelConfig, ProblemConfig, RunConfig, TrainConfig, execute
from multigrade.experiments.sweep import (
    SINGLE_THREAD_ENV,
    SweepSpec,
    local_cluster,
    run_sweep,
    warm_worker,
)


def one_after_another(configs, where: Path) -> float:
    t0 = time.perf_counter()
    for i, cfg in enumerate(configs):
        execute(cfg, where / str(i))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000, help="epochs per grade")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--sequential-only", action="store_true",
                        help="only the runs one after another (what step 4 runs)")
    args = parser.parse_args()
    base = RunConfig(problem=ProblemConfig(size=args.size),
                     model=ModelConfig(grades=2, layers_per_grade=2, width=64),
                     train=TrainConfig(epochs=args.epochs))
    spec = SweepSpec(base, {"train.seed": (0, 1, 2, 3), "train.lr": (1e-3, 3e-3)})
    configs = spec.expand()
    if args.sequential_only:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"sequential={one_after_another(configs, Path(tmp)):.3f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sequential = one_after_another(configs, tmp / "seq")
        print(f"{len(configs)} runs one after another in one process: {sequential:.1f} s "
              f"({sequential / len(configs):.2f} s per run)")

        from distributed import Client

        t0 = time.perf_counter()
        cluster = local_cluster(2)
        client = Client(cluster)
        client.run(warm_worker)  # imports and JAX's start-up, paid once per worker
        print(f"LocalCluster of 2 worker processes: {time.perf_counter() - t0:.1f} s to start "
              "(imports and JAX start-up included, as this process had them before timing)")
        try:
            t0 = time.perf_counter()
            out = run_sweep(spec, tmp / "sweep", client=client)
            swept = time.perf_counter() - t0
        finally:
            client.close()
            cluster.close()
    assert out.ran == len(configs) and all(r["status"] == "completed" for r in out.rows)
    overhead = (2 * swept - sum(out.task_seconds)) / len(configs)
    print(f"the same {len(configs)} runs as a sweep on 2 workers: {swept:.1f} s; inside the "
          f"tasks {sum(out.task_seconds):.1f} s of worker time")
    print(f"scheduling overhead per run: {overhead:.2f} s (worker wall time not in a task)")
    single = float(subprocess.run(
        [sys.executable, __file__, "--sequential-only", "--epochs", str(args.epochs),
         "--size", str(args.size)], env={**os.environ, **SINGLE_THREAD_ENV}, check=True,
        capture_output=True, text=True).stdout.strip().splitlines()[-1].split("=")[1])
    print(f"the same runs one after another on one thread (the workers' settings): "
          f"{single:.1f} s; XLA's speed-up from 2 threads {single / sequential:.2f}, so a "
          f"2-worker sweep gains at most {2 * sequential / single:.2f} over the sequential "
          "runs")
    print(f"sequential / sweep: {sequential / swept:.2f} (target ≥ 1.6; "
          f"{sequential / swept / (2 * sequential / single):.0%} of that bound)")
    print(f"ratio={sequential / swept:.3f}")


if __name__ == "__main__":
    main()
