import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

from procs import mgdl_here

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
# Not jax_numpy_dtype_promotion="strict": optax's Adam bias correction (float ** int32)
# fails under it, so it would test optax rather than this package.

#: Where the test processes keep compiled programs (set once, inherited by every child).
TEST_CACHE = "MULTIGRADE_TEST_CACHE"


@pytest.hookimpl(trylast=True)  # after jaxtyping's hook is in: it refuses an imported package
def pytest_configure(config):
    """One compilation cache for the test session, never the user's (`~/.cache/multigrade`):
    in pytest's cache folder (`.pytest_cache/d/xla`, so `--cache-clear` empties it and a fresh
    clone starts cold), else a temporary folder. The test process, its `-n` workers and every
    `mgdl`, sweep worker and docs build they start share it: about 70 % of a test's time is
    compiling, and tests compile the same small programs again and again (measured: 41 tests
    of test_cli/train/checkpoint, 130 s with no cache, 110 s starting empty, 37 s warm).
    `MULTIGRADE_TEST_CACHE=off` compiles everything afresh."""
    from multigrade import compile_cache

    if TEST_CACHE not in os.environ:
        cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
        if cache is not None:
            folder = cache.mkdir("xla")
        else:  # removed at the end (pytest_unconfigure)
            folder = config._multigrade_tmp_cache = tempfile.mkdtemp(prefix="mgdl-test-xla-")
        os.environ[TEST_CACHE] = str(folder)
    os.environ[compile_cache.ENV] = os.environ[TEST_CACHE]
    compile_cache.enable_compilation_cache()


def pytest_unconfigure(config):
    made = getattr(config, "_multigrade_tmp_cache", None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        del os.environ[TEST_CACHE]


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, at most 4 (each holds its own JAX and compiles its
    own programs; past a few the machine's memory, not its cores, runs out first)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


@pytest.fixture
def key():
    return jax.random.key(0)


#: The session's tiny run: image regression of camera at 16², 2 grades of one layer of 8.
TINY_FIT = ["fit", "regression", "--image", "camera", "--size", "16", "--epochs", "20",
            "--grades", "2", "--layers-per-grade", "1", "--width", "8", "--quiet"]


@pytest.fixture(scope="session")
def tiny_run_source(tmp_path_factory) -> Path:
    """`mgdl TINY_FIT`, finished, made once per session (per worker); never changed."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    res = mgdl_here(*TINY_FIT, "--out", out)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture
def tiny_run(tiny_run_source, tmp_path_factory) -> Path:
    """A copy of the session's tiny run, the test's own to read, grow, resume or damage (in
    a folder of its own: `tmp_path` stays empty)."""
    return Path(shutil.copytree(tiny_run_source, tmp_path_factory.mktemp("tiny") / "run"))
