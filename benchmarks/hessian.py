"""Cost of the spectral analysis and of vmapped learning-rate sweeps.

Measured in one run:
1. Dense Hessian + all eigenvalues (float64) of an MGDL grade [32, 32, 1] on the 1 024
   synthetic samples, of SGDL [1, 32, 32, 32, 32, 1] (3 265 parameters), and of an image
   grade [48, 48, 1] on 128×128 coordinates. Each is timed twice: the first call includes
   compilation, the second is what each later probe of a spectrum run costs.
2. `extreme_eigenvalues(k=5)` (Lanczos on Hessian-vector products) on SGDL [2, 128×8, 1]
   over the 64² training pixels of a 128² image.
3. A 6-rate GD sweep of MGDL 4 × [32] on synthetic setting 1, vmapped, against the same 6
   runs one after another.

Targets: the [32, 32, 1] grade's Hessian + eigenvalues under 1 s; the vmapped sweep at least
3× faster than the sequential runs. The last line is `ratio=<sequential s / vmapped s>`.

Usage: python benchmarks/hessian.py [--steps N]
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import multigrade as mg
from multigrade.analysis import extreme_eigenvalues, hessian_eigenvalues


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def mse(model, x, y, p):
    return 0.5 * jnp.mean((model.grade_output(p, x) - y) ** 2)


def dense_case(name, model, in_dim, x, y, key, probes: int = 3):
    """The first probe (compilation included) and the steady cost of later probes: each
    probe builds its loss anew, as `fit` does, from the same function and new arrays."""
    params = model.init_grade(key, 0, in_dim)
    loss_fn = functools.partial(mse, model)
    times = []
    for i in range(probes):
        p = jax.tree_util.tree_map(lambda a, i=i: a * (1 + 1e-3 * i), params)
        loss = jax.tree_util.Partial(loss_fn, x, y)
        (eig, _), t = timed(lambda loss=loss, p=p: hessian_eigenvalues(loss, p,
                                                                       dense_max=10**9))
        times.append(t)
    steady = float(np.median(times[1:]))
    print(f"{name}: {mg.count_params(params)} params, {x.shape[0]} samples: dense Hessian + "
          f"eigvalsh {times[0]:.3f} s first probe, {steady:.3f} s per later probe "
          f"({times[0] / steady:.1f}x); λ_max {eig[-1]:.4g}, λ_min {eig[0]:.3g}")
    return steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="GD steps per grade (sweep)")
    args = parser.parse_args()
    key = jax.random.key(0)
    data = mg.synthetic(1)
    x1, y1 = data.x["train"], data.y["train"]

    phi = jax.nn.relu(jax.random.normal(key, (1024, 32)))  # grade 1's features, in shape
    grade_s = dense_case("MGDL grade [32,32,1]", mg.mgdl([[32]] * 2, init="he"), 32, phi, y1,
                         key)
    dense_case("SGDL [1,32,32,32,32,1]", mg.sgdl([32] * 4, init="he"), 1, x1, y1, key)
    image = mg.load_image("camera", size=128)
    coords = jnp.asarray(mg.coordinate_grid(128, 128).reshape(-1, 2))
    phi48 = jax.nn.relu(jax.random.normal(key, (coords.shape[0], 48)))
    dense_case("image grade [48,48,1]", mg.mgdl([[48]] * 2, init="he"), 48, phi48,
               jnp.asarray(image.reshape(-1, 1)), key)

    problem = mg.image_regression(image)
    big = mg.sgdl([128] * 8, init="he")
    params = big.init_grade(key, 0, 2)
    loss = jax.tree_util.Partial(functools.partial(mse, big), problem.x["train"],
                                 problem.y["train"])
    (lo, hi), t = timed(lambda: extreme_eigenvalues(loss, params, 5, key=key))
    print(f"SGDL [2,128x8,1]: {mg.count_params(params)} params, Lanczos extremes (k=5, order "
          f"80) {t:.2f} s; largest {np.round(hi, 4)}, smallest {np.round(lo, 4)}")

    lrs = [1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 2e-1]
    model = mg.mgdl([[32]] * 4, init="he")
    # wall time includes each program's compilation, as a user sees it; "training" excludes it
    swept, t_vmap = timed(lambda: mg.fit_sweep(model, data, lrs, epochs=args.steps, key=key))
    runs, t_seq = timed(lambda: [mg.fit(model, data, optimizer=optax.sgd(lr),
                                        epochs=args.steps, key=key)
                                 for lr in lrs])
    train_vmap = sum(r.seconds for r in swept)
    train_seq = sum(r.seconds for r in runs)
    print(f"6-rate sweep, MGDL 4x[32], {args.steps} GD steps per grade: vmapped "
          f"{t_vmap:.2f} s wall ({train_vmap:.2f} s training), sequential {t_seq:.2f} s wall "
          f"({train_seq:.2f} s training): {t_seq / t_vmap:.2f}x wall, "
          f"{train_seq / train_vmap:.2f}x training")
    print(f"grade [32,32,1] Hessian + eigvalsh under 1 s: {grade_s < 1.0}")
    print(f"ratio={t_seq / t_vmap:.3f}")


if __name__ == "__main__":
    main()
