"""Pytrees as path-named arrays (parameters, checkpoints) and back."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from multigrade.runs._io import read_npz, write_npz
from multigrade.runs._layout import RunDirError

# ---------------------------------------------------------------------------------------
# Pytrees as named arrays


def path_name(path) -> str:
    """`(GetAttrKey('hidden'), SequenceKey(0), GetAttrKey('W'))` → `hidden/0/W`."""
    from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

    parts = []
    for entry in path:
        if isinstance(entry, GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, FlattenedIndexKey):
            parts.append(str(entry.key))
        else:
            raise TypeError(f"cannot name pytree path entry {entry!r}")
    return "/".join(parts)


def tree_to_arrays(tree, prefix: str) -> dict[str, np.ndarray]:
    """Every leaf of `tree` as `<prefix>/<path>` → NumPy array (dtype kept)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(filter(None, (prefix, path_name(p)))): np.asarray(leaf)
            for p, leaf in leaves}


def arrays_to_tree(arrays: Mapping[str, np.ndarray], prefix: str, like, *, source: str = ""):
    """The inverse of `tree_to_arrays`: a pytree shaped like `like` (arrays or
    `jax.ShapeDtypeStruct`s), each leaf read from its name. Shapes must match."""
    import jax
    import jax.numpy as jnp

    def read(path, leaf):
        name = "/".join(filter(None, (prefix, path_name(path))))
        if name not in arrays:
            raise ValueError(f"{source or 'arrays'} has no {name!r}: it holds another model")
        a = arrays[name]
        if tuple(a.shape) != tuple(np.shape(leaf)):
            raise ValueError(f"{source or 'arrays'}: {name!r} has shape {tuple(a.shape)}, "
                             f"the model expects {tuple(np.shape(leaf))}")
        return jnp.asarray(a, dtype=leaf.dtype)

    return jax.tree_util.tree_map_with_path(read, like)


def save_params(path: str | os.PathLike, params: list, scales: list[float]) -> None:
    """`scales` and `grade<k>/<path>` for every leaf (`grade1/hidden/0/W`, `grade1/head/b`;
    for MSDL `grade1/<sub-network>/<layer>/W`)."""
    arrays = {"scales": np.asarray(scales, dtype=np.float64)}
    for k, p in enumerate(params, start=1):
        arrays.update(tree_to_arrays(p, f"grade{k}"))
    write_npz(path, arrays)


def load_params(path: str | os.PathLike, like: list) -> tuple[list, list[float]]:
    """Reads `params.npz` back as `(params, scales)`.

    Args:
        like: parameters of the same structure, one entry per stored grade (for a model,
            `model.init_params(key, in_dim)`, or its `jax.eval_shape`); every stored shape
            is checked against it.
    """
    if not isinstance(like, (list, tuple)):
        raise TypeError("load_params: `like` must be a list of parameters, one per grade "
                        "(e.g. `model.init_params(key, in_dim)`), got "
                        f"{type(like).__name__}")
    arrays = read_npz(path)
    if "scales" not in arrays:
        raise RunDirError(f"{path} holds no grade scales: it is not a params.npz")
    scales = [float(s) for s in arrays.pop("scales")]
    if len(like) != len(scales):
        raise ValueError(f"{path}: {len(scales)} grades stored, {len(like)} given in like")
    return [arrays_to_tree(arrays, f"grade{k}", p, source=str(path))
            for k, p in enumerate(like, start=1)], scales
