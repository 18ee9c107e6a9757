"""The compiled programs of a plain fit or of a vmapped sweep, cached across fits."""

from __future__ import annotations

import dataclasses
import functools
import gc

import jax
import jax.numpy as jnp
import numpy as np

from multigrade.train._divergence import _chunk_jvp, _freeze_jvp
from multigrade.train._programs import _chunk, _freeze, _initial_loss


def _vmapped(fn, in_axes, static):
    return jax.jit(lambda *args, **kw: jax.vmap(functools.partial(fn, **kw),
                                                in_axes=in_axes)(*args),
                   static_argnames=static)


class _ProgramCache:
    """Compiled chunk programs, kept across fits of one process (least recently used
    dropped beyond `size`): later grades of equal shape, and later runs of the same model,
    problem structure, optimiser object and shapes (the seeds of a sweep), compile nothing.
    Keys hold the optimiser object itself, so a program is only reused with that very
    transformation (`experiments.make_optimizer` returns one object per name and rate)."""

    def __init__(self, size: int = 32):
        self.size, self.programs = size, {}

    def get(self, key):
        program = self.programs.pop(key, None)
        if program is not None:
            self.programs[key] = program  # most recently used last
        return program

    def put(self, key, program) -> None:
        self.programs[key] = program
        while len(self.programs) > self.size:
            self.programs.pop(next(iter(self.programs)))
        self.release_if_crowded()

    def release_if_crowded(self, fraction: float = 0.5) -> bool:
        """Clears JAX's caches when this process holds more than `fraction` of the memory
        mappings Linux allows it (then this cache too, if that was not enough); True when
        it cleared.

        JAX keeps every program a process compiles (its caches do not shrink), and each
        program's machine code lives in mappings of its own (about a hundred for a small
        chunk program): a long process that compiles many programs (a sweep worker over
        many learning rates, a notebook, the test suite) reaches `vm.max_map_count`
        (65 530 by default) and then crashes inside XLA's compiler. The programs kept here
        survive the first step (a `Compiled` holds its executable), so later seeds still
        compile nothing; other jitted functions compile again when next used."""
        maps = memory_maps()
        if maps is None or maps[0] <= fraction * maps[1]:
            return False
        jax.clear_caches()
        gc.collect()
        maps = memory_maps()
        if maps is not None and maps[0] > fraction * maps[1]:
            self.programs.clear()
            gc.collect()
        return True


def memory_maps() -> tuple[int, int] | None:
    """`(memory mappings this process holds, the most the kernel allows it)`; None where
    /proc does not say (not Linux)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f), limit
    except (OSError, ValueError):
        return None


_COMPILED = _ProgramCache()


@dataclasses.dataclass(frozen=True)
class _Engine:
    """The compiled programs of a plain fit (`members` None) or of a vmapped sweep (a
    leading axis of `members` on the state, features, predictions and scale; the problem
    is shared). The loop above it is the same for both."""

    members: int | None

    @property
    def m(self) -> int:
        return 1 if self.members is None else self.members

    @functools.cached_property
    def chunk(self):
        if self.members is None:
            return jax.jit(_chunk, static_argnames="spec")
        return _vmapped(_chunk, (0, None, 0, 0, 0, None), "spec")

    @functools.cached_property
    def freeze(self):
        if self.members is None:
            return jax.jit(_freeze, static_argnames=("model", "block"))
        return _vmapped(_freeze, (0, None, 0, 0, 0, 0), ("model", "block"))

    @functools.cached_property
    def chunk_jvp(self):
        return jax.jit(_chunk_jvp, static_argnames=("spec", "eps"))

    @functools.cached_property
    def freeze_jvp(self):
        return jax.jit(_freeze_jvp, static_argnames=("model", "block", "eps"))

    @functools.cached_property
    def initial_loss(self):
        if self.members is None:
            return jax.jit(_initial_loss, static_argnames=("model", "block"))
        return _vmapped(_initial_loss, (0, None, 0, 0, 0, 0), ("model", "block"))

    def expand(self, tree):
        """A shared value, given every member its copy."""
        if self.members is None:
            return tree
        return jax.tree_util.tree_map(
            lambda a: jnp.broadcast_to(a, (self.members, *jnp.shape(a))), tree)

    def rows(self, v) -> np.ndarray:
        """Host values with the member axis first: `(m, ...)`."""
        v = np.asarray(v)
        return v.reshape(self.m, *v.shape[self.members is not None:])

    def member(self, tree, j: int):
        if self.members is None:
            return tree
        return jax.tree_util.tree_map(lambda a: a[j], tree)
