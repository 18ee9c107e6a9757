"""Sweeps on Dask: a 2-worker LocalCluster against the same runs one after another.

Measured in one run, on this machine:
1. 8 small runs (image regression of cameraman 64², MGDL 2 grades × [64, 64], Adam, 4 seeds ×
   2 learning rates) one after another in this process (`experiments.execute`, XLA's
   default threading);
2. the same 8 runs as a sweep on a LocalCluster of 2 single-threaded worker processes
   (the cluster's start-up is timed apart), into a fresh directory;
3. the per-run scheduling overhead: the workers' wall time not spent inside the runs'
   tasks, per run.

Target: sequential / sweep wall time ≥ 1.6 on 2 cores (the workers must not fight over
cores). The last line is `ratio=<sequential s / sweep s>`.

Usage: python benchmarks/sweep.py [--epochs N] [--size N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from multigrade.experiments import ModelConfig, ProblemConfig, RunConfig, TrainConfig, execute
from multigrade.experiments.sweep import SweepSpec, local_cluster, run_sweep, warm_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000, help="epochs per grade")
    parser.add_argument("--size", type=int, default=64, help="image side")
    args = parser.parse_args()
    base = RunConfig(problem=ProblemConfig(size=args.size),
                     model=ModelConfig(grades=2, layers_per_grade=2, width=64),
                     train=TrainConfig(epochs=args.epochs))
    spec = SweepSpec(base, {"train.seed": (0, 1, 2, 3), "train.lr": (1e-3, 3e-3)})
    configs = spec.expand()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        for i, cfg in enumerate(configs):
            execute(cfg, tmp / "seq" / str(i))
        sequential = time.perf_counter() - t0
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
    print(f"sequential / sweep: {sequential / swept:.2f} (target ≥ 1.6)")
    print(f"ratio={sequential / swept:.3f}")


if __name__ == "__main__":
    main()
