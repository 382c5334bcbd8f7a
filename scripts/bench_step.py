#!/usr/bin/env python
"""Training-step speed: ganforge's loop against a minimal hand-written PyTorch loop.

Both train the same DCGAN (ganforge's generator and discriminator modules, the same widths,
batch and Adam settings, non-saturating loss, one D step per G step with fresh noise for the G
step, data held in memory). Rounds alternate between the two so that machine noise hits both;
the script prints images/s per round and the median ratio ganforge / hand loop.

ganforge is timed through its real entry point, `ganforge.train.train`: the images/s figure
comes from its own log record over the measured steps (setup, the warm-up steps and the final
sample grid and checkpoint are outside the window).

    python scripts/bench_step.py                    # 32 and 64 px, EMA off (as the hand loop)
    python scripts/bench_step.py --resolution 32 --rounds 5 --ema 0.999
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ganforge.build import build_discriminator, build_generator
from ganforge.config import config_to_dict, parse_config
from ganforge.data import DataInfo
from ganforge.run import RunDir
from ganforge.train import train


def config(resolution: int, batch: int, steps: int, window: int, ema: float, extra: dict, out: Path) -> dict:
    train_section = {"steps": steps, "batch_size": batch, "seed": 0, "device": "cpu", "ema": {"decay": ema}}
    train_section.update(extra)
    return {
        "data": {"kind": "digits", "resolution": resolution},
        "generator": {"kind": "dcgan", "latent_dim": 100, "base_width": 64},
        "discriminator": {"kind": "dcgan", "base_width": 64},
        "loss": {"kind": "non_saturating"},
        "train": train_section,
        "log": {"every": steps - window},
        "samples": {"every": 10**6, "num": 16},
        "checkpoint": {"every": 10**6, "keep": 1},
        "output": {"dir": str(out)},
    }


def ganforge_images_per_s(raw: dict) -> float:
    import json

    cfg = parse_config(raw)
    run = RunDir(cfg.output.dir)
    run.create(overwrite=True)
    train(cfg, config_to_dict(cfg), run, progress=False)
    run.release_lock()
    records = [json.loads(line) for line in (run.path / "log.jsonl").read_text().splitlines()]
    return records[-1]["img_per_s"]


def hand_loop_images_per_s(resolution: int, batch: int, warmup: int, window: int) -> float:
    """The loop one writes by hand: no framework, the same networks and hyper-parameters."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    info = DataInfo("digits", (1, resolution, resolution), 10)
    raw = parse_config(config(resolution, batch, 2, 1, 0.0, {}, Path("unused")))
    G, D = build_generator(raw.generator, info), build_discriminator(raw.discriminator, info)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.from_numpy(load_digits().images).float().unsqueeze(1) / 8 - 1
    data = F.interpolate(x, size=(resolution, resolution), mode="bilinear")

    def step() -> None:
        real = data[torch.randint(len(data), (batch,))]
        # (1) D: maximise log D(x) + log(1 - D(G(z)))
        with torch.no_grad():
            fake = G(torch.randn(batch, 100))
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # (2) G: maximise log D(G(z))
        g_loss = F.softplus(-D(G(torch.randn(batch, 100)))).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(window):
        step()
    return window * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--window", type=int, default=30, help="measured steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ema", type=float, default=0.0, help="ganforge's EMA decay (the hand loop has none)")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    extra = {"channels_last": True} if args.channels_last else {}

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.window} measured steps per round, EMA {args.ema}, extra {extra or 'none'}")
    print(f"{'px':>4} {'round':>5} {'ganforge img/s':>15} {'hand img/s':>11} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.resolution:
            ratios = []
            for r in range(args.rounds):
                raw = config(res, args.batch, args.warmup + args.window, args.window, args.ema, extra,
                             Path(tmp) / f"run{res}")
                ours = ganforge_images_per_s(raw)
                hand = hand_loop_images_per_s(res, args.batch, args.warmup, args.window)
                ratios.append(ours / hand)
                print(f"{res:>4} {r:>5} {ours:>15.1f} {hand:>11.1f} {ours / hand:>6.3f}", flush=True)
            print(f"{res:>4} median ratio ganforge / hand loop: {statistics.median(ratios):.3f}")
    sys.exit(0)


if __name__ == "__main__":
    main()
