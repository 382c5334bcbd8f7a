"""ganforge's modules import each other without cycles (issue 18: `build.py` and
`metrics/evaluate.py` imported each other, hidden inside functions)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ganforge

PACKAGE = Path(ganforge.__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__.py)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(node: ast.AST, package: str, module_level: bool, known: set[str] | frozenset[str] = frozenset()
                   ) -> Iterator[str]:
    """Dotted names that the code under `node` imports when it runs: not under `if TYPE_CHECKING`,
    and with `module_level`, not inside functions (which import only when called). `from pkg
    import a` names pkg itself only when `a` is not one of the `known` modules (then it takes
    something from pkg's __init__)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:  # relative: from the package `level - 1` above this module's
                parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                base = ".".join(parent + ([child.module] if child.module else []))
            if any(f"{base}.{alias.name}" not in known for alias in child.names):
                yield base
            yield from (f"{base}.{alias.name}" for alias in child.names)  # `from pkg import submodule`
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from imported_names(ast.Module(body=child.orelse, type_ignores=[]), package, module_level, known)
        elif module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        else:
            yield from imported_names(child, package, module_level, known)


def import_graph(module_level: bool) -> dict[str, set[str]]:
    """Module -> the ganforge modules it names in its imports. (Importing a submodule runs its
    package's __init__ first too; that edge is left out: a submodule that takes nothing from its
    package's __init__ is not caught in a cycle by it.)"""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = imported_names(ast.parse(path.read_text(), str(path)), package, module_level, set(known))
        graph[name] = {t for t in targets if t in known} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("import ganforge.x\nif TYPE_CHECKING:\n    import ganforge.y\ndef f():\n    import ganforge.z\n")
    assert set(imported_names(tree, "ganforge", module_level=True)) == {"ganforge.x"}
    assert set(imported_names(tree, "ganforge", module_level=False)) == {"ganforge.x", "ganforge.z"}
    # `from pkg import name` depends on pkg's __init__ only when the name is not a submodule.
    tree = ast.parse("from ganforge import sub, __version__\nfrom ganforge import sub\n")
    known = {"ganforge", "ganforge.sub"}
    assert set(imported_names(ast.Module(body=tree.body[1:], type_ignores=[]), "ganforge", True, known)) == \
        {"ganforge.sub"}
    assert "ganforge" in set(imported_names(tree, "ganforge", True, known))


def test_the_graph_sees_the_package():
    graph = import_graph(module_level=True)
    assert {"ganforge.metrics.evaluate", "ganforge.metrics.catalog"} <= graph["ganforge.build"]
    assert "ganforge.training.state" in graph["ganforge.training.loop"]


def test_no_module_level_import_cycle():
    assert cycles(import_graph(module_level=True)) == []


def test_no_import_cycle_even_through_imports_inside_functions():
    # An import inside a function only hides a cycle from Python; it is still two modules that
    # each need the other.
    assert cycles(import_graph(module_level=False)) == []
