"""`mgdl reproduce`: the paper's experiments at a scale, over seeds, with verdicts.

A reproduction directory holds one run directory per experiment and seed
(`<out>/<experiment>/seed<k>/`, each an ordinary run directory of the run store), and the
summary: `reproduction.json` (what was asked), `summary.json` / `summary.csv` (one row
per experiment × claim: our means ± standard deviations, the paper's figures, the
verdict) and `summary.md` (the same as a Markdown table). Running the same reproduction
again skips completed runs, resumes interrupted comparisons from their checkpoints and
reruns failed ones; the summary is rebuilt from the run directories alone.

Seeds vary the network initialisation (`train.seed` = 0 .. N−1); the noise of the
restoration observations stays fixed (`problem.noise_seed`) unless a config says
otherwise.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from multigrade import runs
from multigrade.experiments import verdicts as V
from multigrade.experiments.configfile import apply_overrides, load_config
from multigrade.experiments.presets import EXPERIMENTS, Experiment, select

MANIFEST = "reproduction.json"


@dataclasses.dataclass
class Reproduction:
    """What `reproduce` did: the output folder, the scale, this call's experiments and
    seeds, the summary rows of the whole folder and how many runs this call trained."""
    out: Path
    scale: str
    experiments: list[Experiment]  # those of this call
    seeds: int
    rows: list[dict]  # the summary of the whole directory
    ran: int  # runs trained in this call (the others were found completed)


def is_reproduction(path: str | Path) -> bool:
    """Whether `path` is a reproduction folder (it holds the manifest `reproduce` writes)."""
    return (Path(path) / MANIFEST).is_file()


def _claim_out(out: Path, names: list[str], scale: str, seeds: int,
               command: str | None) -> runs.Lock:
    """The reproduction directory, claimed when new or continued when mgdl made it, and
    locked while this process works in it."""
    if str(out).strip() == "":
        raise ValueError("--out must name a directory, got an empty string")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and runs.kind_of(out) != "reproduction":
        raise ValueError(f"{out} exists, is not empty and is not a reproduction "
                         "directory: choose another --out")
    held = runs.claim_or_open(out, "reproduction", command=command, what="reproduce")
    try:
        _write_manifest(out, names, scale, seeds)
    except BaseException:
        held.release()
        raise
    return held


def _write_manifest(out: Path, names: list[str], scale: str, seeds: int) -> None:
    if is_reproduction(out):
        old = runs.read_json(out / MANIFEST)
        if old.get("scale") != scale:
            raise ValueError(f"{out} holds a {old.get('scale')}-scale reproduction; choose "
                             "another --out for this scale")
    before = runs.read_json(out / MANIFEST) if is_reproduction(out) else {}
    runs.write_json(out / MANIFEST, {
        "scale": scale, "seeds": max(seeds, before.get("seeds", 0)),
        "experiments": list(dict.fromkeys([*before.get("experiments", []), *names]))})


def run_dir_of(out: Path, name: str, seed: int) -> Path:
    """The run directory of experiment `name`, seed `seed`, in reproduction folder `out`."""
    return Path(out) / name / f"seed{seed}"


@dataclasses.dataclass(frozen=True)
class Watch:
    """What a caller sees of a reproduction while it runs: `progress` makes the training
    progress bars (as in `execute`); `on_run(experiment, seed, what)` is told when a run
    starts ("train", "resume") or is found done ("done")."""

    progress: Callable | None = None
    on_run: Callable[[str, int, str], None] | None = None

    def run(self, experiment: str, seed: int, what: str) -> None:
        if self.on_run is not None:
            self.on_run(experiment, seed, what)


def reproduce(name: str, *, scale: str = "quick", seeds: int = 1, out: str | Path,
              data_dir: str | None = None, overrides: Sequence[str] = (),
              vary_noise: bool = False, overwrite: bool = False, command: str | None = None,
              watch: Watch = Watch()) -> Reproduction:
    """Runs the experiments `name` stands for (see `presets.select`) `seeds` times each.

    `overrides` (`["train.epochs=100", ...]`, as `--set`) change every experiment's config.
    Seed k sets `train.seed = k`; with `vary_noise`, also `problem.noise_seed = k` (a new
    observation per seed; otherwise every seed restores the same observation).
    With `overwrite`, runs found in `out` are trained again instead of skipped or resumed.
    `watch` shows progress (`Watch`); `command` is recorded as what claimed `out`.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    chosen = select(name, scale)
    out = Path(out)
    configs = {e.name: experiment_config(e, scale, data_dir, overrides) for e in chosen}
    with _claim_out(out, [e.name for e in chosen], scale, seeds, command):
        rows, ran = _reproduce(out, chosen, configs, seeds, scale, vary_noise=vary_noise,
                               overwrite=overwrite, command=command, watch=watch)
    return Reproduction(out, scale, chosen, seeds, rows, ran)


def _reproduce(out: Path, chosen, configs: dict, seeds: int, scale: str, *, vary_noise,
               overwrite, command, watch: Watch) -> tuple[list[dict], int]:
    from multigrade.experiments.runner import execute, resume

    ran = 0
    for seed in range(seeds):  # every experiment once before any is repeated
        for e in chosen:
            d = run_dir_of(out, e.name, seed)
            cfg = configs[e.name].replace(train={"seed": seed}, **(
                {"problem": {"noise_seed": seed}} if vary_noise else {}))
            state = runs.read_status(d)["state"] if runs.is_run_dir(d) else None
            if state is not None and not overwrite:
                _check_same_config(d, cfg)
            if state == "completed" and not overwrite:
                watch.run(e.name, seed, "done")
                continue
            watch.run(e.name, seed, "resume" if state == "interrupted" else "train")
            t0 = time.perf_counter()
            if state == "interrupted" and not cfg.is_study and not overwrite:
                resume(d, command=command, progress=watch.progress)
            else:
                if state is not None:
                    runs.adopt(d)  # a run of an older version: mark it the store's
                execute(cfg, d, overwrite=state is not None, command=command,
                        progress=watch.progress)
            _record_wall_time(out, e.name, seed, time.perf_counter() - t0)
            ran += 1
    everything = [EXPERIMENTS[n] for n in runs.read_json(out / MANIFEST)["experiments"]
                  if n in EXPERIMENTS]
    rows = summarize(out, everything, scale)
    write_summary(out, rows)
    return rows, ran


def _check_same_config(run_dir: Path, cfg) -> None:
    """A run found in the directory must be the one asked for (else skipping or resuming
    it would report another experiment's figures)."""
    if (run_dir / runs.CONFIG).is_file() and load_config(run_dir) != cfg:
        raise ValueError(f"{run_dir} was run with another configuration (other --set, "
                         "--data-dir or --vary-noise?): choose another --out, or --overwrite "
                         "to run it again")


WALL_TIMES = "wall_times.json"


def _record_wall_time(out: Path, name: str, seed: int, seconds: float) -> None:
    """Wall seconds of each run (training, compilation, probes, baselines, figures), kept
    in the reproduction directory beside the runs."""
    path = out / WALL_TIMES
    times = runs.read_json(path) if path.is_file() else {}
    times[f"{name}/seed{seed}"] = seconds
    runs.write_json(path, times)


def _wall_time(times: dict, name: str, dirs: Sequence[Path]) -> float:
    found = [times[f"{name}/{d.name}"] for d in dirs if f"{name}/{d.name}" in times]
    return float(sum(found) / len(found)) if found else math.nan


def experiment_config(e: Experiment, scale: str, data_dir: str | None = None,
                      overrides: Sequence[str] = ()):
    """The config an experiment runs with: its preset at `scale`, the images from
    `data_dir`, then the `--set` overrides."""
    cfg = e.config(scale)
    if data_dir is not None:
        cfg = cfg.replace(problem={"data_dir": str(data_dir)})
    return apply_overrides(cfg, list(overrides))


# ---------------------------------------------------------------------------------------
# The summary


def _seed_dirs(out: Path, name: str) -> list[Path]:
    """The completed runs of an experiment, whatever seeds they were asked for."""
    dirs = sorted((Path(out) / name).glob("seed*"), key=lambda d: int(d.name[4:] or -1))
    return [d for d in dirs if d.name[4:].isdigit() and runs.is_run_dir(d) and
            runs.read_status(d).get("state") == "completed"]


def _row(exp: Experiment, claim: int, measure: str, mgdl: Sequence[float],
         other: Sequence[float], *, other_name: str = "sgdl", higher: bool,
         paper: tuple = (None, None), extra: str = "") -> dict:
    v = V.verdict(mgdl, other, higher_is_better=higher)
    (ma, sa), (mb, sb) = V.mean_std(mgdl), V.mean_std(other)
    return {"experiment": exp.name, "claim": claim, "measure": measure, "against": other_name,
            "mgdl_mean": ma, "mgdl_std": sa, "other_mean": mb, "other_std": sb,
            "paper_mgdl": paper[0], "paper_other": paper[1], "n": v.n,
            "difference": v.difference, "spread": v.spread, "verdict": v.verdict,
            "extra": extra, "seconds": math.nan}


def _fmt(x: float | None, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "∞" if isinstance(x, float) and math.isinf(x) else format(x, spec)


def summarize(out: str | Path, experiments: Sequence[Experiment], scale: str) -> list[dict]:
    """One row per experiment × claim (× compared method), from the run directories (every
    completed seed of each experiment)."""
    out = Path(out)
    rows: list[dict] = []
    times = runs.read_json(out / WALL_TIMES) if (out / WALL_TIMES).is_file() else {}
    for e in experiments:
        dirs = _seed_dirs(out, e.name)
        if not dirs:
            continue
        cfg = load_config(dirs[0])  # as it ran (with any --set), not the preset rebuilt
        wall = _wall_time(times, e.name, dirs)
        if cfg.command == "compare":
            found = _compare_rows(e, [V.read_compare(d) for d in dirs])
        elif cfg.command == "lr-sweep":
            sweeps = [V.read_sweep(d) for d in dirs]
            found = [_row(e, 2, "largest stable GD learning rate",
                          [f["mgdl"]["largest_stable_lr"] for f in sweeps],
                          [f["sgdl"]["largest_stable_lr"] for f in sweeps], higher=True)]
        else:
            found = _spectrum_rows(e, [V.read_spectrum(d, cfg.study.methods) for d in dirs])
        rows += [{**r, "seconds": wall} for r in found]
    return rows


def _compare_rows(e: Experiment, found: list[dict]) -> list[dict]:
    m = [f["mgdl"]["test_psnr"] for f in found]
    s = [f["sgdl"]["test_psnr"] for f in found]
    extra = [f"training s: MGDL {V.mean_std([f['mgdl']['seconds'] for f in found])[0]:.1f}, "
             f"SGDL {V.mean_std([f['sgdl']['seconds'] for f in found])[0]:.1f}"]
    if found[0].get("observed_psnr") is not None:
        extra.append(f"observation {found[0]['observed_psnr']:.2f} dB")
    for b, p in (found[0].get("baselines") or {}).items():
        extra.append(f"{b.split(',')[0]} (oracle) {p:.2f} dB")
    grades = [f["mgdl"]["grades"] for f in found]
    per_grade = "/".join(_fmt(V.mean_std([g[k] for g in grades])[0], ".2f")
                         for k in range(min(len(g) for g in grades)))
    extra.append(f"MGDL per grade {per_grade} dB")
    paper = e.paper
    if paper.get("observed") is not None:
        extra.append(f"paper: observation {paper['observed']} dB")
    rows = [_row(e, 1, "test PSNR (dB)", m, s, higher=True,
                 paper=(paper.get("mgdl"), paper.get("sgdl")), extra="; ".join(extra))]
    t_m = [f["mgdl"]["seconds_to_sgdl"] for f in found]
    t_s = [f["sgdl"]["seconds"] for f in found]
    f_m = [f["mgdl"]["flops_to_sgdl"] for f in found]
    f_s = [f["sgdl"]["flops"] for f in found]
    rows.append(_row(e, 5, "seconds to SGDL's final PSNR (SGDL: its whole run)", t_m, t_s,
                     higher=False, extra=f"GFLOP: MGDL {_fmt(V.mean_std(f_m)[0] / 1e9)}, "
                     f"SGDL {_fmt(V.mean_std(f_s)[0] / 1e9)}"))
    return rows


def _spectrum_rows(e: Experiment, found: list[dict]) -> list[dict]:
    methods = list(found[0])
    rows = []
    if 1 in e.claims:  # the MSDL study: the final training loss of each method
        for other in [m for m in methods if m != "mgdl"]:
            rows.append(_row(e, 1, "final training loss",
                             [f["mgdl"]["train_loss"] for f in found],
                             [f[other]["train_loss"] for f in found], other_name=other,
                             higher=False, paper=(e.paper.get("mgdl"), e.paper.get(other))))
    if 3 in e.claims:
        def ends(m: str) -> str:
            return (f"{m.upper()} eig(J) in [{_fmt(min(f[m]['jacobian_min'] for f in found))}, "
                    f"{_fmt(max(f[m]['jacobian_max'] for f in found))}] over "
                    f"{found[0][m]['probes']} probes")

        rows.append(_row(e, 3, "fraction of probes with an eigenvalue of I − ηH below −1",
                         [f["mgdl"]["fraction_unstable"] for f in found],
                         [f["sgdl"]["fraction_unstable"] for f in found], higher=False,
                         extra=f"{ends('mgdl')}; {ends('sgdl')}"))
    if 4 in e.claims:
        for key, label in (("kappa", "κ = λ_max/λ_min over the dominant eigenvalues"),
                           ("spread", "spread λ_max/λ_median over the dominant eigenvalues")):
            per_grade = found[0]["mgdl"][f"{key}_per_grade"]
            extra = "MGDL per grade " + "/".join(_fmt(v, ".3g") for v in per_grade.values()) \
                if per_grade else "no dense spectrum (Lanczos extremes only)"
            rows.append(_row(e, 4, label, [f["mgdl"][key] for f in found],
                             [f["sgdl"][key] for f in found], higher=False, extra=extra))
    if e.paper.get("metric") == "test_psnr":
        rows.append(_row(e, 1, "test PSNR (dB) at the study's rates",
                         [f["mgdl"]["test_psnr"] for f in found],
                         [f["sgdl"]["test_psnr"] for f in found], higher=True,
                         paper=(e.paper.get("mgdl"), e.paper.get("sgdl"))))
    return rows


COLUMNS = ("experiment", "claim", "measure", "MGDL", "other", "paper MGDL", "paper other",
           "n", "verdict", "wall s / seed", "notes")


def table_rows(rows: Sequence[dict]) -> list[list[str]]:
    """The summary as text cells, in `COLUMNS` order."""
    out = []
    for r in rows:
        out.append([r["experiment"], str(r["claim"]), r["measure"],
                    f"{_fmt(r['mgdl_mean'])} ± {_fmt(r['mgdl_std'], '.2g')}",
                    f"{r['against']} {_fmt(r['other_mean'])} ± {_fmt(r['other_std'], '.2g')}",
                    _fmt(r["paper_mgdl"]), _fmt(r["paper_other"]), str(r["n"]),
                    r["verdict"], _fmt(r["seconds"], ".0f"), r["extra"]])
    return out


def markdown(rows: Sequence[dict]) -> str:
    """The summary rows as a Markdown table, the paper's figures beside ours, with the
    claims the verdicts refer to."""
    buf = io.StringIO()
    buf.write("| " + " | ".join(COLUMNS) + " |\n")
    buf.write("|" + "---|" * len(COLUMNS) + "\n")
    for cells in table_rows(rows):
        buf.write("| " + " | ".join(c.replace("|", "/") for c in cells) + " |\n")
    buf.write("\nClaims: " + "; ".join(f"{k}. {v}" for k, v in V.CLAIMS.items()) + ".\n")
    return buf.getvalue()


def write_summary(out: str | Path, rows: list[dict]) -> None:
    """Writes summary.json, summary.csv and summary.md of a reproduction folder."""
    out = Path(out)
    runs.write_json(out / "summary.json", {"rows": rows, "claims": V.CLAIMS,
                                           "written": time.strftime("%Y-%m-%d %H:%M:%S")})
    runs.write_rows(out / "summary.csv", rows)
    runs.write_text(out / "summary.md", markdown(rows))
