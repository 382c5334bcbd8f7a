"""The README's "Adding a component" example, as written there: a new regularizer is one
registered class, and a config trains with it without any other change."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import tiny_config, write_config
from ganforge.registry import REGULARIZERS
from ganforge.regularizers import Regularizer, Weight


@pytest.fixture
def scoped_registry(monkeypatch):
    """What the test registers goes into a copy of the regularizers' entries, so that the other
    tests see the built-in ones only."""
    REGULARIZERS.names()  # the built-in components are registered first
    monkeypatch.setattr(REGULARIZERS, "_entries", dict(REGULARIZERS._entries))


def test_the_readme_regularizer_trains_from_a_config(scoped_registry, cli, tmp_path):
    # The class, as the README shows it.
    @REGULARIZERS.register("drift")
    class Drift(Regularizer):
        """Epsilon drift (Karras et al. 2018): keeps D's outputs on real data near zero."""

        def __init__(self, weight: Weight = 0.001) -> None:
            self.weight = weight

        def d_outputs(self, real_logits, fake_logits):
            return real_logits.float().square().mean()

    # Its test, as the README shows it.
    assert Drift().d_outputs(torch.tensor([1.0, -3.0]), None) == 5.0  # (1 + 9) / 2
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
