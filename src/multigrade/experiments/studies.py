"""The paper's GD studies (Sections 5-6): learning-rate sweeps and spectra along training.

A study is a task (synthetic, image regression or denoising), a set of methods (MGDL,
SGDL, MSDL) of matched depth, and plain gradient descent. `run_*` return in-memory
results; `runs` writes them and `report` draws them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import optax

from multigrade import runs
from multigrade.analysis.lr_sweep import SweepResult, lr_sweep
from multigrade.analysis.stability import DENSE_MAX, make_stability_probe
from multigrade.model import mgdl, msdl, sgdl
from multigrade.train import FitResult, fit

TASKS = ("synthetic", "regression", "denoise")
STUDY_METHODS = ("mgdl", "sgdl", "msdl")

# (width, grades, hidden layers per grade) of the paper's studies, SPEC §4.
SWEEP_ARCHITECTURES = {"synthetic": (32, 4, 1), "regression": (128, 4, 2), "denoise": (48, 4, 1)}
SPECTRUM_ARCHITECTURES = {"synthetic": (32, 4, 1), "regression": (48, 4, 1),
                          "denoise": (48, 4, 1)}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """What a study trains. Unset architecture fields take the paper's for the task."""

    task: str = "synthetic"
    methods: tuple[str, ...] = ("mgdl", "sgdl")
    setting: int = 1
    image: str | None = None
    size: int | None = 64
    data_dir: str | None = None
    sigma: float = 10 / 255
    beta: float = 1e-3
    lam: float = 1e-4
    alpha: float = 0.99
    width: int | None = None
    grades: int | None = None
    layers_per_grade: int | None = None
    init: str = "he"
    seed: int = 0
    noise_seed: int = 0

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {TASKS}")
        bad = [m for m in self.methods if m not in STUDY_METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown method(s) {bad or self.methods}; "
                             f"choose from {STUDY_METHODS}")
        for name in ("width", "grades", "layers_per_grade"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {v}")

    def architecture(self, table: dict) -> tuple[int, int, int]:
        width, grades, layers = table[self.task]
        return (self.width or width, self.grades or grades, self.layers_per_grade or layers)


def study_problem(cfg: StudyConfig):
    """The study's problem: synthetic setting, image regression or denoising."""
    from multigrade.images import load_image
    from multigrade.problems import denoising, image_regression, synthetic

    if cfg.task == "synthetic":
        return synthetic(cfg.setting)
    if cfg.image is None:
        raise ValueError(f"the {cfg.task} task needs an image (--image NAME_OR_PATH)")
    image = load_image(cfg.image, size=cfg.size, data_dir=cfg.data_dir)
    if cfg.task == "regression":
        return image_regression(image, name=cfg.image)
    return denoising(image, cfg.sigma, key=jax.random.key(cfg.noise_seed), beta=cfg.beta,
                     lam=cfg.lam, alpha=cfg.alpha, name=cfg.image)


def study_model(method: str, cfg: StudyConfig, table: dict, out_dim: int = 1):
    """MGDL of K grades × L layers, SGDL of K·L layers, or the paper's MSDL."""
    width, grades, layers = cfg.architecture(table)
    if method == "mgdl":
        return mgdl([[width] * layers] * grades, out_dim=out_dim, init=cfg.init)
    if method == "sgdl":
        return sgdl([width] * (grades * layers), out_dim=out_dim, init=cfg.init)
    return msdl(out_dim=out_dim, init=cfg.init)


def _per_method(values: Sequence[float], methods: Sequence[str], what: str) -> dict:
    if len(values) == 1:
        return {m: float(values[0]) for m in methods}
    if len(values) != len(methods):
        raise ValueError(f"give one {what} or one per method ({len(methods)}), "
                         f"got {len(values)}")
    return {m: float(v) for m, v in zip(methods, values)}


def _progress(factory, method: str, cfg: StudyConfig) -> list:
    """The progress callback of a method (`factory(label, number of grades)`), if any."""
    grades = cfg.architecture(SWEEP_ARCHITECTURES)[1] if method == "mgdl" else 1
    return [] if factory is None else [factory(method, grades)]


def run_lr_sweep(cfg: StudyConfig, learning_rates: Sequence[float], steps: int, *,
                 record_every: int = 10, progress=None) -> dict[str, SweepResult]:
    """Every learning rate × method with full-batch GD; `steps` per grade (SGDL and MSDL,
    one grade, train `steps` too). `progress(label, grades)` makes a progress callback."""
    problem = study_problem(cfg)
    return {m: lr_sweep(study_model(m, cfg, SWEEP_ARCHITECTURES, problem.out_dim), problem,
                        learning_rates, epochs=steps, key=jax.random.key(cfg.seed),
                        record_every=record_every, callbacks=_progress(progress, m, cfg))
            for m in cfg.methods}


def run_spectrum(cfg: StudyConfig, learning_rates: Sequence[float], steps: int,
                 interval: int, *, record_every: int = 10, dense_max: int = DENSE_MAX,
                 k: int = 5, progress=None, density: int = 0) -> dict[str, FitResult]:
    """Trains each method with GD at its learning rate and, every `interval` steps of each
    grade, the stability summary of the current grade's Hessian (`FitResult.probes`);
    with `density` SLQ probes, also its spectral density and trace."""
    lrs = _per_method(learning_rates, cfg.methods, "learning rate")
    problem = study_problem(cfg)
    out = {}
    for m in cfg.methods:
        model = study_model(m, cfg, SPECTRUM_ARCHITECTURES, problem.out_dim)
        probe = make_stability_probe(lrs[m], dense_max=dense_max, k=k,
                                     key=jax.random.key(cfg.seed + 1), density=density)
        out[m] = fit(model, problem, optimizer=optax.sgd(lrs[m]), epochs=steps,
                     key=jax.random.key(cfg.seed), record_every=record_every,
                     probe=probe, probe_every=interval, callbacks=_progress(progress, m, cfg))
    return out


def save_sweep(out: Path, sweeps: dict[str, SweepResult], config: dict) -> Path:
    """A learning-rate sweep into a claimed run directory: `sweep.json` / `sweep.csv` (one
    row per method × rate), `histories.csv` (every record of every run), `config.json`,
    `sweep.png`; the status is written last."""
    from multigrade import report

    out = Path(out)
    rows = [row for s in sweeps.values() for row in s.rows()]
    runs.write_json(out / "config.json", config)
    runs.write_json(out / "environment.json", runs.environment())
    runs.write_json(out / "sweep.json", {
        "runs": rows,
        "largest_stable_lr": {m: s.largest_stable_lr for m, s in sweeps.items()},
        "seconds": {m: s.seconds for m, s in sweeps.items()}})
    runs.write_rows(out / "sweep.csv", [{k: v for k, v in r.items() if k != "grade_labels"}
                                        for r in rows])
    hist = []
    for m, s in sweeps.items():
        for lr, r in zip(s.learning_rates, s.results):
            n = len(r.history.get("step", []))
            hist += [{"method": m, "lr": float(lr), **{k: r.history[k][i].item()
                                                       for k in r.history}} for i in range(n)]
    runs.write_rows(out / "histories.csv", hist)
    report.plot_sweep(sweeps, out / "sweep.png")
    runs.write_status(out, "completed", command=config.get("command"))
    return out


def save_spectrum(out: Path, results: dict[str, FitResult], config: dict) -> Path:
    """Spectra along training into a claimed run directory: `spectrum.csv` (one row per
    method × probe), `eigenvalues.npz` (`<method>/<probe index>`: Hessian eigenvalues,
    ascending), `config.json`, per method `<method>/history.csv` and `metrics.json`, and
    `spectrum.png`; with densities, `density.npz` (`<method>/<probe>/nodes|weights`, SLQ)
    and `density.png`. The status is written last."""
    from multigrade import report
    from multigrade.experiments.runner import result_summary

    out = Path(out)
    runs.write_json(out / "config.json", config)
    runs.write_json(out / "environment.json", runs.environment())
    rows, arrays, density = [], {}, {}
    for m, r in results.items():
        for i, p in enumerate(r.probes):
            rows.append({"method": m, **{k: v for k, v in p.items()
                                         if k != "eigenvalues" and not k.startswith("density")}})
            arrays[f"{m}/{i}"] = np.asarray(p["eigenvalues"])
            if "density_nodes" in p:
                density[f"{m}/{i}/nodes"] = p["density_nodes"]
                density[f"{m}/{i}/weights"] = p["density_weights"]
        runs.subdir(out, m)
        runs.write_history(out / m / "history.csv", r.history)
        runs.write_json(out / m / "metrics.json", result_summary(r))
    runs.write_rows(out / "spectrum.csv", rows)
    runs.write_npz(out / "eigenvalues.npz", arrays)
    report.plot_spectrum(results, out / "spectrum.png")
    if density:
        runs.write_npz(out / "density.npz", density)
        report.plot_density(results, out / "density.png")
    runs.write_status(out, "completed", command=config.get("command"))
    return out
