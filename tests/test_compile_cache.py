"""The persistent compilation cache: where it lives, and that a program loaded from it
computes what the compiled one did."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from multigrade import compile_cache

# `mgdl fit` in a fresh process, counting JAX's persistent-cache hits and misses.
COUNTED_FIT = """
import json, sys
import jax.monitoring
counts = {}
jax.monitoring.register_event_listener(
    lambda name, **kw: counts.__setitem__(name, counts.get(name, 0) + 1))
from multigrade.cli import main
sys.argv = ["mgdl", "fit", "regression", "--image", "camera", "--size", "16", "--epochs",
            "40", "--grades", "2", "--layers-per-grade", "1", "--width", "8", "--quiet",
            "--out", sys.argv[1]]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps({k.rsplit("/", 1)[1]: v for k, v in counts.items()
                  if k.startswith("/jax/compilation_cache/")}))
"""


def _fit(out, cache) -> dict:
    env = {**os.environ, compile_cache.ENV: str(cache)}
    res = subprocess.run([sys.executable, "-c", COUNTED_FIT, str(out)], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_second_process_loads_every_program_and_computes_the_same(tmp_path):
    cache = tmp_path / "cache"
    first = _fit(tmp_path / "a", cache)
    entries = list(cache.glob("xla-*/*-cache"))
    assert first.get("cache_misses", 0) >= 10 and first.get("cache_hits", 0) == 0
    assert len(entries) == first["cache_misses"]  # every program kept, however small
    second = _fit(tmp_path / "b", cache)
    assert second.get("cache_hits", 0) == first["cache_misses"]
    assert second.get("cache_misses", 0) == 0
    assert (tmp_path / "a/history.csv").read_bytes() == (tmp_path / "b/history.csv").read_bytes()
    with np.load(tmp_path / "a/params.npz") as a, np.load(tmp_path / "b/params.npz") as b:
        assert sorted(a) == sorted(b) and a
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


def test_cache_folder_by_setting_and_machine(tmp_path, monkeypatch):
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.cache_dir() is None
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "c"))
    here = compile_cache.cache_dir()
    assert here.parent == tmp_path / "c" and here.name.startswith("xla-")
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.cache_dir() == tmp_path / "xdg" / "multigrade" / here.name


@pytest.fixture
def no_folder_chosen():
    """This process as it is before `mgdl` starts: no cache folder chosen yet (the tests'
    own, conftest.py's, is put back after)."""
    import jax

    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_folder_that_cannot_be_made_leaves_the_cache_off(tmp_path, monkeypatch,
                                                         no_folder_chosen):
    import jax

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(compile_cache.ENV, str(blocker / "cache"))
    assert compile_cache.enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None
