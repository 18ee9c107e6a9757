"""Sweeps on Dask: a 2-worker LocalCluster against the same runs one after another.

8 small runs (image regression of cameraman 64², MGDL 2 grades × [64, 64], Adam, 4 seeds ×
2 learning rates), measured in one call of this script: once with empty compilation caches
("cold": every process compiles its programs) and `--repeat` times with the caches the first
pass filled ("warm": what every later sweep or run of these shapes meets, as programs load
from JAX's persistent cache, `multigrade.compile_cache`). Each pass times:
1. the 8 runs one after another in a fresh process (`experiments.execute`, XLA's default
   threading);
2. the same 8 runs as a sweep on a new LocalCluster of 2 single-threaded worker processes,
   into a fresh directory (the cluster's start-up is timed apart);
3. the per-run scheduling overhead: the workers' wall time not spent inside the runs'
   tasks, per run;
4. the 8 runs one after another in a fresh process with the workers' settings (XLA and BLAS
   on one thread): XLA's own speed-up from 2 threads on these runs, and so the most a
   2-worker sweep can gain over the sequential runs, 2·sequential / single-threaded
   (perfect workers, no overhead).
Every process (the sequential ones and each worker) first imports what a run needs and
starts JAX (`cluster.warm_worker`), outside the timing: start-up paid once per process.

Wall times on a shared 2-core machine vary by ±10 % between identical passes, so the
summary takes the fastest of each measurement over the warm passes (noise only adds).

Target: sequential / sweep wall time ≥ 1.6 on 2 cores (the workers must not fight over
cores). The last lines are `ratio_cold=` (one pass) and `ratio=` (warm: the steady state).

Usage: python benchmarks/sweep.py [--epochs N] [--size N] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from multigrade.compile_cache import ENV as CACHE_ENV
from multigrade.experiments import ModelConfig, ProblemConfig, RunConfig, TrainConfig, execute
from multigrade.experiments.cluster import SINGLE_THREAD_ENV, local_cluster, warm_worker
from multigrade.experiments.sweep import SweepSpec, run_sweep


def spec_for(epochs: int, size: int) -> SweepSpec:
    base = RunConfig(problem=ProblemConfig(size=size),
                     model=ModelConfig(grades=2, layers_per_grade=2, width=64),
                     train=TrainConfig(epochs=epochs))
    return SweepSpec(base, {"train.seed": (0, 1, 2, 3), "train.lr": (1e-3, 3e-3)})


def sequential(args, cache: Path, env: dict | None = None) -> float:
    """The runs one after another in a fresh process (this script, `--sequential-only`)."""
    out = subprocess.run(
        [sys.executable, __file__, "--sequential-only", "--epochs", str(args.epochs),
         "--size", str(args.size)], env={**os.environ, **(env or {}), CACHE_ENV: str(cache)},
        check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1].split("=")[1])


def swept(spec: SweepSpec, where: Path, cache: Path) -> tuple[float, float, float]:
    """(cluster start-up s, sweep wall s, scheduling overhead s per run)."""
    from distributed import Client

    os.environ[CACHE_ENV] = str(cache)  # the workers inherit it
    t0 = time.perf_counter()
    cluster = local_cluster(2)
    client = Client(cluster)
    client.run(warm_worker)  # imports and JAX's start-up, paid once per worker
    start = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        out = run_sweep(spec, where, client=client)
        wall = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    n = len(out.rows)
    assert out.ran == n and all(r["status"] == "completed" for r in out.rows)
    return start, wall, (2 * wall - sum(out.task_seconds)) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000, help="epochs per grade")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--sequential-only", action="store_true",
                        help="only the runs one after another (steps 1 and 4 run this)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="warm passes (the fastest of each measurement is reported)")
    args = parser.parse_args()
    spec = spec_for(args.epochs, args.size)
    n = len(spec.expand())
    if args.sequential_only:
        warm_worker()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for i, cfg in enumerate(spec.expand()):
                execute(cfg, Path(tmp) / str(i))
            print(f"sequential={time.perf_counter() - t0:.3f}")
        return
    times: dict[str, list[tuple[float, float, float]]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, name in enumerate(["cold"] + ["warm"] * args.repeat):
            print(f"-- {name} compilation caches")
            seq = sequential(args, tmp / "cache-seq")
            print(f"{n} runs one after another in one process: {seq:.1f} s "
                  f"({seq / n:.2f} s per run)")
            start, wall, overhead = swept(spec, tmp / f"sweep-{i}", tmp / "cache-sweep")
            print(f"the same runs as a sweep on a LocalCluster of 2 worker processes: "
                  f"{wall:.1f} s (cluster start-up {start:.1f} s apart)")
            print(f"scheduling overhead per run: {overhead:.2f} s (worker wall time not in "
                  "a task)")
            single = sequential(args, tmp / "cache-single", SINGLE_THREAD_ENV)
            print(f"one after another on one thread (the workers' settings): {single:.1f} s;"
                  f" XLA's speed-up from 2 threads {single / seq:.2f}")
            times[name].append((seq, wall, single))
    for name, rows in times.items():
        seq, wall, single = (min(col) for col in zip(*rows))  # timing noise only adds
        bound = 2 * seq / single
        print(f"{name}, fastest of {len(rows)}: sequential {seq:.1f} s, sweep {wall:.1f} s, "
              f"sequential / sweep {seq / wall:.2f} (target ≥ 1.6); a 2-worker sweep gains "
              f"at most {bound:.2f} (2·sequential / one thread): {seq / wall / bound:.0%} of it")
    cold, warm = ([min(c) for c in zip(*times[k])] for k in ("cold", "warm"))
    print(f"ratio_cold={cold[0] / cold[1]:.3f}")
    print(f"ratio={warm[0] / warm[1]:.3f}")

if __name__ == "__main__":
    main()
