"""MGDL and SGDL against the spectral-bias baselines (FFN, SIREN) at matched parameter count.

Runs (with `--run`) and tabulates `mgdl compare ... --baselines ffn,siren` on camera and
butterfly at 128²: image regression with seeds 0, 1, 2, and denoising at σ_n = 20 with
seed 0 (the compare defaults otherwise: MGDL 4 × [128, 128] for regression, 4 × [128]×3 for
denoising, Adam 1e-3, 2 000 epochs per grade; the baselines 4 hidden layers, FFN σ from
1, 3, 10, 30 by the validation loss, by the clean image's PSNR for denoising). Prints one
markdown table per task: test PSNR (mean ± standard deviation over seeds), SSIM,
parameters, the FFN's σ and seconds per method.

Usage: python benchmarks/baselines.py --out DIR [--run] [--data-dir ../shared/images]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

CASES = [("regression", img, seed) for img in ("camera", "butterfly") for seed in (0, 1, 2)]
CASES += [("denoise", img, 0) for img in ("camera", "butterfly")]


def name(task: str, image: str, seed: int) -> str:
    return f"reg-{image}-s{seed}" if task == "regression" else f"den-{image}"


def run(out: Path, data_dir: str) -> None:
    for task, image, seed in CASES:
        where = out / name(task, image, seed)
        if (where / "comparison.json").is_file():
            continue
        extra = ["--sigma", "20"] if task == "denoise" else []
        cmd = [sys.executable, "-m", "multigrade", "compare", task, "--image", image,
               "--data-dir", data_dir, "--size", "128", "--seed", str(seed), *extra,
               "--baselines", "ffn,siren", "--out", str(where), "--quiet"]
        print(" ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)


def table(out: Path, task: str) -> str:
    rows: dict[tuple[str, str], list[dict]] = {}
    for t, image, seed in CASES:
        path = out / name(t, image, seed) / "comparison.json"
        if t != task or not path.is_file():
            continue
        for m, v in json.loads(path.read_text()).items():
            rows.setdefault((image, m), []).append(v)
    lines = ["| image | method | params | test PSNR (dB) | SSIM | FFN σ | seconds | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for (image, m), vs in rows.items():
        psnr = np.array([v["metrics"]["test_psnr"] for v in vs])
        ssim = np.array([v["metrics"].get("test_ssim", np.nan) for v in vs])
        spread = f" ± {psnr.std(ddof=1):.2f}" if len(vs) > 1 else ""
        sigmas = ",".join(f"{v['baseline']['sigma']:g}" for v in vs if "sigma" in
                          v.get("baseline", {}))
        lines.append(f"| {image} | {m} | {vs[0]['params']} | {psnr.mean():.2f}{spread} | "
                     f"{np.nanmean(ssim):.3f} | {sigmas or '–'} | "
                     f"{np.mean([v['seconds'] for v in vs]):.0f} | {len(vs)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--run", action="store_true", help="run the comparisons that are missing")
    ap.add_argument("--data-dir", default="../shared/images")
    args = ap.parse_args()
    if args.run:
        run(args.out, args.data_dir)
    for task in ("regression", "denoise"):
        print(f"\n{task}\n\n{table(args.out, task)}")


if __name__ == "__main__":
    main()
