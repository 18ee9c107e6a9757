"""The paper's claims, measured from run directories, and the verdict rule.

A claim compares MGDL with another method over seeds. The verdict is

- "holds" when MGDL's mean is better than the other's by more than the spread,
- "does not hold" when it is worse by more than the spread,
- "inconclusive" otherwise (the difference lies within the spread),

where the spread is sqrt(s_a² + s_b²), each s the sample standard deviation over seeds.
One seed has no spread, so it gives "inconclusive" whatever the difference: a verdict
needs `--seeds 2` or more. Nothing in the rule is tuned to agree with the paper.

The measures, each read from the files a run leaves (`read_*`):

1. fit: the final test PSNR (or the final training loss, for the synthetic MSDL study);
2. learning-rate robustness: the largest learning rate whose GD run converged;
3. GD stability: the fraction of Hessian probes at which an eigenvalue of I − ηH falls
   below −1 (η·λ_max(H) > 2: the learning rate's instability; eigenvalues above 1 come
   from negative curvature, which GD escapes, and are reported beside it, not counted);
4. conditioning: over the Hessian's dominant eigenvalues (the largest, holding 99 % of the
   sum of the positive eigenvalues, so that the many near-zero eigenvalues of dead ReLUs
   and flat directions do not swamp it), κ = λ_max / λ_min and the spread
   λ_max / λ_median, each the median over probes (dense spectra only);
5. speed: the wall time MGDL takes to reach SGDL's final PSNR (the test PSNR; for
   regression the validation PSNR, which is what the history records), against SGDL's
   total time (FLOPs are reported beside it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from multigrade import runs

CLAIMS = {
    1: "MGDL fits better than SGDL (higher PSNR; lower loss for the synthetic MSDL study)",
    2: "GD on MGDL is stable at larger learning rates than on SGDL",
    3: "the eigenvalues of I − ηH stay in [−1, 1] for MGDL where SGDL's leave",
    4: "MGDL's Hessians are better conditioned than SGDL's",
    5: "MGDL converges faster: reaches SGDL's final PSNR in less time",
}
VERDICTS = ("holds", "does not hold", "inconclusive")
MASS = 0.99  # claim 4: the dominant eigenvalues hold this share of the positive spectrum


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A claim's verdict over seeds: the verdict word, both methods' mean, MGDL's
    advantage, its spread over seeds and the number of seeds."""
    verdict: str
    mgdl_mean: float
    other_mean: float
    difference: float  # MGDL's advantage (positive: MGDL better)
    spread: float
    n: int


def _stats(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    with np.errstate(invalid="ignore"):  # infinite values (never reached): no spread
        std = float(np.std(a, ddof=1)) if a.size > 1 and np.ptp(a) > 0 else 0.0
    return float(np.mean(a)), std if math.isfinite(std) else 0.0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return _stats(values)


def verdict(mgdl: Sequence[float], other: Sequence[float], *, higher_is_better: bool
            ) -> Verdict:
    """Compares MGDL's values (one per seed) with another method's."""
    (ma, sa), (mb, sb) = _stats(mgdl), _stats(other)
    n = min(len(mgdl), len(other))
    if n == 0 or math.isnan(ma) or math.isnan(mb):
        return Verdict("inconclusive", ma, mb, math.nan, math.nan, n)
    diff = (ma - mb) if higher_is_better else (mb - ma)
    if math.isinf(ma) and math.isinf(mb) and ma == mb:
        diff = 0.0
    spread = math.hypot(sa, sb)
    if n < 2 or math.isnan(diff) or abs(diff) <= spread:
        word = "inconclusive"
    else:
        word = "holds" if diff > 0 else "does not hold"
    return Verdict(word, ma, mb, diff, spread, n)


# ---------------------------------------------------------------------------------------
# Reading the measures from run directories


def read_compare(run_dir: str | Path) -> dict:
    """A comparison directory's final PSNRs, per-grade PSNRs, seconds, the observation's
    and the baselines' PSNR, and claim 5's time (and FLOPs) to reach SGDL's final PSNR."""
    run_dir = Path(run_dir)
    comp = runs.read_json(run_dir / "comparison.json")
    out = {m: {"test_psnr": s["metrics"].get("test_psnr"),
               "train_loss": s["metrics"].get("train_loss"),
               "seconds": s["seconds"],
               "grades": [g["metrics"].get("test_psnr") for g in s["grades"]]}
           for m, s in comp.items()}
    problem = runs.read_summary(run_dir / "mgdl").get("problem", {})
    out["observed_psnr"] = problem.get("observed_psnr")
    if (run_dir / "baselines.json").is_file():
        out["baselines"] = {b["name"]: b["test_psnr"]
                            for b in runs.read_json(run_dir / "baselines.json")}
    curve = timeline(run_dir / "mgdl")
    key = psnr_key(curve)
    target = comp["sgdl"]["metrics"].get(key)
    out["mgdl"]["psnr_tracked"] = key
    reach = [i for i, p in enumerate(curve.get(key, [])) if target is not None and p >= target]
    out["mgdl"]["seconds_to_sgdl"] = curve["seconds"][reach[0]] if reach else math.inf
    out["mgdl"]["flops_to_sgdl"] = curve["flops"][reach[0]] if reach else math.inf
    out["sgdl"]["flops"] = timeline(run_dir / "sgdl")["flops"][-1]
    return out


def psnr_key(history: dict) -> str | None:
    """The PSNR a history records every few epochs: the test PSNR (restoration: against the
    clean image) or, where the test split is only scored at the end (regression), the
    validation PSNR."""
    return next((k for k in ("test_psnr", "val_psnr") if k in history), None)


def timeline(run_dir: str | Path) -> dict[str, np.ndarray]:
    """A run's records against wall time and FLOPs: each grade's seconds spread evenly over
    its epochs (the seconds per epoch are constant within a grade), and 6 · samples ·
    Σ fan_in·fan_out FLOPs per epoch of the grade being trained (frozen grades are cached,
    not recomputed)."""
    run_dir = Path(run_dir)
    h = runs.read_history(run_dir / runs.HISTORY)
    metrics = runs.read_summary(run_dir)
    params = runs.read_npz(run_dir / runs.PARAMS)
    dropped = runs.read_npz(run_dir / runs.DROPPED) if (run_dir / runs.DROPPED).is_file() \
        else {}
    samples = _samples(metrics)
    seconds, flops = np.zeros(len(h["step"])), np.zeros(len(h["step"]))
    t0 = f0 = 0.0
    # every grade trained, in order: the kept ones, then those a rule dropped (trained
    # after them; their parameters are in dropped.npz, numbered from 1 there)
    trained = [(g, params, g["grade"]) for g in metrics["grades"]] + \
        [(g, dropped, i) for i, g in enumerate(metrics.get("dropped", []), start=1)]
    for g, store, stored_as in trained:
        sel = h["grade"] == g["grade"]
        weights = sum(a.size for n, a in store.items()
                      if n.startswith(f"grade{stored_as}/") and a.ndim == 2)
        per_epoch = 6.0 * samples * weights
        seconds[sel] = t0 + h["epoch"][sel] * g["seconds"] / max(g["epochs"], 1)
        flops[sel] = f0 + h["epoch"][sel] * per_epoch
        t0 += g["seconds"]
        f0 += g["epochs"] * per_epoch
    return {**h, "seconds": seconds, "flops": flops}


def _samples(metrics: dict) -> int:
    problem = metrics.get("problem", {})
    if "splits" not in problem:  # restoration: one sample per pixel
        return int(problem["shape"][0] * problem["shape"][1])
    return int(problem["splits"]["train"][0])


def read_sweep(run_dir: str | Path) -> dict:
    """A learning-rate sweep's largest stable rate per method (0 when none converged)."""
    sweep = runs.read_json(Path(run_dir) / "sweep.json")
    return {m: {"largest_stable_lr": v or 0.0} for m, v in sweep["largest_stable_lr"].items()}


def condition_numbers(eigenvalues: np.ndarray, mass: float = MASS) -> tuple[float, float]:
    """(κ, spread) of a Hessian spectrum over its dominant eigenvalues: the largest positive
    eigenvalues that together hold `mass` of the positive eigenvalues' sum. κ is λ_max over
    the smallest of them, the spread λ_max over their median. Near-zero eigenvalues (dead
    ReLUs, flat directions: most of a network's spectrum) hold almost none of the mass,
    so they cannot swamp either figure, and no absolute threshold is needed."""
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    pos = lam[lam > 0]
    if not pos.size:
        return math.nan, math.nan
    k = int(np.searchsorted(np.cumsum(pos) / pos.sum(), mass)) + 1
    top = pos[:min(k, pos.size)]
    return float(top[0] / top[-1]), float(top[0] / np.median(top))


def read_spectrum(run_dir: str | Path, methods: Sequence[str]) -> dict:
    """Per method of a spectrum study: the fraction of probes with an eigenvalue of I − ηH
    below −1, the condition numbers (median over probes; per grade too), the final
    training loss and test PSNR."""
    run_dir = Path(run_dir)
    rows = runs.read_rows(run_dir / "spectrum.csv") if (run_dir / "spectrum.csv").is_file() \
        else []
    eig = runs.read_npz(run_dir / "eigenvalues.npz") if (run_dir / "eigenvalues.npz").is_file() \
        else {}
    out: dict = {}
    for m in methods:
        metrics = runs.read_summary(run_dir / m)
        mine = [(i, r) for i, r in enumerate(r for r in rows if r["method"] == m)]
        below = [float(r["jacobian_min"]) < -1.0 for _, r in mine]
        kappas: dict[int, list[tuple[float, float]]] = {}
        for i, r in mine:
            if r.get("hessian") == "dense" and f"{m}/{i}" in eig:
                kappas.setdefault(int(r["grade"]), []).append(condition_numbers(eig[f"{m}/{i}"]))
        allk = [k for v in kappas.values() for k in v]
        out[m] = {
            "fraction_unstable": float(np.mean(below)) if below else math.nan,
            "probes": len(below),
            "jacobian_max": max((float(r["jacobian_max"]) for _, r in mine), default=math.nan),
            "jacobian_min": min((float(r["jacobian_min"]) for _, r in mine), default=math.nan),
            "kappa": float(np.median([k[0] for k in allk])) if allk else math.nan,
            "spread": float(np.median([k[1] for k in allk])) if allk else math.nan,
            "kappa_per_grade": {g: float(np.median([k[0] for k in v])) for g, v in kappas.items()},
            "spread_per_grade": {g: float(np.median([k[1] for k in v]))
                                 for g, v in kappas.items()},
            "train_loss": metrics["metrics"].get("train_loss"),
            "test_psnr": metrics["metrics"].get("test_psnr"),
            "seconds": metrics["seconds"],
            "diverged": metrics.get("diverged", False),
        }
    return out
