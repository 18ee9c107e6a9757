"""What a finished fit says about itself, as JSON: its summary (`metrics.json`), what a
no-reference rule kept beside the oracle's choice, adaptive grades' record, and a
training recipe in words."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from multigrade.experiments.config import RunConfig
from multigrade.nn import count_params
from multigrade.runs import RunSummary
from multigrade.train import FitResult


def add_ssim(result: FitResult) -> None:
    """`test_ssim` (scikit-image's SSIM against the target or clean image) in every grade's
    metrics of an image problem."""
    from multigrade.metrics import ssim

    target = result.problem.target_image()
    if target is None:
        return
    for g, pred in zip(result.grades, result.predictions):
        image = result.problem.render(pred)
        if g.status != "diverged" and np.all(np.isfinite(image)):
            g.metrics["test_ssim"] = ssim(image, target)


def result_summary(result: FitResult) -> RunSummary:
    """The JSON-able summary of a `FitResult`: final metrics and one entry per grade."""
    return {
        "model": result.model.name, "params": count_params(result.params),
        "metrics": result.metrics, "epochs": result.epochs,
        "seconds": result.seconds, "diverged": result.diverged,
        "grades": [{**dataclasses.asdict(g), "seconds_per_epoch": g.seconds_per_epoch}
                   for g in result.grades],
        "dropped": [dataclasses.asdict(g) for g in result.dropped],
    }


def choice_summary(result: FitResult, sel) -> dict:
    """What the run kept without the clean image beside the oracle's choice, the record
    of best PSNR against the clean image over the whole run (every grade and epoch,
    dropped grades included, but not a record on a coarser grid: its PSNR is that grid's);
    `gap` = oracle − choice, in dB."""
    h, m = result.history, result.metrics
    kept = [g.epochs if g.selected_epoch is None else g.selected_epoch for g in result.grades]
    last = result.grades[-1].status if result.grades else None
    out = {**sel.describe(), "grades": len(result.grades), "epochs": kept,
           "dropped": [g.grade for g in result.dropped],
           "stopped_by": ("no gain" if result.dropped else
                          "discrepancy" if last == "selected" else
                          "diverged" if result.diverged else "budget"),
           "test_psnr": m.get("test_psnr"), "test_ssim": m.get("test_ssim")}
    psnr = np.asarray(h.get("test_psnr", []), dtype=float)
    if "coarse" in h:
        psnr = np.where(np.isfinite(np.asarray(h["coarse"], dtype=float)), np.nan, psnr)
    if psnr.size and np.isfinite(psnr).any():
        i = int(np.nanargmax(psnr))
        out["oracle"] = {"grade": int(h["grade"][i]), "epoch": int(h["epoch"][i]),
                         "test_psnr": float(psnr[i])}
        out["gap"] = float(psnr[i]) - m.get("test_psnr", np.nan)
    return out


def adaptive_summary(result: FitResult, cfg: RunConfig) -> dict | None:
    """Adaptive grades (`train.min_gain`): how many grades were kept of the most allowed,
    each grade's gain on the validation loss in dB, and why the fit stopped."""
    from multigrade.train import grade_gain

    if cfg.train.min_gain is None:
        return None
    done = [*result.grades, *result.dropped]
    gains = [None] + [grade_gain(a.metrics.get("val_loss", math.nan),
                                 b.metrics.get("val_loss", math.nan))
                      for a, b in zip(done, done[1:])]
    stopped = ("no gain" if result.dropped else "diverged" if result.diverged else
               "max grades" if len(result.grades) == cfg.model.grades else "stopped")
    return {"max_grades": cfg.model.grades, "min_gain_db": cfg.train.min_gain,
            "metric": "val_loss", "kept": len(result.grades),
            "dropped": [g.grade for g in result.dropped], "stopped_by": stopped,
            "gains_db": gains}


def recipe_words(train: Mapping, grades: int) -> str:
    """A training recipe in words, from a `[train]` table (a run's config.toml, or
    `dataclasses.asdict` of a `TrainConfig`) of a model of `grades` grades: the budgets per
    grade, the schedule, the coarse grids and the mini-batches, e.g. `epochs
    2000/2000/6000/6000, warmup-cosine, grades 1-2 on 4×, 2× coarser grids, batches of
    0.0625 of the pixels, grade 2 best of 3 tries by training loss`; SGDL's curriculum as
    `first on 4×, 2× coarser grids (3000/1000 epochs)`."""
    own = list(train.get("grade_epochs") or ())[:grades]
    budgets = own + [train.get("epochs", 0)] * (grades - len(own))
    words = ["epochs " + "/".join(map(str, dict.fromkeys(budgets) if len(set(budgets)) == 1
                                      else budgets))]
    if train.get("schedule", "constant") != "constant":
        words.append(train["schedule"])
    coarse = list(train.get("coarse") or ())
    if coarse:
        which = "grade 1 on a" if len(coarse) == 1 else f"grades 1-{len(coarse)} on"
        words.append(f"{which} {', '.join(f'{f}×' for f in coarse)} coarser grid"
                     + "s" * (len(coarse) > 1))
    stages = list(train.get("curriculum") or ())
    if stages:
        own = list(train.get("curriculum_epochs") or ())
        lead = own + [train.get("epochs", 0)] * (len(stages) - len(own))
        words.append(f"first on {', '.join(f'{f}×' for f in stages)} coarser grid"
                     + "s" * (len(stages) > 1) + f" ({'/'.join(map(str, lead))} epochs)")
    if train.get("batch") is not None:
        tile = train.get("batch_tile")
        words.append(f"batches of {train['batch']:g} of the pixels"
                     + (f" in {tile}×{tile} tiles" if tile else ""))
    tries = [(k, t) for k, t in enumerate(list(train.get("grade_tries") or ())[:grades], 1)
             if t > 1]
    if tries:
        words.append(", ".join(f"grade {k} best of {t}" for k, t in tries)
                     + (" tries by training loss" if train.get("try_rule", "loss") == "loss"
                        else " tries by their features' effective rank"))
    return ", ".join(words)
