"""Every public name has a docstring (the API reference of the docs site is built from
them): the `__all__` of `multigrade` and of every public subpackage, and the functions and
classes a public module defines."""

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import multigrade


def public_modules() -> list[str]:
    out = ["multigrade"]
    for m in pkgutil.walk_packages(multigrade.__path__, "multigrade."):
        if not any(part.startswith("_") for part in m.name.split(".")):
            out.append(m.name)
    return out


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [n for n, o in vars(module).items()
            if not n.startswith("_") and (inspect.isfunction(o) or inspect.isclass(o))
            and getattr(o, "__module__", None) == module.__name__]


def documented(obj) -> bool:
    if inspect.ismodule(obj):
        return bool((obj.__doc__ or "").strip())
    doc = (obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__) or ""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) \
            and doc.startswith(f"{obj.__name__}("):
        return False  # the signature dataclasses write in, not a docstring
    return bool(doc.strip())


MODULES = public_modules()


def test_the_walk_finds_the_package():
    assert {"multigrade", "multigrade.train", "multigrade.problems.minibatch",
            "multigrade.experiments.runner", "multigrade.cli"} <= set(MODULES)
    assert not any("._" in m for m in MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_has_a_docstring(name):
    module = importlib.import_module(name)
    assert documented(module), f"module {name} has no docstring"
    missing = [n for n in public_names(module) if not documented(getattr(module, n))]
    assert not missing, f"{name}: no docstring for {', '.join(missing)}"
