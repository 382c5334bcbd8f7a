"""The EMA of G that samples come from is as good as G itself early in training (issue 15).

Without StyleGAN2-ADA's ramp-up, an EMA with decay 0.999 still holds 0.999^k of the
initial network after k steps (74% after 300 steps): a CPU run of a few minutes showed samples
much worse than G's own. These tests read the shipped configs' EMA settings, so setting
`train.ema.rampup: null` in one of them fails them.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from conftest import CONFIGS, tiny_config
from ganforge.checkpoint import load_checkpoint
from ganforge.config import config_to_dict, load_config, parse_config
from ganforge.data import to_unit_range
from ganforge.data.images import digits
from ganforge.generation import standing_stats
from ganforge.generation.drawing import draw, load_generator
from ganforge.run import RunDir
from ganforge.training.loop import train
from ganforge.training.steps import EMA

DIGITS_RECIPES = ["quickstart", "sngan_digits", "stylegan2_digits", "biggan_digits", "wgan_gp_digits"]


def weight_on_first_half(decay: float, start: int, rampup: float | None, steps: int) -> float:
    """Weight the EMA gives, after `steps` updates, to G's states from the first half of them
    (G is 1 until then and 0 after, so the EMA's value is that weight)."""
    G = nn.Linear(1, 1, bias=False)
    nn.init.ones_(G.weight)
    G_ema = copy.deepcopy(G)
    ema = EMA(G_ema, G, decay, start, rampup)
    for step in range(1, steps + 1):
        if step == steps // 2 + 1:
            nn.init.zeros_(G.weight)
        ema.update(step)
    return G_ema.weight.item()


@pytest.mark.parametrize("recipe", DIGITS_RECIPES)
def test_shipped_ema_forgets_the_first_half_of_a_short_run(recipe):
    """After 1,000 steps (about 2 CPU minutes of the quickstart), the networks of the first 500
    weigh less than 1% in the EMA; without ramp-up they would weigh 61%."""
    cfg, _ = load_config(CONFIGS / f"{recipe}.yaml")
    ema = cfg.train.ema
    assert weight_on_first_half(ema.decay, ema.start, ema.rampup, 1000) < 0.01
    # The bound is one that an EMA without ramp-up breaks.
    assert weight_on_first_half(ema.decay, ema.start, None, 1000) > 0.5


def pixel_features(images: torch.Tensor) -> np.ndarray:
    """Images shrunk to the digits' own 8x8 (area average), rounded to 8 bits first, as 64-d vectors."""
    images = ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
    return F.adaptive_avg_pool2d(images, 8).flatten(1).double().numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature vectors."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(s1)
    root1 = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.sqrt(np.linalg.eigvalsh(root1 @ s2 @ root1).clip(min=0)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def test_ema_samples_score_as_well_as_raw_g_after_a_short_run(tmp_path):
    """A 150-step run with the quickstart's EMA settings: the EMA's samples are about as close
    to the real digits as raw G's (Frechet distance on 8x8 pixels; measured 1.07x, as the EMA lags
    a fast-improving G by a few steps). Without ramp-up the EMA, still 86% the initial network,
    scores about twice as far (measured 1.93x)."""
    ema = load_config(CONFIGS / "quickstart.yaml")[0].train.ema
    raw = tiny_config(tmp_path / "run",
                      generator={"kind": "dcgan", "latent_dim": 16, "base_width": 8},
                      train={"steps": 150, "batch_size": 16, "seed": 0, "device": "cpu",
                             "ema": {"decay": ema.decay, "start": ema.start, "rampup": ema.rampup,
                                     "standing_stats": ema.standing_stats}},
                      log={"every": 50}, samples={"every": 1000, "num": 16}, checkpoint={"every": 150, "keep": 1})
    cfg = parse_config(raw)
    run = RunDir(cfg.output.dir)
    run.create()
    train(cfg, config_to_dict(cfg), run, progress=False)
    run.release_lock()

    real = pixel_features(to_unit_range(digits(16).load()[0]))
    fd = {use_ema: frechet(pixel_features(draw(load_generator(run.path, use_ema, "cpu"), 1000, seed=0)), real)
          for use_ema in (True, False)}
    assert fd[True] <= 1.15 * fd[False], fd


# -- standing BatchNorm statistics of G_ema ---------------------------------------------------


class LinearBN(nn.Module):
    """z -> Linear -> BatchNorm: the normalised output's statistics show whose weights the
    BatchNorm statistics belong to."""

    latent_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(4, 3), nn.BatchNorm1d(3)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.bn(self.fc(z))


def eval_output_stats(G: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of G's eval-mode output on fresh noise."""
    G.eval()
    with torch.no_grad():
        out = G(torch.randn(8192, G.latent_dim, generator=torch.Generator().manual_seed(99)))
    return out.mean(0), out.std(0)


def test_standing_stats_belong_to_the_emas_own_weights():
    """G's copied statistics normalise G_ema's outputs badly once its weights differ from G's;
    after `sync` G_ema's eval-mode outputs are normalised (mean 0, std 1), and the global RNG has
    not moved."""
    torch.manual_seed(0)
    G = LinearBN()
    G.train()
    with torch.no_grad():
        for _ in range(50):  # G's running statistics: right for G
            G(torch.randn(64, 4))
    G_ema = copy.deepcopy(G)
    with torch.no_grad():  # the average has drifted from G
        G_ema.fc.weight.mul_(3)
        G_ema.fc.bias.add_(2)
    ema = EMA(G_ema, G, decay=0.99, start=0, rampup=None,
              standing=lambda net: standing_stats(net, batches=16, batch_size=64, seed=5))
    ema.update(1)  # copies G's statistics
    mean, _ = eval_output_stats(G_ema)
    assert mean.abs().min() > 1.0, mean  # copied statistics: off

    rng = torch.get_rng_state()
    ema.sync()
    assert torch.equal(torch.get_rng_state(), rng)
    mean, std = eval_output_stats(G_ema)
    assert mean.abs().max() < 0.1 and (std - 1).abs().max() < 0.1, (mean, std)
    assert int(G_ema.bn.num_batches_tracked) == 16


def test_standing_stats_leave_training_alone(tmp_path):
    """The same run with and without standing statistics: G, D and G_ema's weights are equal at
    the end (samples and checkpoints were written on the way); only G_ema's BatchNorm statistics
    differ."""
    states = []
    for n in (0, 16):
        raw = tiny_config(tmp_path / f"run{n}")
        raw["train"]["ema"]["standing_stats"] = n
        cfg = parse_config(raw)
        run = RunDir(cfg.output.dir)
        run.create()
        train(cfg, config_to_dict(cfg), run, progress=False)
        run.release_lock()
        states.append(load_checkpoint(run.latest_checkpoint()).state)
    without, with_ = states
    for net in ("G", "D"):
        assert all(torch.equal(without[net][k], with_[net][k]) for k in without[net]), net
    stats = [k for k in without["G_ema"] if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key, value in without["G_ema"].items():
        if key in stats:
            assert not torch.equal(value, with_["G_ema"][key]), key
        elif not key.endswith("num_batches_tracked"):
            assert torch.equal(value, with_["G_ema"][key]), key


def test_standing_stats_run_on_one_process_under_syncbatchnorm():
    """Under DDP with SyncBatchNorm, rank 0 alone draws the sample grid: the standing
    statistics must not make a collective call. With a process group up, SyncBatchNorm refuses
    CPU tensors in train mode; the standing statistics come out as plain BatchNorm's."""
    torch.manual_seed(0)
    G = LinearBN()
    G_sync = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(G))
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="SyncBatchNorm"):
            copy.deepcopy(G_sync).train()(torch.randn(8, 4))
        assert standing_stats(G_sync, 4, 32, seed=1)
    finally:
        dist.destroy_process_group()
    standing_stats(G, 4, 32, seed=1)
    assert type(G_sync.bn) is nn.SyncBatchNorm and "forward" not in vars(G_sync.bn)
    for key, value in G.state_dict().items():
        assert torch.equal(value, G_sync.state_dict()[key]), key


def test_standing_stats_skip_generators_without_batchnorm():
    G = nn.Sequential(nn.Linear(4, 3))
    before = copy.deepcopy(G.state_dict())
    assert standing_stats(G, 16, 8, seed=0) is False
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
