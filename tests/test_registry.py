"""The registries: built-in components are found in the package's source, not in a hand-kept list."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ganforge
from ganforge import registry
from ganforge.errors import ConfigError
from ganforge.registry import ALL_REGISTRIES, Registry

PACKAGE = Path(ganforge.__file__).parent


def decorated_registrations() -> dict[str, dict[str, set[str]]]:
    """Every `@REGISTRY.register("name")` decorator in ganforge's source, read with `ast`:
    {module: {section: names}}."""
    section_of = {var: section for section, reg in ALL_REGISTRIES.items()
                  for var, obj in vars(registry).items() if obj is reg}
    found: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for deco in getattr(node, "decorator_list", []):
                if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                        and deco.func.attr == "register" and isinstance(deco.func.value, ast.Name)
                        and deco.func.value.id in section_of):
                    section = section_of[deco.func.value.id]
                    found.setdefault(module, {}).setdefault(section, set()).add(deco.args[0].value)
    return found


def test_discovery_finds_every_module_that_registers_a_component():
    expected = decorated_registrations()
    assert {"ganforge.losses", "ganforge.data.toy", "ganforge.models.dcgan"} <= set(expected)  # the scan works
    code = ("import json, sys; from ganforge.registry import ALL_REGISTRIES, builtin_component_modules\n"
            "names = {k: r.names() for k, r in ALL_REGISTRIES.items()}\n"
            "print(json.dumps({'names': names, 'modules': builtin_component_modules(),"
            " 'cli': 'ganforge.cli' in sys.modules}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert sorted(out["modules"]) == sorted(expected)
    for section in ALL_REGISTRIES:
        declared = set().union(*(m.get(section, set()) for m in expected.values()))
        assert set(out["names"][section]) == declared, section
    assert not out["cli"]  # only modules that register are imported


def test_registry_refuses_duplicates_and_names_the_valid_ones():
    reg = Registry("widget")

    @reg.register("round")
    def round_widget(size: int = 1) -> int:
        """A round widget."""
        return size

    with pytest.raises(KeyError, match="registered twice"):
        reg.register("round")(round_widget)
    assert reg.get("round").description == "A round widget."
    with pytest.raises(ConfigError, match=r"unknown widget 'rund' \(did you mean 'round'\?\); valid: round"):
        reg.get("rund")
