"""Figures. matplotlib is imported here only, never at package import.

Figures of runs are drawn from their run directories (`plot_run`, `plot_history`,
`plot_comparison`), so a run can be drawn again, or reported, long after it trained;
the studies' figures (`plot_sweep`, `plot_spectrum`) take their results in memory.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from multigrade import runs

Target = str | os.PathLike | io.IOBase  # where a figure goes: a file, or a buffer


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _psnr_key(metrics: dict) -> str | None:
    return "test_psnr" if metrics.get("test_psnr") is not None else None


def _db(value) -> str:
    return "" if value is None else f"\n{value:.2f} dB"


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """The figures of one run directory, from its files alone: `history.png` (from
    `history.csv` and `metrics.json`) and, for images, `grades.png` (from `images.npz`:
    the references, then the image after each grade with its test PSNR)."""
    run_dir = Path(run_dir)
    made = [run_dir / runs.HISTORY_PLOT]
    plot_history({_label(run_dir): run_dir}, made[0])
    panels = grade_panels(run_dir)
    if panels:
        made.append(run_dir / runs.GRADES_PLOT)
        plot_images(panels, made[-1])
    return made


def grade_panels(run_dir: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """The references, then the image after each grade with its test PSNR ([] when the
    run has no images)."""
    run_dir = Path(run_dir)
    if not (run_dir / runs.IMAGES).is_file():
        return []
    images = runs.read_npz(run_dir / runs.IMAGES)
    metrics = runs.read_summary(run_dir)
    panels = _references(images, metrics)
    grades = metrics["grades"]
    for g in grades:
        title = f"grade {g['grade']}" if len(grades) > 1 else metrics["model"]
        panels.append((title + _db(g["metrics"].get("test_psnr")),
                       images[f"grade{g['grade']}"]))
    return panels


def _label(run_dir: Path) -> str:
    return runs.read_summary(run_dir)["model"]


def _references(images: dict, metrics: dict) -> list[tuple[str, np.ndarray]]:
    problem = metrics.get("problem", {})
    panels = []
    for name in ("target", "clean", "observed"):
        if f"reference/{name}" in images:
            title = name + (_db(problem.get("observed_psnr")) if name == "observed" else "")
            panels.append((title, images[f"reference/{name}"]))
    return panels


def plot_comparison(run_dir: str | os.PathLike) -> Path | None:
    """`comparison.png` of a comparison directory, from its files: the references, the
    classical baselines (`baselines.npz`) and each method's final image."""
    run_dir = Path(run_dir)
    panels = comparison_panels(run_dir)
    if not panels:
        return None
    plot_images(panels, run_dir / "comparison.png")
    return run_dir / "comparison.png"


def comparison_panels(run_dir: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """The references, the classical baselines and each method's final image."""
    run_dir = Path(run_dir)
    methods = [d for d in compared_dirs(run_dir).values() if (d / runs.IMAGES).is_file()]
    if not methods:
        return []
    first = runs.read_npz(methods[0] / runs.IMAGES)
    panels = _references(first, runs.read_summary(methods[0]))
    panels += baseline_panels(run_dir)
    for d in methods:
        metrics = runs.read_summary(d)
        last = metrics["grades"][-1]["grade"]
        panels.append((metrics["model"] + _db(metrics["metrics"].get("test_psnr")),
                       runs.read_npz(d / runs.IMAGES)[f"grade{last}"]))
    return panels


def compared_dirs(run_dir: str | os.PathLike) -> dict[str, Path]:
    """The methods of a comparison directory and their run directories (a baseline's at
    its chosen setting: one FFN of its σ grid); without `comparison.json`, every
    sub-directory that holds a run."""
    run_dir = Path(run_dir)
    if (run_dir / "comparison.json").is_file():
        comp = runs.read_json(run_dir / "comparison.json")
        return {m: run_dir / v.get("baseline", {}).get("dir", m) for m, v in comp.items()}
    return {d.name: d for d in sorted(run_dir.iterdir()) if (d / runs.METRICS).is_file()}


def baseline_panels(run_dir: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """The classical baselines of a comparison directory (`baselines.npz`), with PSNRs."""
    run_dir = Path(run_dir)
    if not (run_dir / "baselines.json").is_file():
        return []
    found = runs.read_npz(run_dir / "baselines.npz")
    return [(b["name"].replace(" (Chambolle)", "") + _db(b["test_psnr"]), found[f"baseline{i}"])
            for i, b in enumerate(runs.read_json(run_dir / "baselines.json"))]


def plot_images(panels: list[tuple[str, np.ndarray]], path: Target) -> None:
    """A row of images in [0, 1] (gray `(H, W)` or colour `(H, W, 3)`) with titles."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), squeeze=False)
    for ax, (title, im) in zip(axes[0], panels):
        ax.imshow(np.clip(im, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_history(run_dirs: dict[str, str | os.PathLike], path: Target) -> None:
    """Loss (log scale) and PSNR against epochs of one or more run directories (read from
    their `history.csv` and `metrics.json`), grade boundaries dotted. Restoration adds the
    residual ‖A(P) − y‖²/N to the loss panel (with the discrepancy principle's level τσ²
    when the run stopped by it) and SURE's estimate of the PSNR beside the true PSNR. A
    grade trained from several starts draws the tries it did not keep as thin lines."""
    curves, levels, others = history_curves(run_dirs)
    plot_curves(curves, path, levels, others)


def history_curves(run_dirs: dict[str, str | os.PathLike]) -> tuple[dict, dict, dict]:
    """What `plot_history` draws of run directories: `(curves, levels, others)` as
    `curves_figure` takes them."""
    curves, levels, others = {}, {}, {}
    for label, d in run_dirs.items():
        d = Path(d)
        metrics = runs.read_summary(d)
        grades = metrics["grades"] + metrics.get("dropped", [])
        ends = np.cumsum([g["epochs"] for g in grades])
        curves[label] = (runs.read_history(d / runs.HISTORY), ends[:-1])
        sel = metrics.get("selection") or {}
        if sel.get("mode") == "discrepancy":
            levels[label] = sel["tau"] * (sel["noise_level"] / 255) ** 2
        others[label] = [{k: np.asarray(v, dtype=float) for k, v in c.items()}
                         for g in grades
                         for t, c in enumerate(g.get("tries_history") or [], start=1)
                         if t != g.get("kept_try") and c.get("step")]
    return curves, levels, others


def plot_curves(curves: dict[str, tuple[dict, np.ndarray]], path: Target,
                levels: dict[str, float] | None = None,
                others: dict[str, list[dict]] | None = None) -> None:
    """`{label: (history columns, grade-boundary steps)}` as loss and PSNR panels;
    `levels` draws a residual level per label (the discrepancy principle's τσ²), `others`
    the records of tries a grade did not keep (`GradeSummary.tries_history`) thin."""
    fig = curves_figure(curves, levels, others)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def curves_figure(curves: dict[str, tuple[dict, np.ndarray]],
                  levels: dict[str, float] | None = None,
                  others: dict[str, list[dict]] | None = None):
    """`plot_curves`'s figure, not saved."""
    plt = _pyplot()
    has_psnr = any(k.endswith("psnr") for h, _ in curves.values() for k in h)
    ncols = 2 if has_psnr else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.8), squeeze=False)
    for i, (label, (h, ends)) in enumerate(curves.items()):
        color = f"C{i}"
        if not len(h.get("step", [])):
            continue
        for name, style in (("train", "-"), ("val", "--"), ("test", "-.")):
            if f"{name}_loss" in h and name != "test":
                axes[0, 0].semilogy(h["step"], h[f"{name}_loss"], style, color=color,
                                    label=f"{label} {name}")
            if has_psnr and f"{name}_psnr" in h:
                axes[0, 1].plot(h["step"], h[f"{name}_psnr"], style, color=color,
                                label=f"{label} {name}")
        if "residual" in h:
            axes[0, 0].semilogy(h["step"], h["residual"], ":", color=color, lw=1,
                                label=f"{label} residual")
        if (levels or {}).get(label) is not None:
            axes[0, 0].axhline(levels[label], color=color, ls="--", lw=0.8,
                               label=f"{label} τσ²")
        if has_psnr and "sure_psnr" in h:
            axes[0, 1].plot(h["step"], h["sure_psnr"], ":", color=color,
                            label=f"{label} SURE estimate")
        for j, c in enumerate((others or {}).get(label, [])):
            name = f"{label} tries not kept" if j == 0 else None
            axes[0, 0].semilogy(c["step"], c["train_loss"], "-", color=color, lw=0.7,
                                alpha=0.45, label=name)
            if has_psnr and "test_psnr" in c:
                axes[0, 1].plot(c["step"], c["test_psnr"], "-", color=color, lw=0.7,
                                alpha=0.45, label=name)
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
    return fig


def plot_sweep_axes(rows: list[dict], axes: list[str], metric: str,
                    path: Target) -> None:
    """A sweep's metric against each swept axis: every run a dot (diverged and failed runs
    are left out), the mean over the runs at each value a line."""
    plt = _pyplot()
    fig, ax_row = plt.subplots(1, len(axes), figsize=(4 * len(axes), 3.4), squeeze=False)
    ok = [r for r in rows if r.get("status") == "completed" and r.get(metric) is not None
          and np.isfinite(r[metric])]
    for ax, axis in zip(ax_row[0], axes):
        values = list(dict.fromkeys(r[axis] for r in rows))
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        pos = {v: (v if numeric else i) for i, v in enumerate(values)}
        xs = [pos[r[axis]] for r in ok]
        ax.plot(xs, [r[metric] for r in ok], "o", alpha=0.6)
        means = [(pos[v], np.mean([r[metric] for r in ok if r[axis] == v]))
                 for v in values if any(r[axis] == v for r in ok)]
        if means:
            ax.plot(*zip(*sorted(means)), "-", color="k", lw=1)
        if numeric and min(values) > 0 and max(values) / min(values) >= 100:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(axis)
        ax.grid(alpha=0.3)
    ax_row[0, 0].set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_sweep(sweeps: dict, path: Target) -> None:
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


def plot_density(results: dict, path: Target, *, points: int = 400) -> None:
    """One panel per method: the Hessian's spectral density (SLQ, each node a Gaussian of
    1 % of the panel's range) at every probe, coloured by grade, darker later in it."""
    plt = _pyplot()
    found = {m: [p for p in r.probes if "density_nodes" in p] for m, r in results.items()}
    found = {m: ps for m, ps in found.items() if ps}
    fig, axes = plt.subplots(1, max(len(found), 1), figsize=(5 * max(len(found), 1), 3.8),
                             squeeze=False)
    for ax, (m, ps) in zip(axes[0], found.items()):
        nodes = np.concatenate([np.ravel(p["density_nodes"]) for p in ps])
        lo, hi = float(nodes.min()), float(nodes.max())
        pad = 0.05 * (hi - lo) + 1e-12
        grid = np.linspace(lo - pad, hi + pad, points)
        grades = sorted({p["grade"] for p in ps})
        for p in ps:
            d = _density(p, grid, 0.01 * (hi - lo) + 1e-12)
            mine = [q for q in ps if q["grade"] == p["grade"]]
            shade = 0.35 + 0.65 * (mine.index(p) + 1) / len(mine)
            ax.semilogy(grid, np.maximum(d, 1e-8), color=f"C{grades.index(p['grade'])}",
                        alpha=shade, lw=1,
                        label=f"grade {p['grade']}, step {p['step']}" if len(grades) > 1
                        else f"step {p['step']}")
        ax.set_ylim(bottom=1e-6)
        ax.set_title(f"{m}: Hessian spectral density (SLQ)", fontsize=10)
        ax.set_xlabel("eigenvalue λ of H")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _density(probe: dict, grid: np.ndarray, width: float) -> np.ndarray:
    from multigrade.analysis.density import SpectralDensity

    return SpectralDensity(np.asarray(probe["density_nodes"]),
                           np.asarray(probe["density_weights"])).smoothed(grid, width)


def plot_spectrum(results: dict, path: Target) -> None:
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
