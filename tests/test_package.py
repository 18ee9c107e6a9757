"""The release: one version, an sdist and a wheel that `twine check` accepts, the wheel
installed into a fresh virtual environment (its dependencies from the package index) with
`mgdl` running from there; and the minimum versions `.ci/min-versions` installs are the
ones `pyproject.toml` claims."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

import multigrade
from multigrade._version import __version__

pytestmark = pytest.mark.xdist_group("package")  # its tests on one worker: one build

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd, **kw):
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))}:\n{res.stdout[-3000:]}\n" \
                                f"{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT, timeout=600)
    return out


@pytest.mark.package
def test_the_version_is_single_sourced(dist):
    wheel, sdist = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheel] == [f"multigrade-{__version__}-py3-none-any.whl"]
    assert [s.name for s in sdist] == [f"multigrade-{__version__}.tar.gz"]
    assert multigrade.__version__ == __version__
    assert 'version = "' not in (ROOT / "pyproject.toml").read_text()  # dynamic, read once
    with zipfile.ZipFile(wheel[0]) as z:
        names = z.namelist()
        meta = z.read(f"multigrade-{__version__}.dist-info/METADATA").decode()
    assert f"multigrade-{__version__}.dist-info/licenses/LICENSE" in names
    assert "License-Expression: MIT" in meta and "Classifier: " in meta
    assert "Project-URL: " in meta
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
    _run(sys.executable, "-m", "twine", "check", "--strict", *wheel, *sdist)


@pytest.mark.package
def test_the_wheel_installs_into_a_fresh_venv_and_mgdl_runs(dist, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    py, mgdl = venv / "bin" / "python", venv / "bin" / "mgdl"
    _run(py, "-m", "pip", "install", "-q", next(dist.glob("*.whl")), timeout=900)
    where = _run(py, "-c", "import multigrade; print(multigrade.__file__)").stdout
    assert where.startswith(str(venv))  # the wheel's copy, not this checkout
    assert "fit" in _run(mgdl, "--help").stdout
    assert "--out" in _run(mgdl, "demo", "--help").stdout


def _bounds(requirements) -> dict[str, str]:
    out = {}
    for r in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(;.*)?", r.replace(" ", ""))
        if m and not m.group(3):
            out[m.group(1).lower()] = m.group(2)
    return out


def test_the_minimum_versions_run_pins_what_pyproject_claims():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    claims = _bounds(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                     ["dependencies"])
    text = (ROOT / ".ci" / "min-versions.txt").read_text().split("# Not claimed")[0]
    pins = dict(line.strip().lower().split("==") for line in text.splitlines()
                if "==" in line and not line.startswith("#"))
    pins.pop("jaxlib")  # jax's own pair, pinned beside it
    # every claimed lower bound is installed exactly (PEP 440: 0.15 is 0.15.0)
    assert set(pins) == set(claims)
    for name, low in claims.items():
        assert Version(pins[name]) == Version(low), (name, low, pins[name])
