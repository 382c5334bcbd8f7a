"""Guards over the suite itself: every registered method component has a test of its own (found
from the registry and the collected test ids, not from a hand-kept list), and every test asserts
something."""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

import conftest
from conftest import ROOT
from ganforge.registry import ALL_REGISTRIES

TESTS = ROOT / "tests"
# The sections whose components are methods with a definition to test (losses, regularizers).
GUARDED = ("loss", "regularizer")


@functools.cache
def collected_ids() -> list[str]:
    """Every test id of the suite: this session's collection when it holds the whole suite,
    otherwise a fresh `--collect-only` (e.g. when one file is run alone)."""
    ids = list(conftest.COLLECTED_IDS)
    modules = {i.split("::")[0] for i in ids}
    everything = {str(p.relative_to(ROOT)) for p in TESTS.glob("test_*.py")}
    if everything <= modules and not conftest.DESELECTED:
        return ids
    out = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "--collect-only", "-q", "-p",
                          "no:cacheprovider", str(TESTS)], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "::" in line]


def mentions(test_id: str, name: str) -> bool:
    """`name` is a word of the test function's name (words end at anything but a letter or digit)."""
    function = test_id.split("::", 1)[1].split("[")[0]
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", function) is not None


def own_tests(ids: list[str], names: list[str]) -> dict[str, list[str]]:
    """For each name, the tests of its own: those whose function is named after it, and the cases
    of a table test whose parameter id is exactly the name. Sweeps do not count: a test whose
    cases cover every name of the section, or one named `..._every_...` (the convention for a
    sweep over a derived subset, such as the regularizers with state)."""
    cases: dict[str, set[str]] = {}
    for test_id in ids:
        function, _, case = test_id.partition("[")
        cases.setdefault(function, set()).add(case.rstrip("]"))
    own: dict[str, list[str]] = {n: [] for n in names}
    for function, its_cases in cases.items():
        sweep = set(names) <= its_cases or "_every_" in function
        for name in names:
            if mentions(function, name) or (name in its_cases and not sweep):
                own[name].append(function)
    return own


@pytest.fixture(scope="module")
def ids() -> list[str]:
    return collected_ids()


@pytest.mark.parametrize("section", GUARDED)
def test_every_registered_component_has_a_test_of_its_own(section, ids):
    own = own_tests(ids, ALL_REGISTRIES[section].names())
    missing = sorted(n for n, tests in own.items() if not tests)
    assert not missing, f"registered {section}s without a test of their own (named after them): {missing}"


def test_the_guard_sees_the_tests_it_should(ids):
    assert any(i.endswith("::test_lecam_on_hand_computed_values") for i in ids)
    assert mentions("t.py::test_top_k_decays", "top_k") and not mentions("t.py::test_stop_kind", "top_k")
    assert not mentions("t.py::test_r10_x", "r1") and not mentions("t.py::test_x[r1]", "r1")
    table = ["t.py::test_losses[hinge]", "t.py::test_losses[minimax]", "t.py::test_every_loss_resumes[wasserstein]",
             "t.py::test_sweep[hinge]", "t.py::test_sweep[minimax]", "t.py::test_sweep[wasserstein]"]
    assert own_tests(table, ["hinge", "minimax", "wasserstein"]) == {
        "hinge": ["t.py::test_losses"], "minimax": ["t.py::test_losses"], "wasserstein": []}


def asserts(node: ast.AST) -> bool:
    """An `assert`, a `pytest.raises`/`warns` block or a call of an `assert_...` helper in `node`."""
    for n in ast.walk(node):
        if isinstance(n, ast.Assert):
            return True
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("raises", "warns") or name.startswith("assert"):
                return True
    return False


def called_names(node: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def functions(path: Path) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


def non_asserting_tests(path: Path) -> list[str]:
    """Tests in `path` that assert nothing, themselves or through the helpers they call (the
    module's functions and conftest's)."""
    own = functions(path)
    known = {**functions(TESTS / "conftest.py"), **own}
    missing = []
    for name, fn in own.items():
        if not name.startswith("test_"):
            continue
        todo, seen = [fn], {name}
        while todo and not asserts(todo[-1]):
            for callee in called_names(todo.pop()) - seen:
                if callee in known:
                    seen.add(callee)
                    todo.append(known[callee])
        if not todo:
            missing.append(name)
    return missing


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_every_test_asserts_something(path):
    assert non_asserting_tests(path) == []


def test_the_assertion_guard_finds_a_test_without_assertions(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("def helper(x):\n    assert x\n\n"
                      "def test_calls_a_checking_helper():\n    helper(1)\n\n"
                      "def test_only_runs_code():\n    sorted([2, 1])\n\n"
                      "def test_expects_an_error():\n    with pytest.raises(ValueError):\n        int('x')\n")
    assert non_asserting_tests(sample) == ["test_only_runs_code"]
