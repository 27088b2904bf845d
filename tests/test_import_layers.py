"""The pipeline's stages import one way only: a lower stage never knows a higher one, and no import cycles.

Every import statement of the package counts, also those inside functions (a
lazy import hides a dependency from start-up, not from the design).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "saal"

#: Stage rank of each part of the package, lowest first: a module may import its own rank and below.
LAYERS = [
    ("shared utilities", ("saal", "saal.errors", "saal.io", "saal.config", "saal.runtime", "saal.progress",
                          "saal.locks", "saal.render")),
    ("data and models", ("saal.data", "saal.models")),
    ("self-supervised pretraining", ("saal.ssl",)),
    ("cold-start selection", ("saal.selection",)),
    ("segmentation and active learning", ("saal.segmentation", "saal.active")),
    ("label-budget advisor", ("saal.advise",)),
    ("run directory and pipeline", ("saal.workspace", "saal.pipeline")),
    ("Label Studio ML backend", ("saal.serve",)),
    ("experiment harness", ("saal.experiments",)),
    ("command line", ("saal.cli",)),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").is_file()


def exists(name: str) -> bool:
    base = PACKAGE.parent / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The saal modules ``path`` imports (the submodule when ``from pkg import submodule``)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if exists(sub) else target)
    return {m for m in found if m == "saal" or m.startswith("saal.")}


def rank(name: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or (prefix != "saal" and name.startswith(prefix + ".")):
                best = i
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer(graph):
    for name in graph:
        rank(name)


def test_no_stage_imports_a_later_one(graph):
    wrong = [f"{m} ({LAYERS[rank(m)][0]}) imports {t} ({LAYERS[rank(t)][0]})"
             for m, targets in graph.items() for t in sorted(targets) if rank(t) > rank(m)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles(graph):
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    assert "saal.experiments.report" in imports_of(PACKAGE / "experiments" / "runner.py")
    assert "saal.pipeline" in imports_of(PACKAGE / "cli" / "pipeline_cmds.py")  # imported inside functions
    assert rank("saal.render.html") == 0 and rank("saal.cli.main") == len(LAYERS) - 1
