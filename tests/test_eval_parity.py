"""Evaluation during training gives the figures `ganforge eval` gives for the checkpoint of the
same step with the same seed: the same generator (G_ema with its standing BatchNorm statistics),
the same noise, the same real statistics."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config, write_config
from ganforge.metrics.features import FeatureExtractor
from ganforge.registry import EXTRACTORS


class Pooled(FeatureExtractor):
    """Images pooled to 4x4 times a fixed random matrix (features), and logits from them: a cheap
    stand-in for Inception whose features follow the pixels."""

    name = "pooled pixels"

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.project, self.classes = torch.randn(16, 12, generator=g), torch.randn(12, 10, generator=g)

    def forward(self, images):
        features = F.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1) @ self.project
        return features, features @ self.classes


@pytest.fixture
def pooled_extractor(monkeypatch):
    """`eval.extractor: {kind: pooled}` for this test only."""
    EXTRACTORS.names()  # the built-in ones are registered first
    monkeypatch.setattr(EXTRACTORS, "_entries", dict(EXTRACTORS._entries))

    @EXTRACTORS.register("pooled")
    def pooled() -> Pooled:
        """Pooled pixels."""
        return Pooled()


def test_training_evaluation_equals_ganforge_eval_of_the_same_checkpoint(cli, tmp_path, pooled_extractor):
    # dcgan's G has BatchNorm: G_ema is read with standing statistics. Samples are drawn at step 4
    # only, so nothing but the evaluation itself prepares G_ema at step 2.
    run = tmp_path / "run"
    cfg = tiny_config(run, train={"steps": 4, "batch_size": 8, "seed": 3, "device": "cpu", "ema": {"decay": 0.9}},
                      samples={"every": 4, "num": 16}, checkpoint={"every": 2, "keep": 5},
                      eval={"every": 2, "metrics": ["fid", "kid", "is"], "num_samples": 30, "real_samples": 40,
                            "extractor": {"kind": "pooled"}, "cache_dir": str(tmp_path / "cache")})
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    during = {r["step"]: r["eval"] for r in records if "eval" in r}
    assert set(during) == {2, 4}
    for step in (2, 4):
        result = cli("eval", str(run / "checkpoints" / f"step-{step:08d}.pt"), "--seed", "3", "--json", "-q")
        assert result.exit_code == 0, result.stderr
        after = json.loads(result.stdout)["metrics"]
        assert after == pytest.approx(during[step], rel=1e-9, abs=1e-12), step
    assert during[2] != pytest.approx(during[4], rel=1e-3)  # the figures follow the generator
