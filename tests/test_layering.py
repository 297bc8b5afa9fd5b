"""The packages depend on each other one way only: bench → devstack → qrlink_client, and rendezvous alone; the
scripts in ``examples/`` use the client library only.

Every module under ``rendezvous/``, ``qrlink_client/``, ``devstack/``, ``bench/`` and ``examples/`` is parsed
with :mod:`ast`, so the checks see imports inside functions (the lazy ones) and under ``if TYPE_CHECKING:`` as
well as the top-level ones, with relative imports resolved. Only the cycle check is limited to the imports that
run when a module is first imported (module level, outside ``TYPE_CHECKING``): those are the ones a cycle breaks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rendezvous", "qrlink_client", "devstack", "bench", "examples")


@dataclass(frozen=True)
class Import:
    """One imported module, as named after resolving relative imports."""

    importer: str
    target: str
    line: int
    at_import_time: bool
    """Runs when the importer is first imported: module level (or class body), not under ``TYPE_CHECKING``."""

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "node_modules" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    module = _resolve(importer, is_package, node)
    submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES]
    # ``from pkg import submodule`` imports the submodule; ``from pkg import name`` imports pkg itself.
    if len(submodules) < len(node.names):
        yield module
    yield from submodules


def _imports_of(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, at_import_time: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(module, is_package, node):
                yield Import(module, target, node.lineno, at_import_time)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            at_import_time = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                yield from visit(statement, False)
            for statement in node.orelse:
                yield from visit(statement, at_import_time)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, at_import_time)

    yield from visit(tree, True)


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports_of(module, path)]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _violations(importers: str, forbidden: tuple[str, ...], *, allowed: tuple[str, ...] = ()) -> list[str]:
    """The imports of a module in ``importers`` (outside ``allowed``) of a module in ``forbidden``."""
    return [
        str(imp)
        for imp in IMPORTS
        if _within(imp.importer, importers)
        and not any(_within(imp.importer, package) for package in allowed)
        and any(_within(imp.target, package) for package in forbidden)
    ]


def test_the_modules_are_found() -> None:
    for module in ("rendezvous.app", "qrlink_client.cli.main", "qrlink_client.qr.codec", "devstack.demo", "bench.cli"):
        assert module in MODULES
    assert any(imp.target == "qrlink_client.cli.io" and not imp.at_import_time for imp in IMPORTS)


def test_relative_imports_are_resolved() -> None:
    # qrlink_client/cli/main.py: ``from ..errors import QrLinkError``
    assert "qrlink_client.errors" in {imp.target for imp in IMPORTS if imp.importer == "qrlink_client.cli.main"}


def test_only_the_cli_imports_the_cli() -> None:
    found = [
        violation
        for package in PACKAGES
        # ``python -m qrlink_client`` runs the command line: its __main__ is an entry point, not library.
        for violation in _violations(
            package, ("qrlink_client.cli",), allowed=("qrlink_client.cli", "qrlink_client.__main__")
        )
    ]
    assert found == [], "the command line is an end point, not a library:\n" + "\n".join(found)


def test_the_client_library_imports_no_tooling() -> None:
    found = _violations("qrlink_client", ("devstack", "bench"), allowed=("qrlink_client.cli",))
    assert found == [], "the client library must not depend on the dev stack or the benchmarks:\n" + "\n".join(found)


def test_the_server_stands_alone() -> None:
    found = _violations("rendezvous", ("qrlink_client", "devstack", "bench"))
    assert found == [], "the rendezvous server imports none of the client, dev stack or benchmarks:\n" + "\n".join(
        found
    )


def test_the_examples_use_the_client_library_only() -> None:
    # They are what a client developer copies: the dev stack is reached through its state file, not imported.
    found = _violations("examples", ("devstack", "bench", "rendezvous", "qrlink_client.cli"))
    assert found == [], "the examples show the library alone:\n" + "\n".join(found)
    assert "examples.new_device" in MODULES


def test_the_dev_stack_does_not_import_the_benchmarks() -> None:
    found = _violations("devstack", ("bench",))
    assert found == [], "bench depends on devstack, not the other way:\n" + "\n".join(found)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return [*path[path.index(successor) :], successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def test_find_cycle_reports_the_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_at_import_time() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for imp in IMPORTS:
        if imp.at_import_time and imp.target in MODULES and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_has_modules(package: str) -> None:
    assert any(_within(module, package) for module in MODULES)
