"""The import graph of src/picseek keeps its shape (docs/architecture.md, "Layers"): no module imports one in a
layer above its own, and no group of modules imports itself round in a cycle. Every import counts, also those
inside functions and under TYPE_CHECKING: a lazy import is still a dependency."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Top to bottom. A module belongs to the layer of its longest matching prefix; it may import its own layer and
# the layers below.
LAYERS = [
    ["picseek.cli"],
    ["picseek.server"],
    ["picseek.scale.spark", "picseek.scale.spark_job"],  # Spark's driver: opens a Library
    ["picseek", "picseek.library"],  # the Python API (the package exports Library lazily)
    ["picseek.query"],
    ["picseek.learn"],
    ["picseek.ingest", "picseek.scale"],  # getting images in; Spark's tasks, shards and merge
    ["picseek.store"],
    ["picseek.models"],
    ["picseek.request", "picseek.ingest.paths", "picseek.config", "picseek.extras", "picseek._fs", "picseek.paths",
     "picseek.errors", "picseek._version"],  # leaves: the query as data, path rules, settings, errors
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "picseek").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    best = max(((len(prefix), n) for n, layer in enumerate(LAYERS) for prefix in layer
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return best[1]


def test_no_module_imports_a_layer_above_its_own():
    upward = sorted(f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
                    for a, outs in _graph().items() for b in outs if _layer(b) < _layer(a))
    assert upward == []


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_the_checks_see_upward_and_cyclic_imports():
    """The graph reader finds relative, absolute and function-level imports (so the checks above can fail)."""
    graph = _graph()
    assert "picseek.store.base" in graph["picseek.query.engine"]  # from ..store.base import Store
    assert "picseek.query.rerank" in graph["picseek.library"]  # an import inside a method
    assert _layer("picseek.ingest.paths") == len(LAYERS) - 1 and _layer("picseek.ingest.scan") == 6
    assert _layer("picseek.scale.spark") < _layer("picseek.library") < _layer("picseek.scale.merge")


def test_the_query_as_data_imports_nothing_from_picseek():
    assert _graph()["picseek.request"] == set()
