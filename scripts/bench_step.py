#!/usr/bin/env python
"""Training-step speed: ganforge's loop against a minimal hand-written PyTorch loop, and the
effect of each speed option.

Both train the same DCGAN (ganforge's generator and discriminator modules, the same widths,
batch and Adam settings, non-saturating loss, one D step per G step with fresh noise for the G
step, data held in memory). Every measurement runs in a fresh process (so peak memory is its
own), and rounds alternate between the variants so that machine noise hits all of them; the
table shows median images/s, the ratio to the hand loop and peak memory (resident set on the
CPU, allocated memory on a GPU).

ganforge is timed through its real entry point, `ganforge.train.train`: images/s comes from its
own log record over the measured steps (setup, warm-up steps and the final sample grid and
checkpoint fall outside the window).

    python scripts/bench_step.py                          # 32 and 64 px, every variant
    python scripts/bench_step.py --resolution 32 --variants default channels_last --rounds 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# name -> (train-section overrides, optimizer implementation, EMA decay). Every variant but
# "EMA off" keeps the default EMA of G (decay 0.999), work the hand loop does not do.
VARIANTS: dict[str, tuple[dict, str, float]] = {
    "default": ({}, "auto", 0.999),
    "EMA off": ({}, "auto", 0.0),
    "adam loop (not fused)": ({}, "loop", 0.999),
    "channels_last": ({"channels_last": True}, "auto", 0.999),
    "bf16 autocast": ({"precision": "bf16"}, "auto", 0.999),
    "compile": ({"compile": True}, "auto", 0.999),
    "compile + channels_last": ({"compile": True, "channels_last": True}, "auto", 0.999),
}


def ganforge_config(resolution: int, batch: int, steps: int, window: int, variant: str, device: str,
                    out: Path) -> dict:
    extra, implementation, ema = VARIANTS[variant]
    adam = {"kind": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "implementation": implementation}
    return {
        "data": {"kind": "digits", "resolution": resolution},
        "generator": {"kind": "dcgan", "latent_dim": 100, "base_width": 64},
        "discriminator": {"kind": "dcgan", "base_width": 64},
        "loss": {"kind": "non_saturating"},
        "optim": {"g": adam, "d": adam},
        "train": {"steps": steps, "batch_size": batch, "seed": 0, "device": device, "ema": {"decay": ema},
                  "deterministic": False, **extra},
        "log": {"every": window},  # the last record covers exactly the measured window
        "samples": {"every": 10**6, "num": 16},
        "checkpoint": {"every": 10**6, "keep": 1},
        "output": {"dir": str(out)},
    }


def measured_steps(warmup: int, window: int) -> int:
    """Total steps: the warm-up rounded up to whole windows (ganforge logs every `window` steps
    and its last record times the last window), then the window."""
    return -(-warmup // window) * window + window


def run_ganforge(resolution: int, batch: int, warmup: int, window: int, variant: str, device: str) -> float:
    from ganforge.config import config_to_dict, parse_config
    from ganforge.run import RunDir
    from ganforge.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(ganforge_config(resolution, batch, measured_steps(warmup, window), window, variant,
                                           device, Path(tmp) / "run"))
        run = RunDir(cfg.output.dir)
        run.create()
        train(cfg, config_to_dict(cfg), run, progress=False)
        run.release_lock()
        records = [json.loads(line) for line in (run.path / "log.jsonl").read_text().splitlines()]
    return records[-1]["img_per_s"]


def run_hand_loop(resolution: int, batch: int, warmup: int, window: int, device: str) -> float:
    """The loop one writes by hand: no framework, the same networks and hyper-parameters."""
    from sklearn.datasets import load_digits

    from ganforge.models.dcgan import DCGANDiscriminator, DCGANGenerator

    dev = torch.device(device)
    torch.manual_seed(0)
    G = DCGANGenerator(1, resolution, latent_dim=100, base_width=64).to(dev)
    D = DCGANDiscriminator(1, resolution, base_width=64).to(dev)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.from_numpy(load_digits().images).float().unsqueeze(1) / 8 - 1
    data = F.interpolate(x, size=(resolution, resolution), mode="bilinear").to(dev)

    def step() -> None:
        real = data[torch.randint(len(data), (batch,), device=dev)]
        # (1) D: maximise log D(x) + log(1 - D(G(z)))
        with torch.no_grad():
            fake = G(torch.randn(batch, 100, device=dev))
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # (2) G: maximise log D(G(z))
        g_loss = F.softplus(-D(G(torch.randn(batch, 100, device=dev)))).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()

    for _ in range(measured_steps(warmup, window) - window):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(window):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return window * batch / (time.perf_counter() - start)


def peak_memory_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args: argparse.Namespace) -> None:
    if args.worker == "hand loop":
        speed = run_hand_loop(args.res, args.batch, args.warmup, args.window, args.device)
    else:
        speed = run_ganforge(args.res, args.batch, args.warmup, args.window, args.worker, args.device)
    print(json.dumps({"img_per_s": speed, "peak_mib": peak_memory_mib(args.device)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5,
                        help="steps before the window, rounded up to whole windows (compilation happens here)")
    parser.add_argument("--window", type=int, default=30, help="measured steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--res", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    names = ["hand loop", *args.variants]
    warmup = measured_steps(args.warmup, args.window) - args.window
    print(f"torch {torch.__version__} on {args.device} ({torch.get_num_threads()} threads), batch {args.batch}, "
          f"{warmup} warm-up + {args.window} measured steps, {args.rounds} rounds, median shown")
    for res in args.resolution:
        speeds: dict[str, list[float]] = {n: [] for n in names}
        memory: dict[str, float] = {}
        for _ in range(args.rounds):
            for name in names:
                out = subprocess.run([sys.executable, __file__, "--worker", name, "--res", str(res), "--batch",
                                      str(args.batch), "--warmup", str(args.warmup), "--window", str(args.window),
                                      "--device", args.device], capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                speeds[name].append(result["img_per_s"])
                memory[name] = max(memory.get(name, 0.0), result["peak_mib"])
        hand = statistics.median(speeds["hand loop"])
        print(f"\n{res}x{res} DCGAN (base width 64)")
        print(f"  {'variant':<26} {'img/s':>8} {'x hand loop':>12} {'peak MiB':>9}")
        for name in names:
            median = statistics.median(speeds[name])
            spread = f"({min(speeds[name]):.0f}-{max(speeds[name]):.0f})"
            print(f"  {name:<26} {median:>8.1f} {median / hand:>12.3f} {memory[name]:>9.0f}   {spread}")


if __name__ == "__main__":
    main()
