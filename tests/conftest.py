import os

import jax
import pytest

# Tests compile in their own process, never reading or filling the user's compilation cache
# (`mgdl` enables it); tests/test_compile_cache.py turns it on in subprocesses of its own.
os.environ["MULTIGRADE_COMPILATION_CACHE"] = "off"

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
# Not jax_numpy_dtype_promotion="strict": optax's Adam bias correction (float ** int32)
# fails under it, so it would test optax rather than this package.


@pytest.fixture
def key():
    return jax.random.key(0)
