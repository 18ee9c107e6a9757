"""The package's shape, checked from its source (DESIGN.md's layout): no file over 600
lines, no function over 60 code lines outside cli/, no import cycle (imports inside
functions included) and no import against the layers' direction."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60  # code lines: no blank lines, comments or docstring

# Lower layers first; a module may import its own layer and those below. Modules not named
# take their package's layer (multigrade.train._loop: "multigrade.train").
LAYERS = [
    ["multigrade._types", "multigrade._version", "multigrade.metrics", "multigrade.images",
     "multigrade.compile_cache", "multigrade.nn", "multigrade.operators"],
    ["multigrade.model", "multigrade.runs"],
    ["multigrade.problems"],
    ["multigrade.train"],
    ["multigrade.analysis", "multigrade.selection", "multigrade.baselines"],
    ["multigrade.report"],
    ["multigrade.experiments"],
    ["multigrade.report_html"],
    ["multigrade.cli", "multigrade.__main__", "multigrade"],
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "multigrade").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The package's modules `name` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names
                    if f"{node.module}.{a.name}" in MODULES]
            targets = subs + ([node.module] if len(subs) < len(node.names) else [])
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name and target.startswith("multigrade"):
                found.add(target)
    return found


def _layer(name: str) -> int:
    while True:
        for i, layer in enumerate(LAYERS):
            if name in layer:
                return i
        name = name.rsplit(".", 1)[0]


def test_no_file_is_over_600_lines():
    big = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in big.items() if k > MAX_FILE_LINES} == {}


def _code_lines(fn: ast.FunctionDef, lines: list[str]) -> int:
    body = lines[fn.lineno - 1:fn.end_lineno]
    n = sum(1 for line in body if line.strip() and not line.strip().startswith("#"))
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        n -= first.end_lineno - first.lineno + 1
    return n


def test_no_function_outside_the_cli_is_over_60_code_lines():
    long = {}
    for name, path in MODULES.items():
        if name.startswith("multigrade.cli"):
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, text.splitlines())
                if n > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = n
    assert long == {}


def test_the_counters_count_what_they_say():
    """The checks above can fail: a made-up function of 61 code lines (its `def` line and
    60 statements; the docstring, comments and blank lines not counted) is long, and the
    layer of a module below a package is its package's."""
    text = "def f():\n    '''doc\n    more'''\n" + "    x = 1\n    # note\n\n" * 60
    fn = ast.parse(text).body[0]
    assert _code_lines(fn, text.splitlines()) == 61 > MAX_FUNCTION_LINES
    assert _layer("multigrade.train._loop") == _layer("multigrade.train") == 3
    assert "multigrade.train" in _imports("multigrade.experiments.runner")


def test_no_import_cycle():
    graph = {name: _imports(name) for name in MODULES}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, path + [nxt]):
                return True
        state[node] = 2
        return False

    for name in sorted(graph):
        if name not in state and visit(name, [name]):
            break
    assert cycle == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_layers(name):
    up = sorted(t for t in _imports(name) if _layer(t) > _layer(name))
    assert up == [], f"{name} (layer {_layer(name)}) imports " + ", ".join(
        f"{t} (layer {_layer(t)})" for t in up)
