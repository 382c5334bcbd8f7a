#!/usr/bin/env python
"""Quality against training time: a digits config through `ganforge train`, against a
hand-written DCGAN loop given the same training seconds, both scored by scripts/quality_digits.py.

1. `ganforge train CONFIG` runs as a user runs it (a fresh process, --quiet), stopped by
   --max-minutes and/or the config's steps (--steps overrides them), with a checkpoint every
   --every steps (all kept) and a log record at each. Training seconds at a checkpoint are the
   sum of the log's windows (steps x images / img_per_s): the steps and the maintenance around
   them (sample grids, checkpoint writes), not the start-up.
2. The EMA of G and raw G of every checkpoint are scored.
3. The hand loop -- pytorch/examples' DCGAN recipe at the quickstart's size (DCGAN G and D with
   latent 64 and base width 32, Adam 2e-4 (0.5, 0.999), batch 64, non-saturating loss, one D step
   then one G step on fresh noise, random real batches in memory, as scripts/bench_step.py's hand
   loop), on the same real digits -- runs for as many training seconds as ganforge's run took,
   with its G scored at the same seconds as ganforge's checkpoints (snapshots are not timed).
4. One PNG: FD and IS against training seconds for EMA, raw G and the hand loop, with the
   held-out real digits as the floor; and, with --json, every figure.

    python scripts/quality_curve.py configs/quickstart.yaml --minutes 2 --out docs/quickstart_curve.png
    python scripts/quality_curve.py configs/quickstart.yaml --steps 3000 --every 500 --no-hand-loop --json q.json

The machine's load average is recorded before and after each part: timings mean little on a busy machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_digits as qd  # noqa: E402

from ganforge.checkpoint import CheckpointIndex  # noqa: E402
from ganforge.logrecord import IMAGES_SEEN, IMG_PER_S, STEP, is_training_record  # noqa: E402
from ganforge.run import RunDir  # noqa: E402
from ganforge.runinfo import read_log  # noqa: E402

HAND_LATENT, HAND_WIDTH, HAND_BATCH = 64, 32, 64


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def train_ganforge(config: str, out: Path, minutes: float | None, steps: int | None, every: int,
                   threads: int | None, overrides: list[str]) -> dict[str, Any]:
    """Run `ganforge train` in a fresh process; returns wall time and the log's training seconds per step."""
    sets = [*overrides, f"output.dir={out}", f"checkpoint.every={every}", "checkpoint.keep=100000",
            f"log.every={every}"]
    if steps:
        sets.append(f"train.steps={steps}")
    cmd = [sys.executable, "-m", "ganforge", "train", config, "--quiet", "--overwrite"]
    for s in sets:
        cmd += ["--set", s]
    if minutes:
        cmd += ["--max-minutes", str(minutes)]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    before, start = load(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 3) and not RunDir(out, read_only=True).checkpoint_files():
        raise SystemExit(f"ganforge train failed ({done.returncode}):\n{done.stderr[-2000:]}")
    seconds, elapsed = {}, 0.0
    previous = 0
    for r in read_log(out):
        if not is_training_record(r):
            continue
        elapsed += (r[IMAGES_SEEN] - previous) / max(r[IMG_PER_S], 1e-9)
        previous = r[IMAGES_SEEN]
        seconds[r[STEP]] = elapsed
    return {"wall_s": wall, "train_s": elapsed, "seconds_at_step": seconds, "load_before": before,
            "load_after": load()}


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(step, file) of every checkpoint, in step order."""
    folder = RunDir(run, read_only=True).checkpoints
    return [(e.step, folder / e.file) for e in CheckpointIndex(folder).entries]  # the index keeps step order


def hand_loop(resolution: int, seconds: list[float], threads: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """Train the hand-written DCGAN for max(seconds) training seconds; G's state at each of `seconds`."""
    from ganforge.data import to_unit_range
    from ganforge.data.images import digits
    from ganforge.models.dcgan import DCGANDiscriminator, DCGANGenerator

    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    G = DCGANGenerator(1, resolution, latent_dim=HAND_LATENT, base_width=HAND_WIDTH)
    D = DCGANDiscriminator(1, resolution, base_width=HAND_WIDTH)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = to_unit_range(digits(resolution).load()[0])
    batch = HAND_BATCH

    def step() -> None:
        real = data[torch.randint(len(data), (batch,))]
        # (1) D: maximise log D(x) + log(1 - D(G(z)))
        with torch.no_grad():
            fake = G(torch.randn(batch, HAND_LATENT))
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # (2) G: maximise log D(G(z))
        g_loss = F.softplus(-D(G(torch.randn(batch, HAND_LATENT)))).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()

    snapshots: list[dict[str, Any]] = []
    targets = sorted(seconds)
    elapsed, steps = 0.0, 0
    for target in targets:
        while elapsed < target:
            start = time.perf_counter()
            step()
            elapsed += time.perf_counter() - start
            steps += 1
        snapshots.append({"seconds": elapsed, "step": steps, "G": copy.deepcopy(G.state_dict())})
    return snapshots


@torch.no_grad()
def score_hand_snapshot(state: dict[str, Any], resolution: int, num: int, seed: int = 0) -> dict[str, Any]:
    """Judge figures of a hand-loop G (eval mode, the same noise as ganforge's sampling)."""
    from ganforge.generation import sample_noise
    from ganforge.models.dcgan import DCGANGenerator

    G = DCGANGenerator(1, resolution, latent_dim=HAND_LATENT, base_width=HAND_WIDTH)
    G.load_state_dict(state)
    G.eval()
    images = torch.cat([G(z) for z in sample_noise(num, HAND_LATENT, seed, torch.device("cpu")).split(256)])
    return qd.score_images(images)


def plot(result: dict[str, Any], out: Path) -> None:
    """FD and IS against training seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    floor = result["real"]
    for ax, key, name in ((axes[0], "fd", "Frechet distance (judge features), lower is better"),
                          (axes[1], "is", "Inception Score (judge softmax), higher is better")):
        for series, label, style in (("ema", "ganforge: EMA of G (what samples show)", "o-"),
                                     ("raw", "ganforge: raw G", "s--"),
                                     ("hand", "hand-written DCGAN loop", "^:")):
            points = result.get(series) or []
            if points:
                ax.plot([p["seconds"] for p in points], [p[key] for p in points], style, label=label, markersize=4)
        ax.axhline(floor[key], color="grey", linestyle="-.", label=f"held-out real digits ({floor[key]:.2f})")
        ax.set_xlabel("training seconds")
        ax.set_title(name, fontsize=10)
        if key == "fd":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    m = result["machine"]
    fig.suptitle(f"{result['config']} ({result['resolution']}x{result['resolution']} digits, {floor['num']} samples "
                 f"per point): {m['cpus']}-core CPU, torch {m['torch']}, load average {m['load']}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--minutes", type=float, help="stop ganforge's run after this wall time (--max-minutes)")
    parser.add_argument("--steps", type=int, help="train.steps (default: the config's)")
    parser.add_argument("--every", type=int, default=100, help="steps between checkpoints that are scored")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, help="CPU threads for both loops (default: torch's)")
    parser.add_argument("--work", type=Path, default=Path("runs/quality_curve"), help="run folder for ganforge")
    parser.add_argument("--no-hand-loop", action="store_true")
    parser.add_argument("--out", type=Path, help="PNG of the curves")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if not args.minutes and not args.steps:
        parser.error("give --minutes and/or --steps")

    torch.set_num_threads(1)  # scoring
    trained = train_ganforge(args.config, args.work, args.minutes, args.steps, args.every, args.threads,
                             args.overrides)
    points = checkpoints(args.work)
    resolution = qd.generate_from(points[-1][1], num=1)[0].shape[-1]
    judge = qd.load_judge(resolution)
    num = len(judge.held_out)
    result: dict[str, Any] = {
        "config": args.config, "overrides": args.overrides, "resolution": resolution,
        "ganforge": {k: v for k, v in trained.items() if k != "seconds_at_step"},
        "real": qd.real_floor(resolution, judge), "ema": [], "raw": [], "hand": [],
    }
    for step, file in points:
        seconds = trained["seconds_at_step"].get(step)
        for key, use_ema in (("ema", True), ("raw", False)):
            figures = qd.score_run(file, use_ema, num)
            result[key].append({"seconds": seconds, **figures})
    print(f"{args.config}: {points[-1][0]} steps in {trained['train_s']:.0f} training s ({trained['wall_s']:.0f} s "
          f"wall), load {trained['load_before']} -> {trained['load_after']}")
    if not args.no_hand_loop:
        before = load()
        targets = [p["seconds"] for p in result["ema"]]
        snapshots = hand_loop(resolution, targets, args.threads)
        for snap in snapshots:
            result["hand"].append({"seconds": snap["seconds"], "step": snap["step"],
                                   **score_hand_snapshot(snap["G"], resolution, num)})
        result["hand_load"] = [before, load()]
        print(f"hand loop: {snapshots[-1]['step']} steps in {snapshots[-1]['seconds']:.0f} s, "
              f"load {before} -> {load()}")
    result["machine"] = {"cpus": os.cpu_count(), "torch": torch.__version__.split("+")[0],
                         "cpu": platform.processor() or platform.machine(), "load": trained["load_after"]}

    floor = result["real"]
    print(f"{'':<6}{'step':>6} {'s':>6}  {'classes':>7} {'confident':>9} {'IS':>6} {'FD':>8} {'xfloor':>7}")
    for key in ("ema", "raw", "hand"):
        for p in result[key]:
            print(f"{key:<6}{p['step']:>6} {p['seconds']:>6.0f}  {p['classes']:>7} {p['confident']:>9.1%} "
                  f"{p['is']:>6.2f} {p['fd']:>8.2f} {p['fd'] / floor['fd']:>7.2f}")
    print(f"{'real':<6}{'':>6} {'':>6}  {floor['classes']:>7} {floor['confident']:>9.1%} {floor['is']:>6.2f} "
          f"{floor['fd']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.out:
        plot(result, args.out)
        print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
