"""Time to quality: PSNR against wall-clock seconds for MGDL training recipes.

The paper's headline restoration figure (butterfly 512², σ_n = 10/255, MGDL, the authors'
settings: Adam 5e-3, β 1, λ 1e-2, 4 grades × 3 layers of width 128) takes 4 × 20 000
epochs. This benchmark runs a recipe, records (wall seconds since the start, PSNR against
the clean image) at every record — compilation included, the clean image used for the
measurement only, never for a choice — and prints the minutes to given PSNR levels and
the PSNR reached at given minutes. Runs past the time limit are stopped there and
reported as cut (where a fixed budget would have stood later is not extrapolated).

Recipes (`--recipe`, several comma-separated, or all):
  fixed    the authors' budget: 20 000 epochs per grade at a constant rate.
  short    2 000 epochs per grade at a constant rate (most of each grade's gain comes in
           its first tenth: the H200 run of the issue on time to quality).
  cosine   2 000 epochs per grade, the rate decaying along each grade from 5e-3 to 5e-5
           (`--schedule cosine`; Loshchilov & Hutter 2017).
  warmup   as cosine with a linear warm-up over the first 5 % of each grade, peak 1e-2
           (`--schedule warmup-cosine`; Goyal et al. 2017).
  coarse   as cosine, grades 1 and 2 fitted on 4× and 2× coarser grids (block means of the
           observation; `--coarse 4,2`): coarse-to-fine, as in multi-resolution training of
           coordinate networks (e.g. Müller et al. 2022; Lindell et al. 2022, BACON).
  coarse-long  as coarse with 8 000 / 4 000 / 2 000 / 2 000 epochs (the coarse grades are
           cheap, so they train longer; per-grade budgets are `fit`'s, not the config's).
  coarse-constant, coarse-warmup  coarse grades with short's or warmup's rate.
  coarse-warmup-batch, coarse-warmup-batch16  coarse-warmup with grades 3 and 4 stepping on
           random mini-batches of 1/8 (8 000 steps) or 1/16 (6 000 steps) of the pixels
           (`--batch`; each step evaluates the batch's pixels and their lower and right
           neighbours, the TV split's stencil; for a blur, 32² tiles).
  coarse-warmup-batch16-t3  as coarse-warmup-batch16 with grade 2 trained from three
           starts, the try of least training loss kept (`--grade-tries 1,3`).
  coarse-warmup-batch16-g1x4  as coarse-warmup-batch16 with grade 1 (on the 4× coarser
           grid, where an epoch is cheap) trained for 8 000 epochs instead of 2 000.
  coarse-warmup-batch16-g1x4-t3  g1x4 with grade 2 trained from three starts, the try of
           least training loss kept (`--grade-tries 1,3`): grade 2's starts spread far on
           some seed pairs (training loss 151 against 78), and a poor one starves grades 3-4.
  coarse-warmup-batch16-g1x4-t3-x2  g1x4-t3 with the full-grid grades 3 and 4 twice as
           long (12 000 steps each): on the same grades 1-2 (benchmarks/later_grades.py)
           the final rose from 30.52 to 31.41 dB on a low pair.
  coarse-warmup-batch16-g1x4-t3r  g1x4-t3 keeping the try whose features have the highest
           effective rank instead of the least loss (`--try-rule erank`): a grade 2 of
           rank 5.8 starved grades 3-4, and the rank ordered four runs' finals where the
           loss, which carries the observation's noise, did not.
  coarse-warmup-batch16-g1x4-t16  as coarse-warmup-batch16-g1x4 with grades 3 and 4's
           mini-batches drawn as 16 × 16 tiles (`--batch-tile 16`: 2.4× faster a step).
  coarse3-warmup-long  for deblurring: grades 1, 2 and 3 on the 4×, 2× and 2× coarser grids
           for 8 000 / 4 000 / 4 000 epochs, grade 4 on the image's grid for 1 500 (a blur
           of σ_b = 3 leaves almost nothing above the 2× coarser grid's Nyquist frequency:
           its transfer there is exp(-2π²σ_b²/16) ≈ 1.5e-5).
  best     the fast scale's recipe (presets.FAST): for denoising g1x4-t3-x2, the one that
           has held over seeds at 512² so far (docs/time-to-quality.md; until 2026-12-07
           coarse-warmup-batch16, the fastest to the paper's figure on its first seeds and
           under 30.5 dB on two of seven pairs; at 128² coarse-warmup is as fast). For deblurring
           best is coarse3-warmup-long (docs/results-fast.md: 26.39 dB against
           coarse-warmup's 25.12 at the same one-core time). A deblurring recipe's
           mini-batches are 32² tiles of the blurred image, each computed exactly from its
           window (the tile grown by the blur's reach; multigrade.problems.tiles).

`--experiment` picks the restoration experiment (default denoise-butterfly-10; e.g.
denoise-male-10, deblur-butterfly-3), at `--size`. `--equal-time` gives every recipe after
the first the wall time the first one took (e.g. `--recipe best,fixed --equal-time`: the
fixed budget at the recipe's time).

Prints one table, then `minutes_to_target=<recipe>:<minutes or missed>` per recipe, the
peak resident memory and the machine's float32 matrix-product rate as this process gets it
(`matmul_gflops=`, measured before the runs; minutes of unlike machines compare through
it: the 2-core machines of docs/results-fast.md read 127 and 383-415). `--json FILE`
keeps the curves; `--plot FILE` draws PSNR against minutes, one line per recipe.

Usage:
  python benchmarks/time_to_quality.py --recipe best --size 512 --minutes 60
  python benchmarks/time_to_quality.py --quick     # 128², fixed and best, 3 minutes each
  python benchmarks/time_to_quality.py --experiment deblur-butterfly-3 --size 256 \
      --recipe best,fixed --equal-time
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import jax
import numpy as np

import multigrade as mg
from multigrade import runs
from multigrade.experiments.optimizers import make_optimizer
from multigrade.experiments.presets import EXPERIMENTS
from multigrade.experiments.reproduce import experiment_config
from multigrade.experiments.runner import grade_problems, problem_for
from multigrade.metrics import psnr
from multigrade.train import Callback, FitInterrupted

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import matmul_gflops  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "images"
_WARM = {"schedule": "warmup-cosine", "lr": 1e-2}  # warm-up to 1e-2, then cosine
_B16 = {**_WARM, "coarse": (4, 2), "batch": 0.0625, "epochs": (2000, 2000, 6000, 6000)}
_G1X4 = {**_B16, "epochs": (8000, 2000, 6000, 6000)}
_G1X4_T3 = {**_G1X4, "grade_tries": (1, 3)}
RECIPES = {  # train-section overrides of the authors' paper-scale denoising preset
    "fixed": {"epochs": 20_000},
    "short": {"epochs": 2000},
    "cosine": {"epochs": 2000, "schedule": "cosine"},
    "warmup": {**_WARM, "epochs": 2000},
    "coarse": {"epochs": 2000, "schedule": "cosine", "coarse": (4, 2)},
    "coarse-long": {"epochs": (8000, 4000, 2000, 2000), "schedule": "cosine",
                    "coarse": (4, 2)},
    "coarse-constant": {"epochs": 2000, "coarse": (4, 2)},
    "coarse-warmup": {**_WARM, "epochs": 2000, "coarse": (4, 2)},
    "coarse-warmup-batch": {**_B16, "epochs": (2000, 2000, 8000, 8000), "batch": 0.125},
    "coarse-warmup-batch16": _B16,
    "coarse-warmup-batch16-t3": {**_B16, "grade_tries": (1, 3)},
    "coarse-warmup-batch16-g1x4": _G1X4,
    "coarse-warmup-batch16-g1x4-t3": _G1X4_T3,
    "coarse-warmup-batch16-g1x4-t3-x2": {**_G1X4_T3, "epochs": (8000, 2000, 12000, 12000)},
    "coarse-warmup-batch16-g1x4-t3r": {**_G1X4_T3, "try_rule": "erank"},
    "coarse-warmup-batch16-g1x4-t16": {**_G1X4, "batch_tile": 16},
    "coarse3-warmup-long": {**_WARM, "epochs": (8000, 4000, 4000, 1500), "coarse": (4, 2, 2)},
}
BEST = {"denoise": "coarse-warmup-batch16-g1x4-t3-x2", "deblur": "coarse3-warmup-long"}


class Curve(Callback):
    """(wall seconds, grade, epoch, test PSNR on the full grid) at every record; asks the
    fit to stop at the time limit. A grade fitted on a coarser grid records PSNR on that
    grid, which is another quantity: its records are left out, and its full-grid PSNR is
    measured when it ends (that measurement's time is not counted)."""

    def __init__(self, limit_s: float, model, full, coarse: set[int]):
        self.t0, self.limit_s, self.points = time.perf_counter(), limit_s, []
        self.model, self.full, self.coarse, self.paused = model, full, coarse, 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0 - self.paused

    def on_records(self, grade, rows):
        if grade not in self.coarse:
            now = self.now()
            self.points += [(now, grade, int(r["epoch"]), float(r["test_psnr"]))
                            for r in rows]

    def on_grade_end(self, checkpoint):
        grade = checkpoint.finished
        if grade in self.coarse:
            now, t = self.now(), time.perf_counter()
            pred = self.model.predict(checkpoint.params, self.full.coords, checkpoint.scales)
            value = psnr(np.asarray(pred).reshape(self.full.shape), np.asarray(self.full.clean))
            self.points.append((now, grade, checkpoint.grades[-1].epochs, float(value)))
            self.paused += time.perf_counter() - t

    def stop_requested(self) -> bool:
        return self.now() >= self.limit_s


def recipe_config(recipe: str, size: int, sigma: float | None, data_dir: str | None,
                  seed: int = 0, experiment: str = "denoise-butterfly-10",
                  noise_seed: int = 0):
    """The authors' MGDL config of a restoration experiment at `size` (and noise `sigma`,
    if given), with the recipe's training (a per-grade budget is passed to `fit` beside
    it: `epochs` below)."""
    cfg = experiment_config(EXPERIMENTS[experiment], "paper", data_dir)
    noise = {} if sigma is None else {"sigma" if cfg.problem.task == "denoise" else "noise":
                                      sigma}
    cfg = cfg.replace(problem={"size": size, "noise_seed": noise_seed, **noise})
    cfg = cfg.for_method("mgdl")
    train = dict(RECIPES[recipe])
    epochs = train["epochs"]
    train["epochs"] = epochs if isinstance(epochs, int) else max(epochs)
    cfg = cfg.replace(train={"record_every": 100, "checkpoint_every": 100_000, "seed": seed,
                             **train})
    return cfg, [epochs] * cfg.model.grades if isinstance(epochs, int) else list(epochs)


def run(recipe: str, size: int, sigma: float | None, minutes: float, data_dir: str | None,
        seed: int = 0, experiment: str = "denoise-butterfly-10", noise_seed: int = 0) -> dict:
    t = time.perf_counter()
    cfg, epochs = recipe_config(recipe, size, sigma, data_dir, seed, experiment, noise_seed)
    problem = problem_for(cfg)
    model = cfg.model.build(problem.out_dim)
    curve = Curve(60 * minutes, model, problem, set(range(1, len(cfg.train.coarse) + 1)))
    curve.t0 = t  # image load and noise counted in the time
    tr = cfg.train
    cut = False
    try:
        mg.fit(model, grade_problems(problem, cfg, model.num_grades),
               optimizer=[make_optimizer(tr.optimizer, tr.lr, tr.schedule,
                                         None if tr.schedule == "constant" else e)
                          for e in epochs],
               epochs=epochs, key=jax.random.key(tr.seed), record_every=tr.record_every,
               window=1, callbacks=[curve], tries=tr.tries(model.num_grades),
               try_rule=tr.try_rule)
    except FitInterrupted:
        cut = True
    p = cfg.problem
    return {"recipe": recipe, "experiment": experiment, "image": p.image, "task": p.task,
            "size": size, "sigma": p.sigma if p.task == "denoise" else p.noise,
            "blur_sigma": p.blur_sigma if p.task == "deblur" else None,
            "minutes": minutes, "cut": cut, "seed": seed, "noise_seed": noise_seed,
            "wall_minutes": curve.now() / 60,  # as the curve counts it
            "environment": runs.environment(),  # the CPU and cores its minutes are on
            "train": {"optimizer": tr.optimizer, "lr": tr.lr, "epochs": epochs,
                      "schedule": tr.schedule, "coarse": list(tr.coarse), "batch": tr.batch,
                      "grade_tries": list(tr.grade_tries), "try_rule": tr.try_rule,
                      "record_every": tr.record_every},
            "points": curve.points}


def minutes_to(points, level: float) -> float | None:
    for s, _, _, value in points:
        if value >= level:
            return s / 60
    return None


def psnr_at(points, minutes: float) -> float | None:
    before = [p for s, _, _, p in points if s <= 60 * minutes]
    return before[-1] if before else None


def table(results: list[dict], levels, times) -> str:
    head = ["recipe", *(f"min to {v:g} dB" for v in levels),
            *(f"dB at {t:g} min" for t in times), "last (grade, epoch, dB, min)", "cut"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        pts = r["points"]
        to = [minutes_to(pts, v) for v in levels]
        at = [psnr_at(pts, t) for t in times]
        last = pts[-1] if pts else None
        lines.append("| " + " | ".join([
            r["recipe"], *("-" if m is None else f"{m:.1f}" for m in to),
            *("-" if p is None else f"{p:.2f}" for p in at),
            "-" if last is None else f"{last[1]}, {last[2]}, {last[3]:.2f}, {last[0] / 60:.1f}",
            "yes" if r["cut"] else "no"]) + " |")
    return "\n".join(lines)


def describe(r: dict) -> str:
    what = (f"denoising, σ_n {r['sigma']:g}/255" if r["task"] == "denoise" else
            f"deblurring, σ_b {r['blur_sigma']:g}, σ_n {r['sigma']:g}/255")
    return f"{r['image']} {r['size']}², {what}"


def plot(results: list[dict], path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        pts = r["points"]
        ax.plot([p[0] / 60 for p in pts], [p[3] for p in pts], label=r["recipe"])
    ax.axhline(target, color="gray", ls=":", lw=1, label=f"target {target:g} dB")
    ax.set(xlabel="wall minutes (compilation included)", ylabel="test PSNR (dB)",
           title=f"MGDL, {describe(results[0])}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="best", help="comma-separated: "
                    f"{', '.join([*RECIPES, 'best'])}, or all")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--experiment", default="denoise-butterfly-10",
                    help="a restoration experiment (`mgdl reproduce --list`)")
    ap.add_argument("--sigma", type=float, default=None,
                    help="noise σ_n in 1/255 units (default: the experiment's)")
    ap.add_argument("--minutes", type=float, default=60.0, help="time limit per recipe")
    ap.add_argument("--equal-time", action="store_true",
                    help="every recipe after the first gets the first one's wall time")
    ap.add_argument("--target", type=float, default=31.0)
    ap.add_argument("--levels", default="28,30,31")
    ap.add_argument("--at", default="5,15,60", help="minutes to report the PSNR at")
    ap.add_argument("--quick", action="store_true",
                    help="128², fixed and best, 3 minutes each (unless given)")
    ap.add_argument("--seed", type=int, default=0, help="initialisation (and mini-batch) seed")
    ap.add_argument("--noise-seed", type=int, default=0, help="the observation's noise seed")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args(argv)
    given = set(sys.argv[1:] if argv is None else argv)
    if a.quick:
        a.size = a.size if "--size" in given else 128
        a.minutes = a.minutes if "--minutes" in given else 3.0
        a.recipe = a.recipe if "--recipe" in given else "fixed,best"
        a.target = a.target if "--target" in given else 28.0
        a.at = a.at if "--at" in given else "1,2,3"
    experiment = EXPERIMENTS.get(a.experiment)
    if experiment is None or experiment.group not in BEST:
        ap.error(f"--experiment: a denoising or deblurring experiment, got {a.experiment!r}")
    best = BEST[experiment.group]
    names = [*RECIPES] if a.recipe == "all" else [
        best if n.strip() == "best" else n.strip() for n in a.recipe.split(",")]
    bad = [n for n in names if n not in RECIPES]
    if bad or a.size < 8 or not (a.minutes > 0 and math.isfinite(a.minutes)):
        ap.error(f"unknown recipe {bad[0]!r}" if bad else "--size ≥ 8 and --minutes > 0")
    data_dir = a.data_dir or (str(SHARED) if SHARED.is_dir() else None)
    levels = [float(v) for v in a.levels.split(",")]
    times = [float(v) for v in a.at.split(",")]
    results, minutes = [], a.minutes
    # the machine's matrix-product rate, as this process gets it (one core under taskset):
    # minutes compare between machines only through it (docs/results-fast.md)
    rate = matmul_gflops(2048, 5)
    for name in dict.fromkeys(names):
        print(f"{name}: up to {minutes:g} min, {a.experiment} at {a.size}²", file=sys.stderr)
        results.append(run(name, a.size, a.sigma, minutes, data_dir, a.seed, a.experiment,
                           a.noise_seed))
        results[-1]["environment"]["matmul_gflops"] = rate
        if a.equal_time and len(results) == 1:
            minutes = min(a.minutes, results[0]["wall_minutes"])
    print(f"{describe(results[0])}, MGDL (authors' settings but the recipe's training), "
          f"{jax.default_backend()}, {jax.device_count()} device(s), "
          f"{results[0]['environment']['cpu']}, {results[0]['environment']['cores']} core(s)"
          + (f"; recipes after the first cut at its {minutes:.1f} min" if a.equal_time else ""))
    print(table(results, levels, times))
    for r in results:
        m = minutes_to(r["points"], a.target)
        print(f"minutes_to_target={r['recipe']}:{'missed' if m is None else f'{m:.1f}'}"
              f" (target {a.target:g} dB)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peak_rss_mib={rss:.0f}")
    print(f"matmul_gflops={rate:.1f} (float32 2048², this process's cores)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    if a.plot:
        plot(results, a.plot, a.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
