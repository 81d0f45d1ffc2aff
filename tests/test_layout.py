"""The repository's shape: the product never imports the measurements, no import cycles, no
oversized source files, one launcher of the service."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("prerank_contract", "prerank_model", "model_export", "offline_jobs", "service")
MEASUREMENT = ("research", "loadtest")
MAX_SOURCE_LINES = 600


def source_files() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every module of the product and measurement packages."""
    for package in PRODUCT + MEASUREMENT:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


MODULES = dict(source_files())


def imported_modules(path: Path) -> set[str]:
    """The project modules `path` imports, at any depth of its code (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {module: imported_modules(path) - {module} for module, path in MODULES.items()}


def test_the_product_never_imports_the_measurement_code() -> None:
    offenders = {
        module: sorted(d for d in deps if d.split(".")[0] in MEASUREMENT)
        for module, deps in GRAPH.items()
        if module.split(".")[0] in PRODUCT
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    assert strongly_connected(GRAPH) == []


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_source_files_stay_short(module: str) -> None:
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_SOURCE_LINES, f"{MODULES[module]}: {lines} lines"


def test_one_module_starts_the_service() -> None:
    """Every caller (tests, benchmarks, soak, stack, memory) goes through one launcher: no other
    file runs `python -m service` itself."""
    launcher = REPO_ROOT / "research" / "service_process.py"
    assert '"-m", self.module' in launcher.read_text()
    this_test = Path(__file__).resolve()
    starters = set()
    for path in [*MODULES.values(), *sorted((REPO_ROOT / "tests").rglob("*.py"))]:
        text = path.read_text()
        if path != this_test and ('"-m", "service"' in text or "'-m', 'service'" in text):
            starters.add(path.relative_to(REPO_ROOT).as_posix())
    assert starters == set()
