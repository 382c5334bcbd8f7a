"""The moving average of G as a configured run computes it (`train.ema` -> the loop -> the
checkpoints), against StyleGAN2-ADA's formula applied by hand to the G of every step:

    ema_nimg = min(ema_kimg * 1000, cur_nimg * ema_rampup);  beta = 0.5 ** (batch / ema_nimg)
    G_ema <- beta * G_ema + (1 - beta) * G

with cur_nimg the images seen before the step (averaging counted from `start`, before which
G_ema copies G) and ema_kimg * 1000 = the half-life of `decay` in images."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_config, write_config
from ganforge.checkpoint import load_checkpoint
from ganforge.config import load_config
from ganforge.run import RunDir
from ganforge.training.loop import train

BATCH, STEPS = 8, 6


@pytest.mark.parametrize(("decay", "start", "rampup"), [(0.9, 2, 0.5), (0.8, 1, None)])
def test_g_ema_follows_the_reference_formula_step_by_step(tmp_path, decay, start, rampup):
    cfg = tiny_config(tmp_path / "run", data={"kind": "gaussian_grid", "num_samples": 64},
                      generator={"kind": "mlp", "width": 16}, discriminator={"kind": "mlp", "width": 16},
                      train={"steps": STEPS, "batch_size": BATCH, "seed": 0, "device": "cpu",
                             "ema": {"decay": decay, "start": start, "rampup": rampup}},
                      optim={"g": {"kind": "adam", "lr": 0.01}, "d": {"kind": "adam", "lr": 0.01}},
                      samples={"every": STEPS, "num": 16}, checkpoint={"every": 1, "keep": STEPS})
    config, resolved = load_config(write_config(tmp_path, cfg))
    run = RunDir(config.output.dir)
    run.create()
    train(config, resolved, run, progress=False)
    run.release_lock()
    states = [load_checkpoint(tmp_path / "run" / "checkpoints" / f"step-{s:08d}.pt").state
              for s in range(1, STEPS + 1)]
    half_life_images = math.log(0.5) / math.log(decay) * BATCH
    expected = None
    for step, state in enumerate(states, 1):
        G = {k: v.double() for k, v in state["G"].items()}
        if step <= start:
            expected = G
        else:
            cur_nimg = (step - start - 1) * BATCH
            ema_nimg = half_life_images if rampup is None else min(half_life_images, cur_nimg * rampup)
            beta = 0.5 ** (BATCH / max(ema_nimg, 1e-8))
            expected = {k: beta * expected[k] + (1 - beta) * G[k] for k in G}
        for key, value in state["G_ema"].items():
            torch.testing.assert_close(value.double(), expected[key], rtol=0, atol=1e-6, msg=f"step {step} {key}")
    # G moved enough between steps that a beta off by one step would not pass.
    first, last = states[start]["G"], states[-1]["G"]
    assert max((first[k] - last[k]).abs().max().item() for k in first) > 1e-2
