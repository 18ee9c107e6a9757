"""How close restoration without the clean image comes to the oracle (issue 11's evidence).

For each setting (image × noise level, and one deblurring case) `mgdl compare` runs once
per `--select` rule into `<out>/<setting>-<rule>/`. The table then gives, per method, the
oracle's PSNR (the record of best PSNR against the clean image over the fixed-budget run:
every grade and epoch), the fixed budget's final PSNR, and each rule's choice with its gap
to that oracle and the grades / epochs it kept; for the baselines, the oracle, SURE and
discrepancy choices of their weight.

    python benchmarks/selection_gaps.py --out /tmp/selection --run   # about 100 min, 2 cores
    python benchmarks/selection_gaps.py --out /tmp/selection         # the table only

Runs already in `--out` are kept (delete one to run it again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

IMAGES = ("butterfly", "camera")
NOISE = (10, 20, 40)
DENOISE_RULES = ("none", "sure", "discrepancy", "holdout")
DEBLUR_RULES = ("none", "discrepancy", "holdout")
COMMON = ["--size", "128", "--epochs", "1000", "--quiet"]


def settings():
    for image in IMAGES:
        for s in NOISE:
            yield f"{image}-s{s}", ["denoise", "--image", image, "--sigma", str(s)], \
                DENOISE_RULES
    yield "butterfly-blur3", ["deblur", "--image", "butterfly", "--blur-sigma", "3",
                              "--noise", "3"], DEBLUR_RULES


def run_all(out: Path, data_dir: str) -> None:
    for name, args, rules in settings():
        for rule in rules:
            d = out / f"{name}-{rule}"
            if (d / "comparison.json").is_file():
                continue
            cmd = [sys.executable, "-m", "multigrade", "compare", *args, "--select", rule,
                   *COMMON, "--data-dir", data_dir, "--out", str(d), "--overwrite"]
            print(" ".join(cmd[2:]), flush=True)
            subprocess.run(cmd, check=True)


def _read(d: Path) -> dict:
    return {m: json.loads((d / m / "metrics.json").read_text()) for m in ("mgdl", "sgdl")}


def _choice(sel: dict, oracle: float) -> str:
    kept = "/".join(map(str, sel["epochs"]))
    return f"{sel['test_psnr']:.2f} ({sel['test_psnr'] - oracle:+.2f}; {kept})"


def table(out: Path) -> str:
    lines = []
    for name, _, rules in settings():
        found = {r: out / f"{name}-{r}" for r in rules
                 if (out / f"{name}-{r}" / "comparison.json").is_file()}
        if "none" not in found:
            continue
        runs = {r: _read(d) for r, d in found.items()}
        blind = [r for r in rules if r != "none"]
        lines += [f"\n### {name}\n",
                  "| method | oracle dB (grade/epoch) | fixed budget | "
                  + " | ".join(f"{r}: dB (gap; epochs kept)" for r in blind) + " |",
                  "|---" * (3 + len(blind)) + "|"]
        for m in ("mgdl", "sgdl"):
            fixed = runs["none"][m]["selection"]
            oracle = fixed["oracle"]
            row = [m.upper(), f"{oracle['test_psnr']:.2f} ({oracle['grade']}/{oracle['epoch']})",
                   f"{fixed['test_psnr']:.2f} ({fixed['test_psnr'] - oracle['test_psnr']:+.2f})"]
            row += [_choice(runs[r][m]["selection"], oracle["test_psnr"]) if r in runs else "-"
                    for r in blind]
            lines.append("| " + " | ".join(row) + " |")
        first_blind = next((r for r in blind if r in found), None)
        if first_blind is not None:
            base = json.loads((found[first_blind] / "baselines.json").read_text())
            for method in dict.fromkeys(b["name"].split(",")[0] for b in base):
                chosen = {b["choice"]: b for b in base if b["name"].startswith(method)}
                o = chosen["oracle"]["test_psnr"]
                row = [method, f"{o:.2f}", ""]
                for r in blind:
                    b = chosen.get(r)
                    row.append("-" if b is None
                               else f"{b['test_psnr']:.2f} ({b['test_psnr'] - o:+.2f})")
                lines.append("| " + " | ".join(row) + " |")
        sigma = runs[first_blind]["mgdl"]["selection"].get("noise_level") if first_blind else None
        if sigma is not None:
            lines.append(f"\nσ_n estimated from the observation: {sigma:.2f}/255.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run", action="store_true", help="run the missing comparisons")
    parser.add_argument("--data-dir", default="../shared/images")
    args = parser.parse_args()
    if args.run:
        run_all(args.out, args.data_dir)
    print(table(args.out))


if __name__ == "__main__":
    main()
