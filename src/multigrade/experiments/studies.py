"""The paper's GD studies (Sections 5-6): learning-rate sweeps and spectra along training.

A study is a `RunConfig` with `command = "lr-sweep"` or `"spectrum"` (its `[study]`
table): a task that allows studies (`tasks.Task.studies`: synthetic, image regression,
denoising), a set of methods (MGDL, SGDL, MSDL) of matched depth, and plain gradient
descent. The runner builds the problem once and hands it to `run_*`, which return
in-memory results; `save_*` write them and `report` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import optax

from multigrade import runs
from multigrade.analysis.lr_sweep import SweepResult, lr_sweep
from multigrade.analysis.stability import make_stability_probe
from multigrade.experiments.config import RunConfig
from multigrade.model import mgdl, msdl, sgdl
from multigrade.problems import Problem
from multigrade.train import FitResult, Probe, fit

# (width, grades, hidden layers per grade) of the paper's studies, SPEC §4.
SWEEP_ARCHITECTURES = {"synthetic": (32, 4, 1), "regression": (128, 4, 2), "denoise": (48, 4, 1)}
SPECTRUM_ARCHITECTURES = {"synthetic": (32, 4, 1), "regression": (48, 4, 1),
                          "denoise": (48, 4, 1)}


def paper_architecture(command: str, task: str) -> tuple[int, int, int]:
    """(width, grades, hidden layers per grade) of the paper's `command` study on `task`."""
    table = SWEEP_ARCHITECTURES if command == "lr-sweep" else SPECTRUM_ARCHITECTURES
    return table[task]


def study_model(method: str, cfg: RunConfig, out_dim: int = 1):
    """MGDL of K grades × L layers, SGDL of K·L layers, or the paper's MSDL (`cfg.model`'s
    width, grades, layers per grade and initialiser)."""
    m = cfg.model
    if method == "mgdl":
        return mgdl([[m.width] * m.layers] * m.grades, out_dim=out_dim, init=m.init)
    if method == "sgdl":
        return sgdl([m.width] * m.depth, out_dim=out_dim, init=m.init)
    return msdl(out_dim=out_dim, init=m.init)


def _per_method(values: Sequence[float], methods: Sequence[str], what: str) -> dict:
    if len(values) == 1:
        return {m: float(values[0]) for m in methods}
    if len(values) != len(methods):
        raise ValueError(f"give one {what} or one per method ({len(methods)}), "
                         f"got {len(values)}")
    return {m: float(v) for m, v in zip(methods, values)}


def _progress(factory, method: str, cfg: RunConfig, callbacks=()) -> list:
    """The progress callback of a method (`factory(label, number of grades)`), if any, and
    `callbacks`."""
    grades = cfg.model.grades if method == "mgdl" else 1
    return [*([] if factory is None else [factory(method, grades)]), *callbacks]


def run_lr_sweep(cfg: RunConfig, problem: Problem, *, progress=None, callbacks=()
                 ) -> dict[str, SweepResult]:
    """Every learning rate (`study.learning_rates`) × method with full-batch GD,
    `train.epochs` steps per grade (SGDL and MSDL, one grade, train as many).
    `progress(label, grades)` makes a progress callback; `callbacks` go to every fit."""
    t = cfg.train
    return {m: lr_sweep(study_model(m, cfg, problem.out_dim), problem,
                        cfg.study.learning_rates, epochs=t.epochs,
                        key=jax.random.key(t.seed), record_every=t.record_every,
                        callbacks=_progress(progress, m, cfg, callbacks))
            for m in cfg.study.methods}


def run_spectrum(cfg: RunConfig, problem: Problem, *, progress=None, callbacks=()
                 ) -> dict[str, FitResult]:
    """Trains each method with GD at its learning rate and, every `study.interval` steps of
    each grade, the stability summary of the current grade's Hessian (`FitResult.probes`);
    with `study.density` SLQ probes, also its spectral density and trace. `callbacks` go
    to every fit."""
    st, t = cfg.study, cfg.train
    lrs = _per_method(st.learning_rates, st.methods, "learning rate")
    out = {}
    for m in st.methods:
        probe = make_stability_probe(lrs[m], dense_max=st.dense_max, k=5,
                                     key=jax.random.key(t.seed + 1), density=st.density)
        out[m] = fit(study_model(m, cfg, problem.out_dim), problem,
                     optimizer=optax.sgd(lrs[m]), epochs=t.epochs, key=jax.random.key(t.seed),
                     record_every=t.record_every, probe=Probe(probe, st.interval),
                     callbacks=_progress(progress, m, cfg, callbacks))
    return out


def save_sweep(out: Path, sweeps: dict[str, SweepResult], command: str | None) -> Path:
    """A learning-rate sweep into a claimed run directory (whose `config.toml` the runner
    wrote): `sweep.json` / `sweep.csv` (one row per method × rate), `histories.csv` (every
    record of every run), `sweep.png`; the status is written last."""
    from multigrade import report

    out = Path(out)
    rows = [row for s in sweeps.values() for row in s.rows()]
    runs.record_environment(out)
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
    runs.write_status(out, "completed", command=command)
    return out


def save_spectrum(out: Path, results: dict[str, FitResult], command: str | None) -> Path:
    """Spectra along training into a claimed run directory (whose `config.toml` the runner
    wrote): `spectrum.csv` (one row per method × probe), `eigenvalues.npz`
    (`<method>/<probe index>`: Hessian eigenvalues, ascending), per method
    `<method>/history.csv` and `metrics.json`, and `spectrum.png`; with densities,
    `density.npz` (`<method>/<probe>/nodes|weights`, SLQ) and `density.png`. The status is
    written last."""
    from multigrade import report
    from multigrade.experiments.summaries import result_summary

    out = Path(out)
    runs.record_environment(out)
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
        runs.write_history(out / m / runs.HISTORY, r.history)
        runs.write_json(out / m / runs.METRICS, result_summary(r))
    runs.write_rows(out / "spectrum.csv", rows)
    runs.write_npz(out / "eigenvalues.npz", arrays)
    report.plot_spectrum(results, out / "spectrum.png")
    if density:
        runs.write_npz(out / "density.npz", density)
        report.plot_density(results, out / "density.png")
    runs.write_status(out, "completed", command=command)
    return out
