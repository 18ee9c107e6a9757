"""Training throughput of `fit` against this machine's matrix-product rate.

Measured in one run, on whatever JAX backend is installed:
1. GFLOP/s of a jitted float32 4096² matrix product (the machine's reference rate).
2. Seconds per epoch and GFLOP/s of training one MGDL grade [128, 128, 128, 1] and SGDL
   [2, 128×8, 1] on 128×128 coordinates (16 384 samples, full batch, Adam), counting
   6 × samples × Σ fan_in·fan_out FLOPs per epoch (forward 2, backward 4).
3. One grade at 64², 128² and 256² samples: the exponent of time against pixel count.
4. A 4-grade MGDL: seconds per epoch of every grade (grades 2..4 should cost the same,
   since frozen grades are cached, not recomputed).
5. The run store's checkpoints (parameters, optimiser state, history, status; atomic, with
   fsync) of the MGDL grade and of SGDL: seconds per write, against the training time
   between two checkpoints at the default interval (`TrainConfig.checkpoint_every`).
   Target: at most 0.02.

The last line is `ratio=<MGDL-grade GFLOP/s / matrix-product GFLOP/s>`.

Usage: python benchmarks/throughput.py [--epochs N]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import multigrade as mg


def matmul_gflops(n: int = 4096, repeats: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / np.median(times) / 1e9


def coordinate_problem(side: int) -> mg.Regression:
    """Every pixel of a side×side image as training data (no validation split)."""
    image = mg.load_image("camera", size=side)
    x = mg.coordinate_grid(side, side).reshape(-1, 2)
    return mg.Regression.from_arrays({"train": (x, image.reshape(-1))})


def flops_per_epoch(sizes: list[int], samples: int) -> float:
    return 6.0 * samples * sum(m * n for m, n in zip(sizes[:-1], sizes[1:]))


def grade_seconds_per_epoch(model, problem, epochs: int, repeats: int = 3) -> list[float]:
    """Seconds per epoch of each grade, the fastest of `repeats` runs (this machine's timings
    vary by ±10 % from run to run; the minimum is the least disturbed)."""
    runs = []
    for _ in range(repeats):
        result = mg.fit(model, problem, optimizer=optax.adam(1e-3), epochs=epochs,
                        key=jax.random.key(0), record_every=50)
        runs.append([g.seconds_per_epoch for g in result.grades])
    return list(np.min(runs, axis=0))


def checkpoint_cost(model, problem, spe: float, every: int, epochs: int = 400) -> float:
    """Seconds per checkpoint write of the run store (measured around the writes, over
    `epochs // 100` checkpoints), over the training time of `every` epochs of `spe` s."""
    import tempfile
    from pathlib import Path

    from multigrade import runs
    from multigrade.experiments import runner

    class Timed(runner._Recorder):
        writes: list[float] = []

        def on_checkpoint(self, checkpoint):
            t0 = time.perf_counter()
            super().on_checkpoint(checkpoint)
            self.writes.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        out = runs.prepare(Path(tmp) / "run")
        rec = Timed(out, runner._StopFlag(), None)
        mg.fit(model, problem, optimizer=optax.adam(1e-3), epochs=epochs,
               key=jax.random.key(0), record_every=10, checkpoint_every=100, callbacks=[rec])
        size = (out / runs.CHECKPOINT).stat().st_size
    write = float(np.median(rec.writes))
    ratio = write / (every * spe)
    print(f"  {model.name} {model.grades}: checkpoint {size / 2**20:.2f} MiB, "
          f"{1e3 * write:.1f} ms per write; every {every} epochs of {1e3 * spe:.2f} ms: "
          f"{ratio:.4f} of training")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400, help="epochs per timed grade")
    args = parser.parse_args()
    epochs = args.epochs
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")

    ref = matmul_gflops()
    print(f"matmul float32 4096²: {ref:.1f} GFLOP/s")

    problem = coordinate_problem(128)
    n = problem.x["train"].shape[0]
    # Grade 2 of a 2-grade MGDL is the [128, 128, 128, 1] grade (its input is grade 1's
    # 128 features); grade 1 [2, 128, 1] is cheap.
    spe = grade_seconds_per_epoch(mg.mgdl([[128], [128, 128]]), problem, epochs)[1]
    g_flops = flops_per_epoch([128, 128, 128, 1], n) / spe / 1e9
    print(f"MGDL grade [128,128,128,1], {n} samples: {1e3 * spe:.2f} ms/epoch, "
          f"{g_flops:.1f} GFLOP/s, {g_flops / ref:.2f} of matmul")
    spe_s = grade_seconds_per_epoch(mg.sgdl([128] * 8), problem, max(50, epochs // 200 * 50))[0]
    s_flops = flops_per_epoch([2, *[128] * 8, 1], n) / spe_s / 1e9
    print(f"SGDL [2,128x8,1], {n} samples: {1e3 * spe_s:.2f} ms/epoch, "
          f"{s_flops:.1f} GFLOP/s, {s_flops / ref:.2f} of matmul")

    sides, times = [64, 128, 256], []
    for side in sides:
        p = coordinate_problem(side)
        times.append(grade_seconds_per_epoch(mg.mgdl([[128], [128, 128]]), p,
                                             max(50, epochs * 64 // side // 50 * 50))[1])
        print(f"grade [128,128,128,1] at {side}² = {side * side} samples: "
              f"{1e3 * times[-1]:.2f} ms/epoch")
    exponent = np.polyfit(np.log([s * s for s in sides]), np.log(times), 1)[0]
    print(f"time ∝ pixels^{exponent:.3f} (target ≤ 1.05)")

    per_grade = grade_seconds_per_epoch(mg.mgdl([[128, 128]] * 4), problem, epochs)
    print("4-grade MGDL [128,128] per grade, ms/epoch: "
          + ", ".join(f"{1e3 * s:.2f}" for s in per_grade)
          + f"; grade 4 / grade 2 = {per_grade[3] / per_grade[1]:.3f}")
    from multigrade.experiments import TrainConfig

    every = TrainConfig().checkpoint_every
    print(f"checkpoint cost at the default interval ({every} epochs):")
    cost = max(checkpoint_cost(mg.mgdl([[128], [128, 128]]), problem, spe, every),
               checkpoint_cost(mg.sgdl([128] * 8), problem, spe_s, every))
    print(f"checkpointing / training time, worst case: {cost:.4f} (target ≤ 0.02)")
    print(f"ratio={g_flops / ref:.3f}")


if __name__ == "__main__":
    main()
