"""GD's learning rate from the spectrum (`--lr auto`) against the best fixed rate of a sweep.

For each task (synthetic setting 1 with the paper's 4 × [32] vs [32]×4; image regression
of camera with 4 × [128, 128] vs [128]×8, as in the paper's lr study) and each seed:
1. the paper's rate sweep (1e-3 … 0.5, plain GD, the same steps per grade), vmapped; the
   best fixed rate is the non-diverged one of lowest final training loss;
2. one run at that best rate (timed alone);
3. `--lr auto:c` (η = c·2/λ_max of each grade's Hessian at its start) with c = 0.5 and
   c = 1, and c = 1 with `--lower-lr` (λ_max re-estimated every 100 steps, η lowered to
   c·2/λ_max when it has risen past 2/η), each one run.

Printed in one run: per task, method and seed, the final training and test loss of each,
the rates chosen, and the seconds of each run (the auto runs include their Lanczos
estimates) and of the whole sweep. `--out F.json` keeps the numbers.

Usage: python benchmarks/lr_auto.py [--steps N] [--seeds 0,1,2] [--size 64] [--out F]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import optax

import multigrade as mg
from multigrade.analysis import StepSize
from multigrade.experiments.presets import SWEEP_RATES
from multigrade.experiments.studies import SWEEP_ARCHITECTURES


def models(task: str):
    width, grades, layers = SWEEP_ARCHITECTURES[task]
    return {"mgdl": mg.mgdl([[width] * layers] * grades, init="he"),
            "sgdl": mg.sgdl([width] * (grades * layers), init="he")}


def run(model, problem, steps, seed, **kw):
    t0 = time.perf_counter()
    r = mg.fit(model, problem, epochs=steps, key=jax.random.key(seed), record_every=10,
               **kw)
    return r, time.perf_counter() - t0


def summary(r, seconds) -> dict:
    m = r.metrics
    return {"train_loss": None if r.diverged else m["train_loss"],
            "test_loss": None if r.diverged else m.get("test_loss"),
            "seconds": seconds, "rates": [g.lr for g in r.grades],
            "lambda_max": [g.lambda_max for g in r.grades], "diverged": r.diverged}


def case(task, name, model, problem, steps, seed) -> dict:
    t0 = time.perf_counter()
    sweep = mg.fit_sweep(model, problem, SWEEP_RATES, epochs=steps,
                         key=jax.random.key(seed), record_every=10)
    sweep_s = time.perf_counter() - t0
    finals = {lr: (r.metrics["train_loss"] if not r.diverged else math.inf)
              for lr, r in zip(SWEEP_RATES, sweep)}
    best = min(finals, key=finals.get)
    fixed, fixed_s = run(model, problem, steps, seed, optimizer=optax.sgd(best))
    gd = optax.inject_hyperparams(optax.sgd)(learning_rate=best)
    out = {"task": task, "method": name, "seed": seed, "best_fixed_lr": best,
           "sweep_seconds": sweep_s, "sweep": {str(k): v for k, v in finals.items()},
           "fixed": summary(fixed, fixed_s)}
    fmt = lambda v: "diverged" if v is None else f"{v:.4g}"  # noqa: E731
    line = (f"{task:10s} {name} seed {seed}: sweep of {len(SWEEP_RATES)} rates "
            f"{sweep_s:.1f} s; best fixed η {best:g}: train {fmt(fixed.metrics['train_loss'])} "
            f"test {fmt(fixed.metrics.get('test_loss'))} {fixed_s:.1f} s")
    for label, step in VARIANTS.items():
        r, sec = run(model, problem, steps, seed, optimizer=gd, step_size=step)
        out[label] = summary(r, sec)
        rates = "/".join(f"{v:.3g}" for v in out[label]["rates"])
        line += (f"\n    {label}: η {rates}: train {fmt(out[label]['train_loss'])} test "
                 f"{fmt(out[label]['test_loss'])} {sec:.1f} s")
    print(line, flush=True)
    return out


# c = 0.5 is the default (half the stable step); c = 1 starts at the edge, 2/λ_max; with
# `lower`, λ_max is re-estimated every 100 steps and η cut to c·2/λ_max past the edge.
VARIANTS = {"auto:0.5": StepSize(c=0.5), "auto:1": StepSize(c=1.0),
            "auto:1+lower": StepSize(c=1.0, every=100, lower=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="GD steps per grade")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=64, help="image side for regression")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    jax.config.update("jax_enable_x64", False)
    problems = {"synthetic": mg.synthetic(1),
                "regression": mg.image_regression(mg.load_image("camera", size=args.size),
                                                  name="camera")}
    rows = []
    for task, problem in problems.items():
        for name, model in models(task).items():
            for seed in (int(s) for s in args.seeds.split(",")):
                rows.append(case(task, name, model, problem, args.steps, seed))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
