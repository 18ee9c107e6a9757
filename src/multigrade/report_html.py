"""`mgdl report`: one self-contained HTML page (figures embedded as PNG data) of run
directories, comparisons, studies and reproductions. It needs no network access and no
script: open it in any browser, mail it, archive it.

What it shows: a summary table (a reproduction's claims and verdicts; otherwise one row
per run with its final metrics), then per run its configuration, loss and PSNR curves
against epochs, seconds and FLOPs with grade boundaries, the image after each grade beside
the observation and the baselines, and the studies' figures (learning-rate sweeps,
GD-Jacobian spectra and critical learning rates).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from multigrade import runs

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.holds { background: #dff3df; } td.does-not-hold { background: #f8dcdc; }
td.inconclusive { background: #fff3cd; }
figure { margin: 0.5em 0 1.5em; } figure img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f7f7f7; padding: 0.6em; font-size: 0.8em; overflow-x: auto; }
details { margin-bottom: 1em; }
"""


def _esc(x) -> str:
    return html.escape(str(x))


def _png(draw: Callable[[io.BytesIO], object]) -> str:
    buf = io.BytesIO()
    draw(buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(data: str | None, caption: str) -> str:
    if not data:
        return ""
    return (f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>\n")


def _file_png(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode("ascii") if path.is_file() else None


def png_html(path: str | Path, caption: str = "") -> str:
    """A PNG file as an HTML `<figure>` with the image embedded (no file to serve beside
    the page): what the report and the docs' executed tutorials show figures with."""
    data = _file_png(Path(path))
    if data is None:
        raise FileNotFoundError(f"no PNG file at {path}")
    return _figure(data, caption or Path(path).name)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]],
           classes: Sequence[str | None] | None = None) -> str:
    out = ["<table><thead><tr>", *[f"<th>{_esc(h)}</th>" for h in header], "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        out.append("<tr>")
        for j, cell in enumerate(row):
            cls = classes[i] if classes and header[j] == "verdict" else None
            attr = f' class="{cls}"' if cls else ""
            out.append(f"<td{attr}>{_esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>\n")
    return "".join(out)


def _num(v, spec=".4g") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else \
        format(v, spec)


# ---------------------------------------------------------------------------------------
# What a directory is


def kind_of(path: Path) -> str:
    """reproduction, compare, fit, lr-sweep, spectrum, or unknown."""
    from multigrade.experiments.reproduce import is_reproduction

    if is_reproduction(path):
        return "reproduction"
    if (path / "comparison.json").is_file():
        return "compare"
    if (path / "sweep.json").is_file():
        return "lr-sweep"
    if (path / "spectrum.csv").is_file():
        return "spectrum"
    if (path / runs.METRICS).is_file():
        return "fit"
    return "unknown"


# ---------------------------------------------------------------------------------------
# Figures


TIMELINE_AXES = (("step", "epoch"), ("seconds", "seconds"), ("flops", "GFLOP"))


def timeline_series(run_dirs: dict[str, Path]) -> tuple[list[tuple], str | None]:
    """What `plot_timelines` draws, as data: `(row, col, label, x, y, boundaries)` per
    curve (row 0 the training loss, row 1 the PSNR the history records), and that PSNR's
    name."""
    from multigrade.experiments.verdicts import psnr_key, timeline

    lines = {label: timeline(d) for label, d in run_dirs.items()}
    psnr = next((psnr_key(t) for t in lines.values() if psnr_key(t)), None)
    series = []
    for label, t in lines.items():
        if not len(t["step"]):
            continue
        ends = [np.flatnonzero(t["grade"] == g)[-1] for g in np.unique(t["grade"])[:-1]]
        for col, (axis, _) in enumerate(TIMELINE_AXES):
            x = t[axis] / (1e9 if axis == "flops" else 1.0)
            series.append((0, col, label, x, t["train_loss"], x[ends]))
            if psnr is not None and psnr in t:
                series.append((1, col, label, x, t[psnr], x[ends]))
    return series, psnr


def plot_timelines(run_dirs: dict[str, Path], buf) -> None:
    """Loss (log) and PSNR against epochs, seconds and GFLOP, grade boundaries dotted."""
    from multigrade.report import _pyplot

    plt = _pyplot()
    series, psnr = timeline_series(run_dirs)
    rows = 2 if psnr is not None else 1
    fig, axes = plt.subplots(rows, 3, figsize=(14, 3.4 * rows), squeeze=False)
    colors = {label: f"C{i}" for i, label in enumerate(run_dirs)}
    for row, col, label, x, y, ends in series:
        ax = axes[row, col]
        (ax.semilogy if row == 0 else ax.plot)(x, y, color=colors[label], label=label)
        for e in ends:
            ax.axvline(e, color=colors[label], ls=":", lw=0.8)
    for col, (_, name) in enumerate(TIMELINE_AXES):
        axes[rows - 1, col].set_xlabel(name)
        for r in range(rows):
            axes[r, col].grid(alpha=0.3)
            axes[r, col].legend(fontsize=8)
    axes[0, 0].set_ylabel("train loss")
    if psnr is not None:
        axes[1, 0].set_ylabel(psnr.replace("_psnr", " PSNR (dB)"))
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def _grades_png(run_dir: Path, extra: list | None = None) -> str | None:
    from multigrade.report import grade_panels, plot_images

    panels = grade_panels(run_dir)
    if not panels:
        return None
    return _png(lambda b: plot_images(panels + (extra or []), b))


# ---------------------------------------------------------------------------------------
# Sections


def _ran_on(d: Path) -> str:
    """Where `d`'s numbers were computed (its environment.json): the CPU and its cores,
    the backend, JAX and the commit, and the other machines of earlier sittings when the
    run was resumed; minutes compare only between like machines."""
    path = d / runs.ENVIRONMENT
    if not path.is_file():
        return ""
    env = runs.read_json(path)
    where = [_machine(env), env.get("backend"), env.get("jax") and f"JAX {env['jax']}",
             env.get("git_commit") and f"commit {str(env['git_commit'])[:10]}"]
    text = ", ".join(w for w in where if w)
    now = _machine(env)
    others = list(dict.fromkeys(
        m for m in (_machine(e) for e in env.get("earlier", []) if isinstance(e, dict))
        if m and m != now))
    if others:
        text += f"; resumed from earlier sittings on {' and '.join(others)}"
    return f"<p>ran on {_esc(text)}</p>\n"


def _machine(env: dict) -> str:
    """The CPU and its cores of one environment record ('' when it names neither)."""
    return ", ".join(w for w in (env.get("cpu"), env.get("cores")
                                 and f"{env['cores']} core(s)") if w)


def _config_block(run_dir: Path) -> str:
    path = run_dir / runs.CONFIG
    if not path.is_file():
        path = run_dir / "config.json"
    if not path.is_file():
        return ""
    return (f"<details><summary>configuration ({_esc(path.name)})</summary>"
            f"<pre>{_esc(path.read_text(encoding='utf-8'))}</pre></details>\n")


def _metrics_rows(run_dir: Path) -> list[list[str]]:
    """One row per method of a fit or comparison directory (every run of a baseline's
    grid, by its directory's name)."""
    dirs = [run_dir] if kind_of(run_dir) == "fit" else \
        [d for d in sorted(run_dir.iterdir()) if (d / runs.METRICS).is_file()]
    rows = []
    for d in dirs:
        m = runs.read_summary(d)
        per_grade = "/".join(_num(g["metrics"].get("test_psnr"), ".2f") for g in m["grades"])
        label = m["model"] if d == run_dir or d.name == m["model"] else d.name
        rows.append([str(run_dir), label, _num(m.get("params"), ".0f"),
                     _num(m["metrics"].get("train_loss")),
                     _num(m["metrics"].get("test_psnr"), ".2f"),
                     _num(m["metrics"].get("test_ssim"), ".3f"), per_grade, str(m["epochs"]),
                     _num(m["seconds"], ".1f")])
    return rows


METRIC_HEADER = ("run", "model", "params", "train loss", "test dB", "SSIM",
                 "dB after each grade", "epochs", "seconds")
SELECTION_HEADER = ("model", "rule", "σ_n (1/255)", "choice dB", "SSIM", "grades",
                    "epochs kept", "stopped by", "oracle dB", "oracle grade/epoch", "gap dB")


def _selection_rows(dirs: dict[str, Path]) -> list[list[str]]:
    """What each method kept without the clean image against the oracle's choice."""
    rows = []
    for d in dirs.values():
        m = runs.read_summary(d)
        s = m.get("selection")
        if not s or "oracle" not in s:
            continue
        sigma = s.get("noise_level")
        rows.append([m["model"], s["mode"], "" if sigma is None else
                     f"{sigma:.2f} ({s['noise_level_source']})", _num(s["test_psnr"], ".2f"),
                     _num(s.get("test_ssim"), ".3f"), str(s["grades"]),
                     ",".join(map(str, s["epochs"])), s["stopped_by"],
                     _num(s["oracle"]["test_psnr"], ".2f"),
                     f"{s['oracle']['grade']}/{s['oracle']['epoch']}", _num(s["gap"], ".2f")])
    return rows


def _selection_section(dirs: dict[str, Path]) -> str:
    """The table of what each method kept without the clean image, and, when a rule chose
    it, the curves of that rule beside the true PSNR ("" for runs without a record)."""
    selected = _selection_rows(dirs)
    if not selected:
        return ""
    out = "<h3>Chosen without the clean image</h3>\n" + _table(SELECTION_HEADER, selected)
    if any(r[1] != "none" for r in selected):
        from multigrade.report import plot_history

        out += _figure(_png(lambda b: plot_history(dirs, b)),
                       "residual, SURE's PSNR estimate and the held-out loss beside the "
                       "true PSNR")
    return out


def _settings(dirs: dict[str, Path]) -> str:
    """What each method trained with (restoration: lr, β, λ, and where they come from)."""
    from multigrade.experiments import tasks
    from multigrade.experiments.summaries import recipe_words

    rows = []
    for name, d in dirs.items():
        if not (d / runs.CONFIG).is_file():
            continue
        cfg = runs.read_toml(d / runs.CONFIG)
        problem, train = cfg.get("problem", {}), cfg.get("train", {})
        if problem.get("task") not in tasks.names(restoration=True):
            continue
        source = cfg.get("methods", {}).get(name, {}).get("source", "")
        model = cfg.get("model", {})
        grades = model.get("grades", 1) if model.get("method", "mgdl") == "mgdl" else 1
        rows.append([name, _num(train.get("lr")), _num(problem.get("beta")),
                     _num(problem.get("lam")), recipe_words(train, grades), source or "given"])
    return _table(("method", "lr", "β", "λ", "training", "from"), rows) if rows else ""


def _run_section(run_dir: Path, title: str | None = None) -> str:
    from multigrade.report import compared_dirs

    kind = kind_of(run_dir)
    parts = [f"<h2>{_esc(title or run_dir)}</h2>\n<p>{_esc(kind)} · {_esc(run_dir)}</p>\n",
             _ran_on(run_dir), _config_block(run_dir)]
    if kind in ("fit", "compare"):
        parts.append(_table(METRIC_HEADER, _metrics_rows(run_dir)))
        if kind == "compare" and (run_dir / "baselines.json").is_file():
            parts.append(_table(("baseline", "parameter", "test dB", "SSIM"), [
                [b["name"], ", ".join(f"{k} {v:.3g}" for k, v in b.items()
                                      if k not in ("name", "choice", "test_psnr", "test_ssim")),
                 _num(b["test_psnr"], ".2f"), _num(b["test_ssim"], ".3f")]
                for b in runs.read_json(run_dir / "baselines.json")]))
        dirs = {runs.read_summary(run_dir)["model"]: run_dir} if kind == "fit" \
            else compared_dirs(run_dir)
        parts.append(_settings(dirs))
        parts.append(_figure(_png(lambda b: plot_timelines(dirs, b)),
                             "training loss and PSNR against epochs, seconds and GFLOP "
                             "(dotted: grade boundaries)"))
        parts.append(_selection_section(dirs))
        if kind == "compare":
            from multigrade.report import baseline_panels, comparison_panels, plot_images

            panels, classical = comparison_panels(run_dir), baseline_panels(run_dir)
            beside = " and the classical baselines" if classical else ""
            if panels:
                parts.append(_figure(_png(lambda b: plot_images(panels, b)),
                                     f"the references{beside.replace(' and', ',')} and "
                                     "each method's final image"))
            if "mgdl" in dirs:
                parts.append(_figure(_grades_png(dirs["mgdl"], classical),
                                     "MGDL after each grade" + (f", beside the observation"
                                                                f"{beside}" if classical
                                                                else "")))
        else:
            parts.append(_figure(_grades_png(run_dir), "the image after each grade"))
    elif kind == "lr-sweep":
        sweep = runs.read_json(run_dir / "sweep.json")
        parts.append(_table(("method", "η", "label", "train loss", "epochs"), [
            [r["method"], f"{r['lr']:g}", r["label"], _num(r.get("train_loss")),
             str(r["epochs"])] for r in sweep["runs"]]))
        parts.append(_table(("method", "largest stable η"), [
            [m, _num(v)] for m, v in sweep["largest_stable_lr"].items()]))
        parts.append(_figure(_file_png(run_dir / "sweep.png"),
                             "training loss per learning rate (GD), one panel per method"))
    elif kind == "spectrum":
        parts += _spectrum_parts(run_dir)
    return "".join(parts)


def _spectrum_parts(run_dir: Path) -> list[str]:
    """A spectrum study: the probes' table and figure, and the densities if drawn."""
    parts = []
    rows = runs.read_rows(run_dir / "spectrum.csv")
    parts.append(_table(
        ("method", "η", "grade", "step", "λ_max(H)", "min eig J", "max eig J",
         "outside [-1,1]", "critical η = 2/λ_max"),
        [[r["method"], _num(r.get("lr")), _num(r.get("grade"), ".0f"),
          _num(r.get("step"), ".0f"), _num(r.get("lambda_max")),
          _num(r.get("jacobian_min")), _num(r.get("jacobian_max")),
          _num(r.get("num_outside"), ".0f"), _num(r.get("critical_lr"))] for r in rows]))
    parts.append(_figure(_file_png(run_dir / "spectrum.png"),
                         "eigenvalues of I − ηH along training (band [−1, 1]) and the "
                         "sharpness λ_max against 2/η (the critical learning rate)"))
    if (run_dir / "density.png").is_file():
        parts.append(_table(("method", "grade", "step", "tr H (SLQ)", "± s.e.", "tr H (dense)"), [
            [r["method"], _num(r.get("grade"), ".0f"), _num(r.get("step"), ".0f"),
             _num(r.get("trace")), _num(r.get("trace_se")), _num(r.get("trace_dense"))]
            for r in rows]))
        parts.append(_figure(_file_png(run_dir / "density.png"),
                             "the Hessian's spectral density at each probe "
                             "(stochastic Lanczos quadrature)"))
    return parts


def _reproduction_section(out: Path) -> str:
    from multigrade.experiments.reproduce import COLUMNS, MANIFEST, table_rows
    from multigrade.experiments.verdicts import CLAIMS

    manifest = runs.read_json(out / MANIFEST)
    rows = runs.read_json(out / "summary.json")["rows"] if (out / "summary.json").is_file() \
        else []
    parts = [f"<h2>Reproduction: {_esc(out)}</h2>\n",
             f"<p>scale {_esc(manifest['scale'])}, {manifest['seeds']} seed(s) per experiment. "
             "Ours: mean ± standard deviation over seeds; a verdict holds or fails only when "
             "the difference exceeds the spread.</p>\n", _ran_on(out),
             "<ol>", *[f"<li>{_esc(c)}</li>" for c in CLAIMS.values()], "</ol>\n",
             _table(COLUMNS, table_rows(rows),
                    [r["verdict"].replace(" ", "-") for r in rows])]
    for name in manifest["experiments"]:
        d = out / name / "seed0"
        if runs.is_run_dir(d) and runs.read_status(d).get("state") == "completed":
            parts.append(_run_section(d, f"{name} (seed 0)"))
    return "".join(parts)


GENERATOR = '<meta name="generator" content="multigrade report">'


def is_report(path: str | Path) -> bool:
    """Whether the file `path` is an HTML report this module wrote (its generator tag)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    return GENERATOR.encode() in head


def _check_output(output: Path) -> None:
    """A report is written to a new file or over an earlier report, never over anything
    else."""
    if output.is_dir():
        raise ValueError(f"{output} is a directory: give the report's file name")
    if (output.exists() or output.is_symlink()) and not is_report(output):
        raise ValueError(f"{output} exists and is not an mgdl report: not writing over it "
                         "(choose another -o)")


def _check_input(p: Path) -> None:
    if not p.is_dir():
        raise ValueError(f"{p} is not a directory")
    kind = kind_of(p)
    if kind != "reproduction" and runs.is_run_dir(p):
        state = runs.read_status(p)["state"]
        if state != "completed":
            raise ValueError(f"{p} is not completed ({state}): `mgdl resume {p}` first")
    if kind == "unknown":
        raise ValueError(f"{p} is not a run, comparison, study or reproduction directory")


def _sections(paths: list[Path]) -> list[str]:
    body = []
    runs_only = [p for p in paths if kind_of(p) in ("fit", "compare")]
    if runs_only:
        body += ["<h2>Summary</h2>\n", _table(
            METRIC_HEADER, [r for p in runs_only for r in _guarded(p, _metrics_rows)])]
    for p in paths:
        body.append(_guarded(p, _reproduction_section if kind_of(p) == "reproduction"
                             else _run_section))
    return body


def _guarded(p: Path, make: Callable):
    """`make(p)`, with a file of another structure than the store writes named in one
    error line (the file last read) instead of a traceback."""
    try:
        return make(p)
    except runs.RunDirError:
        raise
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        if type(e).__module__.startswith(("jaxtyping", "beartype")):
            raise  # a type check of the code itself, not a file's content
        raise ValueError(f"{p}: cannot read {runs.last_read() or 'its files'}: it is not "
                         f"what mgdl writes ({type(e).__name__}: {e})") from None


def write_report(paths: Sequence[str | Path], output: str | Path) -> Path:
    """Writes the HTML report of `paths` (run, comparison, study or reproduction
    directories) to `output`: a new file, or an earlier report (never another file)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("name at least one run directory")
    for p in paths:
        _check_input(p)
    output = Path(output)
    _check_output(output)
    body = ["<h1>multigrade report</h1>\n",
            f"<p>written {_esc(_dt.datetime.now().isoformat(timespec='seconds'))}</p>\n",
            *_sections(paths)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"{GENERATOR}"
            "<title>multigrade report</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{CSS}</style></head><body>\n{''.join(body)}</body></html>\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    runs.write_text(output, page)
    return output
