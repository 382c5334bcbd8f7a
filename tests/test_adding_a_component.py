"""The README's "Adding a component" example, run from the README's own text: a new regularizer
is one registered class, and a config trains with it without any other change."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, write_config
from ganforge.registry import REGULARIZERS


@pytest.fixture
def scoped_registry(monkeypatch):
    """What the test registers goes into a copy of the regularizers' entries, so that the other
    tests see the built-in ones only."""
    REGULARIZERS.names()  # the built-in components are registered first
    monkeypatch.setattr(REGULARIZERS, "_entries", dict(REGULARIZERS._entries))


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_code() -> list[str]:
    """The Python blocks of the README's "Adding a component" section."""
    text = README.read_text()
    section = text[text.index("### Adding a component"):]
    section = section[: section.index("\n### ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_regularizer_trains_from_a_config(scoped_registry, cli, tmp_path):
    component, its_test = readme_code()
    # The class, run as the README shows it (it registers itself).
    namespace: dict = {}
    exec(compile(component, "README.md", "exec"), namespace)
    Drift = namespace["Drift"]
    # Its test, run as the README shows it.
    test_namespace: dict = {"torch": torch, "Drift": Drift}
    exec(compile(its_test, "README.md", "exec"), test_namespace)
    tests = [f for name, f in test_namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0]()
    # The base class weights it.
    term = Drift(weight=0.5).d_term(0, None, None, None, None, None, torch.tensor([1.0, -3.0]), None, None)
    assert (term.loss.item(), term.value.item()) == (2.5, 5.0)

    # Nothing else changed: `ganforge list` shows it, and a config trains with it.
    listed = cli("list", "regularizer").stdout
    assert "drift" in listed and "Epsilon drift (Karras et al. 2018)" in listed and "weight" in listed
    cfg = tiny_config(tmp_path / "run", regularizers=[{"kind": "drift", "weight": 0.001}])
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "d_loss" in r]
    assert losses and all(math.isfinite(r["drift"]) and r["drift"] > 0 for r in losses)
    # A wrong parameter is refused at load time, naming the key, as for the built-in ones.
    cfg["regularizers"] = [{"kind": "drift", "wieght": 0.001}]
    result = cli("train", str(write_config(tmp_path, cfg, "typo.yaml")), "-q")
    assert result.exit_code == 2 and "regularizers.0.wieght" in result.stderr
