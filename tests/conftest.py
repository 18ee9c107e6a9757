import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
# Not jax_numpy_dtype_promotion="strict": optax's Adam bias correction (float ** int32)
# fails under it, so it would test optax rather than this package.


@pytest.fixture
def key():
    return jax.random.key(0)
