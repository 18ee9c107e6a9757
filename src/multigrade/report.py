"""Figures. matplotlib is imported here only, never at package import."""

from __future__ import annotations

import os

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _psnr_key(metrics: dict) -> str | None:
    for k in ("test_psnr", "psnr", "train_psnr"):
        if k in metrics:
            return k
    return None


def plot_grades(result, path: str | os.PathLike) -> bool:
    """References (target, observation, ...) then the prediction after each grade.

    Returns False (and writes nothing) when the problem has no image to show.
    """
    images = [result.problem.render(p) for p in result.predictions]
    if not images or images[0] is None:
        return False
    refs = result.problem.references()
    panels = [(name, im) for name, im in refs.items()]
    key = _psnr_key(result.metrics)
    for g, im in zip(result.grades, images):
        title = f"grade {g.grade}" if result.model.num_grades > 1 else result.model.name
        if key:
            title += f"\n{g.metrics[key]:.2f} dB"
        panels.append((title, im))
    plot_images(panels, path)
    return True


def plot_images(panels: list[tuple[str, np.ndarray]], path: str | os.PathLike) -> None:
    """A row of images in [0, 1] (gray `(H, W)` or colour `(H, W, 3)`) with titles."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), squeeze=False)
    for ax, (title, im) in zip(axes[0], panels):
        ax.imshow(np.clip(im, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_history(results: dict, path: str | os.PathLike) -> None:
    """Loss (log scale) and PSNR against epochs, grade boundaries dashed."""
    plt = _pyplot()
    first = next(iter(results.values()))
    has_psnr = any(k.endswith("psnr") for k in first.history)
    ncols = 2 if has_psnr else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.8), squeeze=False)
    for i, (label, result) in enumerate(results.items()):
        h, color = result.history, f"C{i}"
        if not len(h.get("step", [])):
            continue
        for name, style in (("train", "-"), ("val", "--")):
            if f"{name}_loss" in h:
                axes[0, 0].semilogy(h["step"], h[f"{name}_loss"], style, color=color,
                                    label=f"{label} {name}")
            if has_psnr and f"{name}_psnr" in h:
                axes[0, 1].plot(h["step"], h[f"{name}_psnr"], style, color=color,
                                label=f"{label} {name}")
        if "psnr" in h and has_psnr:
            axes[0, 1].plot(h["step"], h["psnr"], "-", color=color, label=label)
        ends = np.cumsum([g.epochs for g in result.grades])[:-1]
        for ax in axes[0]:
            for e in ends:
                ax.axvline(e, color=color, ls=":", lw=0.8)
    axes[0, 0].set_xlabel("epoch")
    axes[0, 0].set_ylabel("loss")
    if has_psnr:
        axes[0, 1].set_xlabel("epoch")
        axes[0, 1].set_ylabel("PSNR (dB)")
    for ax in axes[0]:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
