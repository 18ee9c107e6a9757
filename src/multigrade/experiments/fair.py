"""The fair protocol: MGDL and SGDL tuned the same way, without the clean image.

The paper's restoration figures come from settings chosen per method by a search scored
against the clean image (the *authors* protocol, the presets' default). A reviewer asks
first whether MGDL's advantage survives when both methods are tuned alike and without
the clean image. Here, for each method:

1. **grid**: every setting of `FAIR_GRID` (lr × β × λ; data, overridable) trains once
   (seed 0) as a sweep (Dask, resumable: `sweep.run_sweep`), choosing its epochs and
   grades without the clean image (`train.select`: SURE for denoising, held-out pixels for
   deblurring, as `--select` does);
2. **choice**: the setting of least no-reference score (the kept state's SURE, or its
   held-out residual: `score`) and, beside it, the oracle's: the setting of best PSNR to
   the clean image on the same grid;
3. **seeds**: each chosen setting trains again over `seeds` initialisation seeds (a sweep
   of its own), so the two methods are compared over seeds under each rule.

`FAIR_SUMMARY` (`fair.json`, `fair.md`) says per experiment and method which setting won
under each rule, the PSNR gap between the no-reference and the oracle choice, and MGDL
against SGDL under each rule with the verdict of `verdicts.verdict`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from multigrade import runs
from multigrade.experiments.cluster import client as cluster_client
from multigrade.experiments.config import MethodsConfig, RunConfig
from multigrade.experiments.sweep import SweepSpec, _with, run_sweep

FAIR_GRID: dict[str, tuple[float, ...]] = {
    "train.lr": (1e-3, 5e-3),
    "problem.beta": (1e-2, 1e-1, 1.0),
    "problem.lam": (1e-4, 1e-2, 1e-1),
}
RULES = {"denoise": "sure", "deblur": "holdout"}  # the no-reference rule of each task
METHODS = ("mgdl", "sgdl")
FAIR_SUMMARY = "fair.json"


def parse_grid(items: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """`["train.lr=1e-3,5e-3", ...]` over `FAIR_GRID`: each item replaces one axis."""
    grid = dict(FAIR_GRID)
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or key not in FAIR_GRID:
            raise ValueError(f"--grid takes AXIS=V1,V2,... with AXIS one of "
                             f"{', '.join(FAIR_GRID)}, got {item!r}")
        try:
            found = tuple(float(v) for v in values.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"--grid {key}: values must be numbers, got {values!r}") \
                from None
        if not found or not all(v > 0 and math.isfinite(v) for v in found):
            raise ValueError(f"--grid {key}: give positive numbers, got {values!r}")
        grid[key] = found
    return grid


def grid_base(cfg: RunConfig, method: str) -> RunConfig:
    """One method of a restoration comparison as a fit scored without the clean image:
    the experiment's config without its per-method settings (the grid sets them)."""
    task = cfg.problem.task
    if task not in RULES:
        raise ValueError(f"the fair protocol tunes restoration (denoise, deblur), not {task}")
    return dataclasses.replace(cfg.replace(command="fit", model={"method": method},
                                           train={"select": RULES[task], "seed": 0}),
                               methods=MethodsConfig())


def score(run_dir: str | Path) -> float:
    """A finished run's no-reference score, lower is better: the criterion of the state
    its last grade kept (SURE, or the held-out residual); inf for a diverged or failed run."""
    metrics = runs.read_summary(Path(run_dir))
    if metrics.get("diverged") or not metrics["grades"]:
        return math.inf
    value = metrics["grades"][-1].get("criterion")
    return math.inf if value is None or not math.isfinite(value) else float(value)


def _setting(row: Mapping, grid: Mapping) -> dict:
    return {axis: row[axis] for axis in grid}


def _best(rows: list[dict], key: str, low: bool) -> dict | None:
    scored = [r for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not scored:
        return None
    return (min if low else max)(scored, key=lambda r: r[key])


@dataclasses.dataclass
class MethodOutcome:
    grid: list[dict]  # every setting's row: its axes, score, test_psnr, run id, status
    chosen: dict[str, dict | None]  # rule ("no-reference", "oracle") -> the grid row
    seeds: dict[str, list[float]]  # rule -> the chosen setting's test PSNR per seed


def tune(base: RunConfig, grid: Mapping[str, Sequence[float]], out: Path, seeds: int, *,
         client=None, workers: int | None = None,
         progress: Callable[[dict], None] | None = None) -> MethodOutcome:
    """One method under the fair protocol, into `out` (`grid/`, `no-reference/`,
    `oracle/`: sweep directories, each resumable)."""
    kw = dict(client=client, workers=workers, progress=progress)
    found = run_sweep(SweepSpec(base, {k: tuple(v) for k, v in grid.items()},
                                best_by="test_psnr", group_by=()), out / "grid", **kw)
    rows = []
    for r in found.rows:
        done = r.get("status") in ("completed", "diverged")
        rows.append({**r, "score": score(out / "grid" / "runs" / r["run"]) if done
                     else math.inf})
    chosen = {"no-reference": _best(rows, "score", low=True),
              "oracle": _best(rows, "test_psnr", low=False)}
    per_seed = {}
    for rule, row in chosen.items():
        if row is None:
            per_seed[rule] = []
            continue
        spec = SweepSpec(_with(base, _setting(row, grid)),
                         {"train.seed": tuple(range(seeds))}, best_by="test_psnr",
                         group_by=())
        again = run_sweep(spec, out / rule, **kw)
        per_seed[rule] = [float(r["test_psnr"]) if isinstance(r.get("test_psnr"), float)
                          else math.nan for r in sorted(again.rows,
                                                        key=lambda r: r["train.seed"])]
    return MethodOutcome(rows, chosen, per_seed)


def fair(cfg: RunConfig, out: str | Path, *, seeds: int = 3,
         grid: Mapping[str, Sequence[float]] = FAIR_GRID, workers: int | None = None,
         client=None, progress: Callable[[dict], None] | None = None) -> dict:
    """Both methods of a restoration experiment `cfg` under the fair protocol, into `out`
    (claimed, or continued when it is a fair-protocol directory this store made); returns
    and writes the summary (`fair.json`, `fair.md`)."""
    from multigrade.experiments.verdicts import verdict

    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    bases = {m: grid_base(cfg, m) for m in METHODS}  # refuses a task it does not tune
    out = Path(out)
    with runs.claim_or_open(out, "reproduction", what="the fair protocol"):
        own = None
        if client is None:
            client, own = cluster_client(None, workers)
        try:
            outcomes = {m: tune(bases[m], grid, out / m, seeds, client=client,
                                progress=progress) for m in METHODS}
        finally:
            if own is not None:
                client.close()
                own.close()
        summary = _summary(cfg, grid, seeds, outcomes, verdict)
        runs.write_json(out / FAIR_SUMMARY, summary)
        runs.write_text(out / "fair.md", markdown(summary))
    return summary


def _summary(cfg: RunConfig, grid, seeds: int, outcomes: dict, verdict) -> dict:
    methods = {}
    for m, o in outcomes.items():
        chosen = {rule: None if row is None else {
            "setting": _setting(row, grid), "run": row["run"], "score": row["score"],
            "grid_test_psnr": row.get("test_psnr"), "seeds_test_psnr": o.seeds[rule]}
            for rule, row in o.chosen.items()}
        nr, orc = o.chosen["no-reference"], o.chosen["oracle"]
        gap = None if nr is None or orc is None else orc["test_psnr"] - nr["test_psnr"]
        methods[m] = {"chosen": chosen, "gap_db": gap, "grid": [
            {**_setting(r, grid), "run": r["run"], "status": r.get("status"),
             "score": r["score"], "test_psnr": r.get("test_psnr")} for r in o.grid]}
    compared = {}
    for rule in ("no-reference", "oracle"):
        a, b = outcomes["mgdl"].seeds[rule], outcomes["sgdl"].seeds[rule]
        v = verdict(a, b, higher_is_better=True)
        compared[rule] = {"verdict": v.verdict, "mgdl": v.mgdl_mean, "sgdl": v.other_mean,
                          "difference": v.difference, "spread": v.spread, "n": v.n}
    return {"task": cfg.problem.task, "image": cfg.problem.image,
            "rule": RULES[cfg.problem.task], "grid": {k: list(v) for k, v in grid.items()},
            "seeds": seeds, "methods": methods, "mgdl_vs_sgdl": compared}


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else format(v, spec)


def markdown(summary: dict) -> str:
    """The summary as Markdown tables."""
    lines = [f"# Fair protocol: {summary['task']} {summary['image']}", "",
             f"No-reference rule: {summary['rule']}; grid: " + "; ".join(
                 f"{k} {', '.join(f'{v:g}' for v in vs)}" for k, vs in summary["grid"].items())
             + f"; {summary['seeds']} seeds for each chosen setting.", "",
             "| method | rule | setting | grid PSNR (seed 0) | PSNR over seeds | gap to oracle |",
             "|---|---|---|---|---|---|"]
    for m, entry in summary["methods"].items():
        for rule, c in entry["chosen"].items():
            if c is None:
                lines.append(f"| {m} | {rule} | - | - | - | - |")
                continue
            values = [v for v in c["seeds_test_psnr"] if math.isfinite(v)]
            mean = sum(values) / len(values) if values else math.nan
            std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                   if len(values) > 1 else 0.0)
            setting = ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in c["setting"].items())
            gap = _fmt(entry["gap_db"]) if rule == "no-reference" else ""
            lines.append(f"| {m} | {rule} | {setting} | {_fmt(c['grid_test_psnr'])} | "
                         f"{_fmt(mean)} ± {_fmt(std)} | {gap} |")
    lines += ["", "| rule | MGDL | SGDL | verdict (MGDL better) |", "|---|---|---|---|"]
    for rule, v in summary["mgdl_vs_sgdl"].items():
        lines.append(f"| {rule} | {_fmt(v['mgdl'])} | {_fmt(v['sgdl'])} | {v['verdict']} |")
    return "\n".join(lines) + "\n"


__all__ = ["FAIR_GRID", "RULES", "fair", "markdown", "parse_grid", "score", "tune"]
