"""A mini-batch step of denoising: scattered pixels against tiles (`--batch-tile`).

A batch of scattered pixels evaluates the grade at three points per pixel (the pixel and the
two neighbours its forward differences read); a batch of p × p tiles at (p + 1)² per p²
pixels. This times one step of the fast recipe's full-grid grades (MGDL grade 2 of
[128, 128, 128] on a frozen grade's 128 features, Adam, 1/16 of the pixels a step) with
pixels and with tiles of each side, measured in one run through `fit` (grade 1 trains a few
epochs on the 4× coarser grid, as the recipe's does), and prints each one's milliseconds
per step, network values per step, and the speed-up over pixels.

The last line is `ratio=<pixels' seconds per step / 16 × 16 tiles'>`.

Usage: python benchmarks/batch_tiles.py [--size 512] [--steps 300]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax

import multigrade as mg
from multigrade.problems import denoising
from multigrade.problems.minibatch import minibatch


def seconds_per_step(problem, batch: float, tile: int | None, steps: int,
                     repeats: int = 3) -> tuple[float, int]:
    """The fastest of `repeats` fits' seconds per step of grade 2, and its network values
    per step."""
    full = problem if tile is None else problem.in_tiles(tile)
    mb = minibatch(full, batch, jax.random.key(1))
    values = int(np.prod(mb.draw(0)[1].shape))
    model = mg.mgdl([[128] * 3] * 2)
    times = []
    for _ in range(repeats):
        r = mg.fit(model, [problem.coarse(4), mb], optimizer=optax.adam(1e-3),
                   epochs=[20, steps], key=jax.random.key(0), record_every=steps)
        times.append(r.grades[1].seconds_per_epoch)
    return float(min(times)), values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side (butterfly)")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per fit")
    parser.add_argument("--batch", type=float, default=0.0625, help="batch fraction")
    parser.add_argument("--data-dir", default="../shared/images")
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
    image = mg.load_image("butterfly", size=args.size, data_dir=args.data_dir)
    problem = denoising(image, 10 / 255, key=jax.random.key(0))
    base, _ = seconds_per_step(problem, args.batch, None, args.steps)
    rows = [("pixels", None, base)]
    print(f"pixels: {1e3 * base:.1f} ms/step")
    for side in (8, 16, 32):
        t, values = seconds_per_step(problem, args.batch, side, args.steps)
        rows.append((f"{side}×{side} tiles", side, t))
        print(f"{side}×{side} tiles: {1e3 * t:.1f} ms/step, {values} network values a step, "
              f"{base / t:.2f}× pixels' speed")
    _, values = seconds_per_step(problem, args.batch, None, 1, repeats=1)
    print(f"(pixels: {values} network values a step)")
    print(f"ratio={base / dict((s, t) for _, s, t in rows)[16]:.3f}")


if __name__ == "__main__":
    main()
