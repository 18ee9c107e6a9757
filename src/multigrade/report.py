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
    return "test_psnr" if "test_psnr" in metrics else None


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


def plot_comparison(problem, results: dict, baselines: list, path: str | os.PathLike) -> None:
    """Target (and observation), the classical baselines and each method's final image."""
    panels = list(problem.references().items())
    panels += [(f"{b.name.split(',')[0]}\n{b.psnr:.2f} dB", b.image) for b in baselines]
    for m, r in results.items():
        title = m if "test_psnr" not in r.metrics else f"{m}\n{r.metrics['test_psnr']:.2f} dB"
        panels.append((title, problem.render(r.predictions[-1])))
    plot_images(panels, path)


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
        if "test_psnr" in h and has_psnr:
            axes[0, 1].plot(h["step"], h["test_psnr"], "-.", color=color, label=f"{label} test")
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


def plot_sweep(sweeps: dict, path: str | os.PathLike) -> None:
    """Training-loss curves per learning rate, one panel per method, labels in the legend."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 3.8), squeeze=False,
                             sharey=True)
    for ax, (method, s) in zip(axes[0], sweeps.items()):
        cmap = plt.get_cmap("viridis")
        for i, (lr, r, lab) in enumerate(zip(s.learning_rates, s.results, s.labels)):
            h = r.history
            if len(h.get("step", [])):
                loss = np.where(np.isfinite(h["train_loss"]), h["train_loss"], np.nan)
                ax.semilogy(h["step"], loss, color=cmap(i / max(len(s.results) - 1, 1)),
                            label=f"η={lr:g} ({lab})")
        ends = np.cumsum([g.epochs for g in s.results[0].grades])[:-1]
        for e in ends:
            ax.axvline(e, color="gray", ls=":", lw=0.8)
        ax.set_title(f"{method} (largest stable η: {s.largest_stable_lr})", fontsize=10)
        ax.set_xlabel("GD step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("train loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_spectrum(results: dict, path: str | os.PathLike) -> None:
    """Left: largest and smallest eigenvalue of the GD Jacobian I − ηH along training, per
    method (grades of MGDL in turn), with the stability band [−1, 1]. Right: the sharpness
    λ_max(H) against 2/η (Cohen et al.'s edge of stability)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    ax_j, ax_s = axes[0]
    for i, (m, r) in enumerate(results.items()):
        if not r.probes:
            continue
        step = np.array([p["step"] for p in r.probes])
        jmax = np.array([p["jacobian_max"] for p in r.probes])
        jmin = np.array([p["jacobian_min"] for p in r.probes])
        lmax = np.array([p["lambda_max"] for p in r.probes])
        grade = np.array([p["grade"] for p in r.probes])
        for g in np.unique(grade):
            sel = grade == g
            lab = m if g == grade[0] else None
            ax_j.plot(step[sel], jmax[sel], "-", color=f"C{i}", label=lab)
            ax_j.plot(step[sel], jmin[sel], "--", color=f"C{i}")
            ax_s.semilogy(step[sel], lmax[sel], "-", color=f"C{i}", label=lab)
        eta = r.probes[0]["lr"]
        ax_s.axhline(2.0 / eta, color=f"C{i}", ls=":", lw=1, label=f"2/η, η={eta:g}")
    for y in (-1.0, 1.0):
        ax_j.axhline(y, color="k", lw=0.8)
    ax_j.set_title("eigenvalues of I − ηH: max (solid), min (dashed)", fontsize=10)
    ax_j.set_xlabel("GD step")
    ax_s.set_title("sharpness λ_max(H)", fontsize=10)
    ax_s.set_xlabel("GD step")
    for ax in (ax_j, ax_s):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
