"""Runs a machine finishes per hour: one run on every core, or one run per core side by side.

A sweep's workers (`experiments.cluster`) each get one core, with XLA's Eigen thread pool
turned off (`--xla_cpu_multi_thread_eigen=false`, `SINGLE_THREAD_ENV`); a lone run uses
XLA's defaults on every core. Which finishes more runs an hour is measured here, on the
step that dominates the fast denoising recipe's grades: one MGDL grade [128, 128, 128, 1]
(Adam, full batch) on `--side`² coordinates. Each setting runs in fresh processes
(started, imported and compiled outside the timing), `--epochs` epochs each:

1. `all cores`: one process, XLA's defaults, every core it may use;
2. `pinned`: one process pinned to one core before JAX starts, XLA's defaults;
3. `pinned, eigen off`: as 2 with the sweep workers' environment;
4. `N pinned side by side`: one process per core at once, each as 3 (what a sweep runs);
5. `N pinned side by side, eigen on`: as 4 with XLA's defaults.

Each line gives seconds per epoch and `runs_per_hour_ratio`: the runs a setting finishes
in a given time over those of setting 1 run one after another (1.0 for setting 1; a
side-by-side setting finishes N runs at once). The last line is
`ratio=<best side-by-side setting / all cores>`: above 1, sweeps should run one run per
core; below, one run at a time.

Usage: python benchmarks/threads.py [--side 128] [--epochs 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(side: int, epochs: int, core: int | None) -> None:
    """One timed grade in this process, pinned to `core` (before JAX starts) if given;
    prints `{"spe": seconds per epoch}`."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    sys.path.insert(0, str(HERE))
    import jax
    import optax

    import multigrade as mg
    from throughput import coordinate_problem

    problem = coordinate_problem(side)
    model = mg.mgdl([[128, 128, 128]])
    kw = dict(optimizer=optax.adam(1e-3), key=jax.random.key(0), record_every=epochs)
    mg.fit(model, problem, epochs=epochs, **kw)  # compiles
    print("ready", flush=True)
    sys.stdin.readline()  # every process of a setting starts its clock together
    t0 = time.perf_counter()
    mg.fit(model, problem, epochs=epochs, **kw)
    print(json.dumps({"spe": (time.perf_counter() - t0) / epochs}), flush=True)


def setting(side: int, epochs: int, cores: list[int | None], env: dict) -> list[float]:
    """Seconds per epoch of one process per entry of `cores`, timed side by side."""
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--child", "--side", str(side), "--epochs", str(epochs),
         *([] if c is None else ["--core", str(c)])], env={**os.environ, **env},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for c in cores]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"a timing process failed (exit {p.wait()})")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    out = [json.loads(p.stdout.readline())["spe"] for p in procs]
    for p in procs:
        p.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=128, help="coordinates per side")
    parser.add_argument("--epochs", type=int, default=300, help="timed epochs per process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        child(a.side, a.epochs, a.core)
        return
    from multigrade.experiments.cluster import SINGLE_THREAD_ENV
    from multigrade.runs import cores

    mine = cores() or [0]
    n = len(mine)
    off = {k: v for k, v in SINGLE_THREAD_ENV.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    runs = [("all cores", [None], {}), ("pinned", [mine[0]], {}),
            ("pinned, eigen off", [mine[0]], off),
            (f"{n} pinned side by side", mine, off),
            (f"{n} pinned side by side, eigen on", mine, {})]
    print(f"one MGDL grade [128, 128, 128], {a.side}² coordinates, {a.epochs} epochs, "
          f"{n} cores")
    base, best = None, 0.0
    for name, where, env in runs:
        spe = setting(a.side, a.epochs, where, env)
        per_hour = len(spe) / max(spe)  # runs of one epoch finished per second, at once
        base = base or per_hour
        ratio = per_hour / base
        if len(spe) > 1:
            best = max(best, ratio)
        print(f"{name}: {' '.join(f'{s * 1e3:.2f}' for s in spe)} ms/epoch "
              f"runs_per_hour_ratio={ratio:.2f}")
    print(f"ratio={best:.2f}")


if __name__ == "__main__":
    main()
