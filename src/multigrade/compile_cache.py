"""JAX's persistent compilation cache, set up for this machine.

Every new process compiles its programs again: the training chunks (0.3 s each on 2 cores
for a 2-grade image regression) and dozens of small ones (random initialisers, the
optimiser's initial state: 42 programs, 2.1 s, before the first run of `mgdl fit` trains).
A sweep pays that once per worker. JAX can keep compiled programs on disk and load them in
any later process (milliseconds each); `enable_compilation_cache` turns that on with every
program kept, however fast it compiled. The `mgdl` command and sweep workers call it.

Where: `$MULTIGRADE_COMPILATION_CACHE` if set (a folder, or `off` to disable), else
`$XDG_CACHE_HOME/multigrade` (`~/.cache/multigrade`), in a subfolder named by this
machine's CPU (XLA compiles for the CPU it runs on, so a home folder shared by unlike
cluster nodes must not share programs). JAX's key covers the program, JAX's version, the
backend and the XLA flags. At most `MAX_BYTES` (least recently used evicted; file-locked,
so the workers of a sweep share it safely). A program loaded from the cache is the
program compiled: results are bit-identical (tests/test_compile_cache.py).
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

ENV = "MULTIGRADE_COMPILATION_CACHE"
MAX_BYTES = 2**30
_OFF = {"off", "0", "false", "no", "none"}


def cache_dir() -> Path | None:
    """The folder `enable_compilation_cache` uses (None when `$MULTIGRADE_COMPILATION_CACHE`
    says off)."""
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in _OFF and setting:
        return None
    if setting:
        root = Path(setting).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "multigrade"
    return root / f"xla-{_machine()}"


def _machine() -> str:
    """A short fingerprint of the CPU that compiled programs target."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            text += "".join(sorted({line for line in f
                                    if line.startswith(("flags", "model name", "Features"))}))
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Keeps every compiled program in `directory` (default `cache_dir()`) and loads it from
    there in later processes. Returns the folder in use, or None when disabled.

    Call it before the first computation: JAX fixes its cache when it first compiles.
    A cache folder already chosen (`JAX_COMPILATION_CACHE_DIR`, or `jax.config`) is left
    as it is. A folder that cannot be created disables the cache, not the run."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    path = Path(directory) if directory is not None else cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path
