"""Quick restoration benchmark: MGDL vs SGDL on butterfly 128×128, denoising and deblurring.

The quick preset (`multigrade.experiments.restoration_quick`): MGDL 4 grades × 3 hidden
layers vs SGDL 12 hidden layers, width 128, Adam 1e-3, the same number of epochs per grade
for both (about the same arithmetic), β = 0.1, λ = 0.01, α = 0.99 (the paper's Section 4),
noise seed 0.
Tasks: denoising at σ_n = 20/255; deblurring at σ_b = 3, σ_n = 3/255. Prints the PSNR of
the observation, of each grade, of SGDL and of the oracle-tuned classical baselines, the
seconds, and the seconds per epoch of the MGDL grades and SGDL. Then it times one epoch done
with one forward pass (ours) against the paper code's two (one for u, one for the gradient).
Last, the throughput of a restoration grade inside `fit` (grade 2 of MGDL, [128, 128×3, 1]
on 128² pixels, records every 100 epochs as in the paper) against this machine's float32
matrix-product rate, beside a regression grade of the same shape on the same number of
samples, counting 6 · samples · Σ fan_in·fan_out FLOPs per epoch (as throughput.py does).
The last line is `ratio=<restoration grade GFLOP/s / matrix-product GFLOP/s>`.

Usage: python benchmarks/restoration_quick.py [--data-dir DIR] [--epochs N] [--size N]
(the image is found in DIR, $MULTIGRADE_DATA, or ../shared/images beside the checkout).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import multigrade as mg
from multigrade.experiments import restoration_quick
from multigrade.experiments.runner import restoration_baselines
from multigrade.problems import deblurring, denoising
from multigrade.train import GradeState, make_epoch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "images"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import flops_per_epoch, matmul_gflops  # noqa: E402


def two_pass_epoch(problem, tx, feats):
    """The paper code's epoch: evaluate the network for the u update, then again inside the
    gradient of L(θ, u)."""
    def epoch(state):
        net = lambda p: mg.grade_output(p, feats)
        u = problem.update_aux(state.aux, net(state.params))
        loss, grads = jax.value_and_grad(lambda p: problem.loss(net(p), u))(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return GradeState(optax.apply_updates(state.params, updates), opt_state, u), loss
    return epoch


def time_epochs(epoch, state, n=50, repeats=3) -> float:
    run = jax.jit(lambda s: jax.lax.scan(lambda c, _: epoch(c), s, None, length=n)[0])
    jax.block_until_ready(run(state))
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(state))
        best = min(best, time.perf_counter() - t0)
    return best / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per grade")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    data_dir = args.data_dir or (SHARED if SHARED.is_dir() else None)
    clean = mg.load_image("butterfly", size=args.size, data_dir=data_dir)
    cfg = restoration_quick()
    if args.epochs:
        cfg = cfg.replace(train={"epochs": args.epochs})
    model_cfg, train_cfg = cfg.model, cfg.train
    print(f"butterfly {args.size}², MGDL {model_cfg.grades}×{model_cfg.layers_per_grade} vs "
          f"SGDL {model_cfg.grades * model_cfg.layers_per_grade} layers, width "
          f"{model_cfg.width}, {train_cfg.optimizer} {train_cfg.lr}, {train_cfg.epochs} "
          "epochs per grade")
    key = jax.random.key(0)
    tasks = {"denoise σ_n=20/255": denoising(clean, 20 / 255, key=key, name="butterfly"),
             "deblur σ_b=3, σ_n=3/255": deblurring(clean, 3, 3 / 255, key=key,
                                                   name="butterfly")}
    for name, problem in tasks.items():
        results = {m: mg.fit(dataclasses.replace(model_cfg, method=m).build(), problem,
                             optimizer=train_cfg.make_optimizer(), epochs=train_cfg.epochs,
                             key=jax.random.key(train_cfg.seed),
                             record_every=train_cfg.record_every) for m in ("mgdl", "sgdl")}
        found = restoration_baselines(problem)
        m, s = results["mgdl"], results["sgdl"]
        print(f"\n{name}: observation {problem.observed_psnr():.2f} dB")
        print("  MGDL per grade: " + ", ".join(f"{g.metrics['test_psnr']:.2f}" for g in m.grades)
              + f" dB; final {m.metrics['test_psnr']:.2f} dB in {m.seconds:.1f} s")
        print(f"  SGDL: {s.metrics['test_psnr']:.2f} dB in {s.seconds:.1f} s")
        for b in found:
            print(f"  {b.name} ({b.parameter} {b.value:.3g}): {b.psnr:.2f} dB")
        print("  s/epoch: MGDL grades " + ", ".join(f"{g.seconds_per_epoch:.4f}"
                                                   for g in m.grades)
              + f"; SGDL {s.grades[0].seconds_per_epoch:.4f}")
        ok = m.metrics["test_psnr"] > max(s.metrics["test_psnr"], problem.observed_psnr())
        print(f"  MGDL above SGDL and the observation: {ok}")

    # One forward pass per epoch (ours) against the paper code's two.
    problem = tasks["denoise σ_n=20/255"]
    tx = optax.adam(1e-3)
    for widths in ([128] * 3, [128] * 12):
        params = mg.mgdl([widths]).init_grade(key, 0, 2)
        state = GradeState(params, tx.init(params), problem.init_aux(None))
        base = jnp.zeros((problem.coords.shape[0], 1))
        ours = time_epochs(make_epoch(problem, tx, problem.coords, base, 1.0), state)
        paper = time_epochs(two_pass_epoch(problem, tx, problem.coords), state)
        print(f"epoch [2, 128×{len(widths)}, 1]: one pass {1e3 * ours:.2f} ms, two passes "
              f"{1e3 * paper:.2f} ms, saved {100 * (1 - ours / paper):.0f} %")

    # Throughput of a grade inside fit: restoration against regression, same shape.
    ref = matmul_gflops()
    print(f"\nmatmul float32 4096²: {ref:.1f} GFLOP/s")
    n = problem.coords.shape[0]
    regression = mg.Regression.from_arrays({"train": (
        problem.coords, jnp.asarray(problem.observed).reshape(n, -1))})
    flops = flops_per_epoch([128, 128, 128, 128, 1], n)
    ratios = {}
    for name, p in (("restoration (denoise)", problem), ("regression", regression)):
        spe = min(mg.fit(mg.mgdl([[128] * 3] * 2), p, optimizer=optax.adam(1e-3), epochs=400,
                         key=key, record_every=100).grades[1].seconds_per_epoch
                  for _ in range(3))
        ratios[name] = flops / spe / 1e9 / ref
        print(f"{name} grade [128, 128×3, 1], {n} samples: {1e3 * spe:.2f} ms/epoch, "
              f"{flops / spe / 1e9:.1f} GFLOP/s, {ratios[name]:.2f} of matmul")
    print(f"ratio={ratios['restoration (denoise)']:.3f}")


if __name__ == "__main__":
    main()
