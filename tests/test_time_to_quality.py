"""benchmarks/time_to_quality.py at a tiny size: every recipe's curve, its table, its
`minutes_to_target=` line, and a coarse grade measured on the full grid."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_quality.py"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def test_each_recipe_is_a_curve_in_time_with_its_line(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("the paper's images (../shared/images) are not beside the checkout")
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "16", "--minutes", "2", "--recipe",
         "short,coarse", "--target", "15", "--levels", "10,15,99", "--at", "1",
         "--json", str(tmp_path / "c.json"), "--data-dir", str(SHARED)],
        capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    curves = {c["recipe"]: c for c in json.loads((tmp_path / "c.json").read_text())}
    assert set(curves) == {"short", "coarse"}
    for name, c in curves.items():
        seconds, grades, _, values = (np.asarray(v) for v in zip(*c["points"]))
        assert not c["cut"] and np.all(np.diff(seconds) >= 0) and np.all(np.diff(grades) >= 0)
        assert grades[-1] == 4 and np.all(np.isfinite(values))
        reached = seconds[np.argmax(values >= 15)] / 60 if (values >= 15).any() else None
        line = next(x for x in res.stdout.splitlines()
                    if x.startswith(f"minutes_to_target={name}:"))
        assert line.split(":")[1].split()[0] == ("missed" if reached is None
                                                 else f"{reached:.1f}")
        row = next(x for x in res.stdout.splitlines() if x.startswith(f"| {name} |"))
        assert row.split("|")[4].strip() == "-"  # 99 dB is never reached
    # the coarse recipe's grades 1 and 2 appear once each, at their end, on the full grid
    coarse = curves["coarse"]["points"]
    assert [p[1] for p in coarse].count(1) == 1 and [p[1] for p in coarse].count(2) == 1
    assert curves["coarse"]["train"]["coarse"] == [4, 2]


def test_equal_time_gives_the_fixed_budget_the_recipes_wall_time_on_deblurring(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("the paper's images (../shared/images) are not beside the checkout")
    common = [sys.executable, str(SCRIPT), "--experiment", "deblur-butterfly-3", "--size",
              "24", "--data-dir", str(SHARED)]
    res = subprocess.run([*common, "--minutes", "5", "--recipe", "best,fixed", "--equal-time",
                          "--target", "15", "--levels", "15", "--at", "1",
                          "--json", str(tmp_path / "d.json")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    best, fixed = json.loads((tmp_path / "d.json").read_text())
    # deblurring's best: grades 1-3 on coarse grids (a blur on the coarse grid), grade 4 on
    # full epochs of the image's grid
    assert best["recipe"] == "coarse3-warmup-long" and best["train"]["batch"] is None
    assert best["train"]["coarse"] == [4, 2, 2]
    assert best["train"]["epochs"] == [8000, 4000, 4000, 1500]
    # a coarse grade is measured once, on the full grid, when it ends
    assert [p[1:3] for p in best["points"] if p[1] < 4] == [[1, 8000], [2, 4000], [3, 4000]]
    assert best["task"] == "deblur" and best["blur_sigma"] == 3 and not best["cut"]
    assert [p[1] for p in best["points"]][-1] == 4
    # the fixed budget (20 000 epochs a grade) stops at the recipe's wall time, in grade 1
    assert fixed["cut"] and fixed["minutes"] == pytest.approx(best["wall_minutes"])
    assert fixed["points"][-1][0] / 60 >= best["wall_minutes"] * 0.9
    assert {p[1] for p in fixed["points"]} == {1}
    # a mini-batch recipe steps on tiles of the blurred image (problems.tiles): at 40² four
    # 32² tiles, one a step (grades 3 and 4)
    batched = subprocess.run([sys.executable, str(SCRIPT), "--experiment", "deblur-butterfly-3",
                              "--size", "40", "--data-dir", str(SHARED), "--minutes", "1",
                              "--recipe", "coarse-warmup-batch16", "--target", "15",
                              "--json", str(tmp_path / "b.json")],
                             capture_output=True, text=True, timeout=600)
    assert batched.returncode == 0, batched.stdout + batched.stderr
    (run,) = json.loads((tmp_path / "b.json").read_text())
    assert run["task"] == "deblur" and run["train"]["batch"] == 0.0625
    assert run["environment"]["cpu"] and run["environment"]["cores"] >= 1  # its minutes' CPU
    rate = float(batched.stdout.split("matmul_gflops=")[1].split()[0])
    assert rate > 0 and run["environment"]["matmul_gflops"] == pytest.approx(rate, abs=0.06)
    assert {p[1] for p in run["points"]} >= {3} and all(p[3] > 5 for p in run["points"])


def test_the_noise_seed_draws_another_observation_of_the_same_image():
    if not SHARED.is_dir():
        pytest.skip("the paper's images (../shared/images) are not beside the checkout")
    from multigrade.experiments.building import problem_for

    ttq = _benchmark()
    problems = [problem_for(ttq.recipe_config("coarse-warmup-batch16", 16, None, str(SHARED),
                                              seed=1, noise_seed=n)[0]) for n in (0, 0, 3)]
    np.testing.assert_array_equal(problems[0].clean, problems[2].clean)
    np.testing.assert_array_equal(problems[0].observed, problems[1].observed)
    assert not np.array_equal(problems[0].observed, problems[2].observed)
    noise = np.asarray(problems[2].observed - problems[2].clean)
    assert np.std(noise) == pytest.approx(10 / 255, rel=0.25)  # σ_n 10 at 16² pixels


def _benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ttq", SCRIPT)
    ttq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ttq)
    return ttq


@pytest.mark.parametrize("sweep, recipe, measured", [
    ("seeds_g1x4.toml", "coarse-warmup-batch16-g1x4", {(0, 0), (2, 0), (2, 1)}),
    ("seeds_g1x4_t3.toml", "coarse-warmup-batch16-g1x4-t3", set()),
    ("seeds_g1x4_t3_x2.toml", "coarse-warmup-batch16-g1x4-t3-x2", {(1, 0), (4, 0), (5, 0)}),
])
def test_the_seed_sweeps_run_the_benchmarks_recipes(sweep, recipe, measured):
    """benchmarks/seeds_*.toml (a seed table as a resumable sweep) train what
    `time_to_quality.py --recipe R` trains: each base config is the benchmark's, field by
    field, but for the record keeping (checkpoints) and what only names (the source note,
    the images' folder); its pairs are new ones (the benchmark measured `measured`)."""
    from multigrade.experiments.sweep import load_sweep

    ttq = _benchmark()
    spec = load_sweep(SCRIPT.parent / sweep)
    cfg, budgets = ttq.recipe_config(recipe, 512, None, "../shared/images")
    assert spec.base.train.budgets(spec.base.model.grades) == budgets
    want = cfg.replace(command="fit", train={
        "grade_epochs": tuple(budgets[:2]), "epochs": budgets[-1],
        "checkpoint_every": spec.base.train.checkpoint_every}).to_dict()
    got = spec.base.to_dict()
    for d in (want, got):
        d.pop("methods")  # the authors' note on where lr, β, λ come from
    assert got == want
    pairs = {(s, n) for s in spec.axes["train.seed"] for n in spec.axes["problem.noise_seed"]}
    assert len(pairs) >= 8 and not pairs & measured
