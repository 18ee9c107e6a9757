"""The paper's restoration figures at the paper's scale on one GPU, within a time budget.

Four runs, each an `mgdl run` process of its own (the authors' per-method settings, SPEC §3,
from the presets): denoising butterfly 512², σ_n = 10/255, and deblurring butterfly, σ_b = 3,
σ_n = 3/255, MGDL 4 × 20 000 epochs and SGDL 20 000 epochs each. The runs go `--parallel` at a
time (default 2: a pair side by side, which on an H200 is faster than one after the other:
neither run fills the GPU); each wave gets an equal share of what is left of `--minutes`, and
a run still going at the end of its share gets SIGTERM: it stops at a chunk boundary and its
checkpoint keeps where it stood. Every run directory lands under `--out`.

Then one table: per run its state, PSNR after each grade (a cut grade: where it stood, at
which epoch), the final PSNR beside the paper's, and milliseconds per epoch of each grade.
Exits 1 when a run failed (not when one was cut by the budget).

Usage (a plain checkout where JAX with CUDA is installed):
    PYTHONPATH=src python benchmarks/gpu_check.py --data-dir DIR [--minutes 9] [--out DIR]
    python benchmarks/gpu_check.py --scale tiny       # the same logic on a CPU, in seconds
On one H200 (JAX 0.11) the four paper-scale runs need about 9 minutes side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from multigrade import runs  # noqa: E402
from multigrade.experiments.building import method_config  # noqa: E402
from multigrade.experiments.config import RunConfig  # noqa: E402
from multigrade.experiments.configfile import save_config  # noqa: E402
from multigrade.experiments.presets import EXPERIMENTS  # noqa: E402

CHECKS = ("denoise-butterfly-10", "deblur-butterfly-3")
SHARED = ROOT.parent / "shared" / "images"


def configs(scale: str, data_dir: str | None, epochs: int | None = None
            ) -> list[tuple[str, str, RunConfig]]:
    """(experiment, method, the method's run config) of the four runs."""
    found = []
    for name in CHECKS:
        cfg = EXPERIMENTS[name].config("paper")
        if scale == "tiny":  # the same runs, a few seconds each on a CPU
            cfg = cfg.replace(problem={"size": 32}, train={
                "epochs": 40, "record_every": 10, "checkpoint_every": 20})
        if data_dir is not None:
            cfg = cfg.replace(problem={"data_dir": str(data_dir)})
        if epochs is not None:
            cfg = cfg.replace(train={"epochs": epochs})
        for method in ("mgdl", "sgdl"):
            found.append((name, method, method_config(cfg, method)))
    return found


def run_waves(jobs: list, out: Path, minutes: float, parallel: int) -> list[dict]:
    """Starts the runs `parallel` at a time; SIGTERM to those past their wave's share."""
    deadline = time.monotonic() + 60 * minutes
    done, waves = [], [jobs[i:i + parallel] for i in range(0, len(jobs), parallel)]
    for k, wave in enumerate(waves):
        share = (deadline - time.monotonic()) / (len(waves) - k)
        stop_at = time.monotonic() + max(share, 1.0)
        procs = []
        for name, method, cfg in wave:
            run_dir = out / name / method
            path = out / f"{name}-{method}.toml"
            save_config(path, cfg)
            log = open(out / f"{name}-{method}.log", "w")  # noqa: SIM115 (closed below)
            procs.append((name, method, run_dir, log, subprocess.Popen(
                [sys.executable, "-m", "multigrade", "run", str(path), "--out", str(run_dir),
                 "--quiet"], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))})))
        for name, method, run_dir, log, proc in procs:
            cut = False
            try:
                proc.wait(timeout=max(stop_at - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                cut = True
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
            done.append({"experiment": name, "method": method, "dir": run_dir,
                         "returncode": proc.returncode, "cut": cut})
    return done


def summary(run: dict) -> dict:
    """Where a run stood: state, PSNR after each grade (the last record of a cut grade),
    ms per epoch of each grade."""
    d = run["dir"]
    status = runs.read_status(d) if runs.is_run_dir(d) else {"state": "missing"}
    out = {**run, "state": status["state"], "grades": [], "ms": [], "stood": ""}
    history = runs.read_history(d / "history.csv") if (d / "history.csv").is_file() else {}
    if "test_psnr" in history:
        grades = history["grade"].astype(int)
        for g in sorted(set(grades.tolist())):
            rows = grades == g
            out["grades"].append(float(history["test_psnr"][rows][-1]))
    if (d / runs.CHECKPOINT).is_file():  # seconds and epochs of each grade, the cut one too
        meta = json.loads(str(runs.read_npz(d / runs.CHECKPOINT)["meta"]))
        timed = [*meta["grades"], *([meta["pending"]] if meta["pending"] else [])]
        out["ms"] = [1e3 * g["seconds"] / g["epochs"] for g in timed if g["epochs"]]
    if status.get("pending"):
        p = status["pending"]
        out["stood"] = f"grade {p['grade']} at epoch {p['epoch']}"
    return out


def table(rows: list[dict], scale: str) -> str:
    head = ["experiment", "method", "state", "PSNR per grade (dB)", "final", "paper",
            "ms/epoch per grade", "cut at"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        paper = EXPERIMENTS[r["experiment"]].paper.get(r["method"]) if scale == "paper" \
            else None
        final = r["grades"][-1] if r["grades"] else math.nan
        lines.append("| " + " | ".join([
            r["experiment"], r["method"], r["state"] + (" (budget)" if r["cut"] else ""),
            " / ".join(f"{v:.2f}" for v in r["grades"]) or "-", f"{final:.2f}",
            "-" if paper is None else f"{paper:.2f}",
            " / ".join(f"{v:.2f}" for v in r["ms"]) or "-", r["stood"] or "-"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("paper", "tiny"), default="paper")
    ap.add_argument("--minutes", type=float, default=9.0, help="Time budget of all runs.")
    ap.add_argument("--parallel", type=int, default=2, help="Runs side by side.")
    ap.add_argument("--data-dir", default=None, help="Folder of the paper's images.")
    ap.add_argument("--out", default=None, help="Folder of the run directories.")
    ap.add_argument("--epochs", type=int, default=None, help="Epochs per grade (default: "
                    "the scale's, 20 000 at paper scale).")
    args = ap.parse_args(argv)
    if args.parallel < 1 or not args.minutes > 0:
        ap.error("--parallel must be at least 1 and --minutes positive")
    data_dir = args.data_dir or (str(SHARED) if SHARED.is_dir() else None)
    out = Path(args.out or f"runs/gpu-check-{args.scale}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        ap.error(f"{out} exists and is not empty: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    import jax

    print(f"JAX {jax.__version__}, backend {jax.default_backend()}, devices "
          f"{[str(d) for d in jax.devices()]}; {args.scale} scale, {args.minutes:g} min, "
          f"{args.parallel} side by side; runs in {out}", flush=True)
    t0 = time.monotonic()
    done = run_waves(configs(args.scale, data_dir, args.epochs), out, args.minutes,
                     args.parallel)
    rows = [summary(r) for r in done]
    print(table(rows, args.scale))
    print(f"wall {time.monotonic() - t0:.0f} s")
    failed = [r for r in rows if r["state"] not in ("completed", "interrupted")
              or (r["state"] == "interrupted" and not r["cut"])]
    for r in failed:
        print(f"failed: {r['experiment']} {r['method']} ({r['state']}, exit "
              f"{r['returncode']}): see {out / (r['experiment'] + '-' + r['method'] + '.log')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
