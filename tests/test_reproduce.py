"""`mgdl reproduce`: presets, verdicts, a tiny run of every experiment kind, the HTML report
in a real headless Chromium."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from browser import browser
from multigrade import runs
from multigrade.experiments import from_dict, load_config
from multigrade.experiments import verdicts as V
from multigrade.experiments.presets import (
    EXPERIMENTS,
    FAST_GROUPS,
    GROUP_NAMES,
    QUICK_ALL,
    SCALES,
    select,
)
from multigrade.experiments.reproduce import MANIFEST, reproduce
from procs import mgdl_here

pytestmark = pytest.mark.xdist_group("reproduce")  # its tests on one worker: one reproduction

TINY = ["problem.image=camera", "problem.size=20", "model.width=8", "train.epochs=20",
        "train.record_every=10", "study.interval=10"]
KINDS = ("regression-camera", "denoise-butterfly-10", "deblur-butterfly-3", "lr-synthetic-1",
         "eigen-synthetic", "msdl")


# ---------------------------------------------------------------------------------------
# Presets


@pytest.mark.parametrize("scale", SCALES)
def test_every_preset_validates_and_round_trips_through_toml(scale):
    for e in EXPERIMENTS.values():
        if scale == "fast" and e.group not in FAST_GROUPS:  # refused (test_fast_scale.py)
            continue
        cfg = e.config(scale)
        assert from_dict(runs.read_toml_text(runs.toml_text(cfg.to_dict()))) == cfg, e.name
        assert e.group in GROUP_NAMES and set(e.claims) <= set(V.CLAIMS)


def test_presets_follow_the_paper():
    for e in select("denoise", "paper") + select("deblur", "paper"):
        p, m, t = (e.config("paper").problem, e.config("paper").model, e.config("paper").train)
        assert (p.beta, p.lam, p.alpha, t.optimizer, t.lr, t.epochs, t.record_every) == \
            (0.1, 0.01, 0.99, "adam", 1e-3, 20_000, 100)
        assert (m.grades, m.layers_per_grade, m.width, p.size) == (4, 3, 128, None)
    assert {e.name for e in select("denoise", "paper")} == {
        f"denoise-{i}-{s}" for i in ("butterfly", "male", "chest") for s in range(10, 61, 10)}
    assert len(select("deblur", "paper")) == 9
    for e in select("eigen-study", "paper"):
        assert (e.config("paper").problem.beta, e.config("paper").problem.lam) == (1e-3, 1e-4)
    # quick keeps the methods and hyper-parameters, and gives both methods equal epochs
    for e in EXPERIMENTS.values():
        q, p = e.config("quick"), e.config("paper")
        assert q.replace(problem={"size": p.problem.size}, train={
            "epochs": p.train.epochs, "record_every": p.train.record_every},
            study={"interval": p.study.interval}) == p, e.name
    quick_all = {e.name for e in select("all", "quick")}
    assert set(QUICK_ALL) <= quick_all and len(select("all", "paper")) == len(EXPERIMENTS)


def test_dump_config_is_what_mgdl_run_takes(tmp_path):
    r = mgdl_here("reproduce", "denoise-male-30", "--scale", "paper", "--dump-config")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "edited.toml"
    path.write_text(r.stdout)
    assert load_config(path) == EXPERIMENTS["denoise-male-30"].config("paper")
    r = mgdl_here("reproduce", "--list")
    assert r.returncode == 0 and all(name in r.stdout for name in EXPERIMENTS)
    r = mgdl_here("reproduce", "nonsense", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown experiment" in r.stderr


# ---------------------------------------------------------------------------------------
# Verdicts


def test_verdict_rule_on_hand_made_results():
    assert V.verdict([30.1, 30.3, 30.2], [27.0, 27.4, 27.2], higher_is_better=True).verdict \
        == "holds"
    assert V.verdict([27.0, 27.4, 27.2], [30.1, 30.3, 30.2], higher_is_better=True).verdict \
        == "does not hold"
    # means 30.2 and 29.9 differ by 0.3 < sqrt(1² + 1²): within the spread
    v = V.verdict([29.2, 30.2, 31.2], [28.9, 29.9, 30.9], higher_is_better=True)
    assert v.verdict == "inconclusive"
    assert math.isclose(v.spread, math.sqrt(2)) and math.isclose(v.difference, 0.3)
    # lower is better (losses, times); one seed has no spread: never decisive
    assert V.verdict([1e-4, 2e-4], [0.3, 0.4], higher_is_better=False).verdict == "holds"
    assert V.verdict([40.0], [20.0], higher_is_better=True).verdict == "inconclusive"
    # MGDL never reaching SGDL's PSNR (infinite time) does not hold
    assert V.verdict([math.inf, math.inf], [10.0, 11.0], higher_is_better=False).verdict \
        == "does not hold"


def test_condition_numbers_ignore_the_near_zero_eigenvalues():
    # 8 + 4 + 2 + 1 = 15 of the positive sum 15.0003: the four dominant ones hold 99 %
    lam = np.array([-1e-3, 0.0, 1e-4, 1e-4, 1e-4, 1.0, 2.0, 4.0, 8.0])
    kappa, spread = V.condition_numbers(lam)
    assert math.isclose(kappa, 8.0 / 1.0) and math.isclose(spread, 8.0 / 3.0)
    # with only 70 % of the mass, 8 and 4 (12/15 = 80 %) are enough
    assert V.condition_numbers(lam, mass=0.7) == (2.0, 8.0 / 6.0)
    assert all(math.isnan(x) for x in V.condition_numbers(np.array([-1.0, 0.0])))


# ---------------------------------------------------------------------------------------
# A tiny run of every experiment kind


@pytest.fixture(scope="module")
def tiny_reproduction(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro") / "quick"
    results = [reproduce(name, scale="quick", seeds=2, out=out, overrides=TINY)
               for name in KINDS]
    return out, results


@pytest.mark.slow
def test_tiny_reproduction_yields_a_verdict_per_claim(tiny_reproduction):
    out, results = tiny_reproduction
    assert runs.read_json(out / MANIFEST)["experiments"] == list(KINDS)
    rows = runs.read_json(out / "summary.json")["rows"]
    assert rows == runs.strict(results[-1].rows)  # as JSON: infinities are null
    claims = {(r["experiment"], r["claim"]) for r in rows}
    for name in ("regression-camera", "denoise-butterfly-10", "deblur-butterfly-3"):
        assert {(name, 1), (name, 5)} <= claims
    assert ("lr-synthetic-1", 2) in claims
    assert {("eigen-synthetic", 3), ("eigen-synthetic", 4)} <= claims
    assert {r["against"] for r in rows if r["experiment"] == "msdl"} == {"sgdl", "msdl"}
    for r in rows:
        assert r["verdict"] in V.VERDICTS and r["n"] == 2
        assert r["seconds"] > 0
    # the figures come from the run directories: check one against its files
    row = next(r for r in rows if (r["experiment"], r["claim"]) == ("denoise-butterfly-10", 1))
    psnr = [runs.read_json(out / "denoise-butterfly-10" / f"seed{s}" / "comparison.json")[
        "mgdl"]["metrics"]["test_psnr"] for s in (0, 1)]
    assert math.isclose(row["mgdl_mean"], np.mean(psnr))
    assert math.isclose(row["mgdl_std"], np.std(psnr, ddof=1))
    assert row["paper_mgdl"] == 31.67 and row["paper_other"] == 27.53
    assert "| experiment |" in (out / "summary.md").read_text()
    # seeds vary the initialisation, not the observation
    cfgs = [load_config(out / "denoise-butterfly-10" / f"seed{s}") for s in (0, 1)]
    assert (cfgs[0].train.seed, cfgs[1].train.seed) == (0, 1)
    assert cfgs[0].problem.noise_seed == cfgs[1].problem.noise_seed


@pytest.mark.slow
def test_reproduction_run_again_trains_only_what_is_missing(tiny_reproduction):
    out, _ = tiny_reproduction
    again = reproduce("msdl", scale="quick", seeds=2, out=out, overrides=TINY)
    assert again.ran == 0
    shutil.rmtree(out / "msdl" / "seed1")
    again = reproduce("msdl", scale="quick", seeds=2, out=out, overrides=TINY)
    assert again.ran == 1 and runs.read_status(out / "msdl" / "seed1")["state"] == "completed"
    # a run found with another configuration is neither skipped nor reported as this one
    with pytest.raises(ValueError, match="another configuration"):
        reproduce("msdl", scale="quick", seeds=1, out=out, overrides=[*TINY, "model.width=6"])
    with pytest.raises(ValueError, match="quick-scale reproduction"):
        reproduce("msdl", scale="paper", seeds=1, out=out, overrides=TINY)


@pytest.mark.slow
def test_the_summary_reads_the_runs_configs_not_the_presets(tmp_path):
    """`--set study.methods` drops MSDL from the msdl study: the summary compares what ran
    (the preset, rebuilt, would look for an MSDL the runs never trained)."""
    out = tmp_path / "quick"
    result = reproduce("msdl", scale="quick", seeds=1, out=out,
                       overrides=[*TINY, 'study.methods=["mgdl", "sgdl"]',
                                                 "study.learning_rates=[0.01]"])
    assert load_config(out / "msdl" / "seed0").study.methods == ("mgdl", "sgdl")
    assert {r["against"] for r in result.rows} == {"sgdl"}


# ---------------------------------------------------------------------------------------
# The HTML report in a real browser


def _expected_figures(out: Path) -> int:
    """Counted from the files: a comparison shows its curves, its final images and MGDL's
    grades; a study its one figure."""
    n = 0
    for name in runs.read_json(out / MANIFEST)["experiments"]:
        d = out / name / "seed0"
        n += 3 if (d / "comparison.json").is_file() else 1
    return n


@pytest.mark.slow
def test_html_report_in_headless_chromium(tiny_reproduction, tmp_path):
    out, _ = tiny_reproduction
    report = tmp_path / "report.html"
    r = mgdl_here("report", str(out), "-o", str(report))
    assert r.returncode == 0, r.stderr
    assert "http://" not in report.read_text() and "https://" not in report.read_text()
    driver = browser()
    try:
        driver.set_window_size(1300, 2400)
        driver.get(report.resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        headers = driver.execute_script(
            "return Array.from(document.querySelectorAll('table')[0].querySelectorAll('th'))"
            ".map(th => th.textContent)")
        assert "verdict" in headers and "paper MGDL" in headers
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('table')[0].querySelectorAll('tbody "
            "tr')).length")
        assert cells == len(runs.read_json(out / "summary.json")["rows"])
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == _expected_figures(out) and all(w > 100 for w in widths)
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()


@pytest.mark.slow
def test_report_curves_are_the_histories(tiny_reproduction):
    from multigrade.experiments.verdicts import timeline
    from multigrade.report_html import timeline_series

    out, _ = tiny_reproduction
    for name, psnr in (("denoise-butterfly-10", "test_psnr"), ("regression-camera", "val_psnr")):
        d = out / name / "seed0"
        series, found = timeline_series({"mgdl": d / "mgdl", "sgdl": d / "sgdl"})
        assert found == psnr
        h = runs.read_history(d / "mgdl" / "history.csv")
        curves = {(row, col): y for row, col, label, x, y, _ in series if label == "mgdl"}
        assert set(curves) == {(r, c) for r in (0, 1) for c in (0, 1, 2)}
        for col in (0, 1, 2):
            np.testing.assert_array_equal(curves[0, col], h["train_loss"])
            np.testing.assert_array_equal(curves[1, col], h[psnr])
        # against seconds: increasing, ending at the run's training seconds
        t = timeline(d / "mgdl")["seconds"]
        assert np.all(np.diff(t) > 0)
        assert np.isclose(t[-1], runs.read_json(d / "mgdl" / "metrics.json")["seconds"])
        # MGDL's 3 grade boundaries on every panel, SGDL's none
        assert all(len(s[5]) == (3 if s[2] == "mgdl" else 0) for s in series)


def test_report_refuses_what_it_cannot_show(tmp_path):
    (tmp_path / "empty").mkdir()
    r = mgdl_here("report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 2 and "not a run" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


@pytest.mark.integration
def test_demo_ends_with_its_report(tmp_path):
    out = tmp_path / "demo"
    r = mgdl_here("demo", "--size", "16", "--epochs", "20", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"report: {out / 'report.html'}" in " ".join(r.stdout.split())
    page = (out / "report.html").read_text()
    # the comparison's curves, final images and MGDL's grades, as the browser test counts
    assert page.count("<img") == 3 and "dB after each grade" in page


# The authors' per-method settings of the restoration figures, typed in again from SPEC §3.
AUTHORS_TABLE = {
    "denoise": {"mgdl": (5e-3, 1.0, 1e-2), "sgdl": (5e-3, 0.1, 1e-4)},
    "deblur": {"mgdl": (5e-3, 1e-2, 1e-1), "sgdl": (5e-3, 0.1, 0.1)},
}


@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_restoration_presets_carry_the_authors_settings_per_method(scale):
    chosen = select("denoise", scale) + select("deblur", scale)
    assert len(chosen) == 27
    for e in chosen:
        cfg = e.config(scale)
        for method, want in AUTHORS_TABLE[cfg.problem.task].items():
            own = cfg.for_method(method)
            assert (own.train.lr, own.problem.beta, own.problem.lam) == want, (e.name, method)
            source = cfg.methods.of(method).source
            assert "analysis_results.ipynb" in source and method.upper() in source
            assert own.methods.of(method).source == source  # the sub-run keeps where from
    r = mgdl_here("reproduce", "denoise-butterfly-10", "--scale", "paper", "--dump-config")
    assert r.returncode == 0, r.stderr
    dumped = runs.read_toml_text(r.stdout)["methods"]
    assert {m: (v["lr"], v["beta"], v["lam"]) for m, v in dumped.items()} == \
        AUTHORS_TABLE["denoise"]
