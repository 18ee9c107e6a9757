"""Nested dicts (as TOML reads them) into the config's frozen dataclasses and back into
dicts: every key known, every value of its annotated type (ints accepted for floats),
every error naming the key. `config` and `configfile` both read through it."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping


def merge(base: dict, new: Mapping) -> dict:
    """`base` with the values of `new` in place, tables merged key by key (a copy)."""
    out = dict(base)
    for k, v in new.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), dict) else v
    return out


def _check_type(where: str, value, hint) -> object:
    """`value` if it fits the annotation `hint` (ints are accepted for floats)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_check_type(f"{where}[{i}]", v, item) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        return None if value is None else _check_type(where, value, options[0])
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise TypeError(f"no type check for {hint!r}")
    if not ok:
        want = {bool: "true or false", int: "an integer", float: "a number",
                str: "a string"}[hint]
        raise ValueError(f"{where} must be {want}, got {value!r}")
    return float(value) if hint is float else value


def section(cls, data, where: str):
    """An instance of the dataclass `cls` from the table `data` (`where`: its dotted name,
    for errors); a field annotated `typing.Any` is handed over as it is, for the dataclass
    to read itself."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            raise ValueError(f"unknown key {name!r}; {where or 'the top level'} has: "
                             f"{', '.join(known)}")
        hint = hints[key]
        if hint is typing.Any:  # read by the dataclass itself (`ProblemConfig.options`)
            kwargs[key] = value
        elif dataclasses.is_dataclass(hint):
            kwargs[key] = section(hint, value, name)
        else:
            kwargs[key] = _check_type(name, value, hint)
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{where}: {e}" if where else str(e)) from None
