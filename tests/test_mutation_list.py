"""scripts/mutation_check.py's list cannot rot silently: each mutation's target text occurs
exactly once in its file (no mutation is run here; the check itself takes half an hour)."""

from __future__ import annotations

import importlib.util
import sys

from conftest import ROOT


def test_every_mutation_targets_text_found_exactly_once():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    assert len(module.MUTATIONS) > 50 and len({m.name for m in module.MUTATIONS}) == len(module.MUTATIONS)
    counts = {m.name: (ROOT / m.path).read_text().count(m.old) for m in module.MUTATIONS}
    assert {name: n for name, n in counts.items() if n != 1} == {}
    assert all(m.old != m.new for m in module.MUTATIONS)
    for m in module.MUTATIONS:  # every selected test file exists
        assert all((ROOT / t.split("::")[0]).is_file() for t in m.tests), m.name
