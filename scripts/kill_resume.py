#!/usr/bin/env python
"""Kill a CPU training run with SIGKILL at random moments, resume after each, and check that
the final weights are bit-identical to a run that was never interrupted.

A kill can land anywhere: during start-up, in a step, while a checkpoint or the log is being
written. After each kill the run is resumed with `ganforge train --resume` (or started again if
no checkpoint exists yet). At the end G, D, G_ema and both optimizers' states are compared
tensor by tensor with an uninterrupted run of the same config.

    python scripts/kill_resume.py --kills 20 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

CONFIG = {
    "data": {"kind": "digits", "resolution": 16},
    "generator": {"kind": "dcgan", "latent_dim": 16, "base_width": 16},
    "discriminator": {"kind": "dcgan", "base_width": 16},
    "regularizers": [{"kind": "r1", "weight": 1.0, "every": 4}],
    "schedule": {"g": {"kind": "cosine", "warmup_steps": 20}, "d": {"kind": "constant"}},
    "train": {"steps": 10000, "batch_size": 32, "seed": 0, "device": "cpu", "ema": {"decay": 0.99}},
    "log": {"every": 5},
    "samples": {"every": 50, "num": 16},
    "checkpoint": {"every": 25, "keep": 3},
}


def ganforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganforge", *args]


def latest_step(run: Path) -> int | None:
    index = run / "checkpoints" / "index.json"
    if not index.exists():
        return None
    data = json.loads(index.read_text())
    return max((e["step"] for e in data["checkpoints"]), default=None)


def final_state(run: Path) -> dict:
    from ganforge.checkpoint import find_checkpoint, load_checkpoint

    return load_checkpoint(*find_checkpoint(run))


def compare(a: dict, b: dict) -> list[str]:
    """Names of the tensors that differ between two training states."""
    differ = []
    for net in ("G", "D", "G_ema"):
        differ += [f"{net}.{k}" for k in a[net] if not torch.equal(a[net][k], b[net][k])]
    for opt in ("opt_g", "opt_d"):
        for pid, state in a[opt]["state"].items():
            differ += [f"{opt}.{pid}.{k}" for k, v in state.items() if not torch.equal(v, b[opt]["state"][pid][k])]
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--steps", type=int, default=CONFIG["train"]["steps"])
    parser.add_argument("--max-delay", type=float, default=4.0, help="longest wait after start-up before a kill (s)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="ganforge-kill-"))
    cfg = {**CONFIG, "train": {**CONFIG["train"], "steps": args.steps}}

    config = tmp / "kill.yaml"
    config.write_text(yaml.safe_dump({**cfg, "output": {"dir": str(tmp / "killed")}}))
    reference = tmp / "reference.yaml"
    reference.write_text(yaml.safe_dump({**cfg, "output": {"dir": str(tmp / "reference")}}))

    print(f"reference run ({args.steps} steps) ...", flush=True)
    subprocess.run(ganforge("train", str(reference), "-q"), check=True, capture_output=True)

    run = tmp / "killed"
    print(f"{'kill':>4} {'delay s':>8} {'checkpoint step before':>23} {'after':>6}")
    kills = tracebacks = 0
    while kills < args.kills:
        before = latest_step(run)
        cmd = ganforge("train", "--resume", str(run), "-q") if before is not None else \
            ganforge("train", str(config), "-q", "--overwrite")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Random moments from start-up on: some kills land in imports, most in training,
        # some during a checkpoint write.
        delay = rng.uniform(0.5, 3.0 + args.max_delay)
        try:
            proc.wait(timeout=delay)
            _, err = proc.communicate()
            tracebacks += "Traceback" in err
            if proc.returncode == 0:
                print(f"the run finished before kill {kills + 1}; raise --steps for more kills")
                break
            raise SystemExit(f"training failed (exit {proc.returncode}): {err.strip()}")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        kills += 1
        print(f"{kills:>4} {delay:>8.2f} {before if before is not None else '-':>23} "
              f"{latest_step(run) if latest_step(run) is not None else '-':>6}", flush=True)

    print("final resume to completion ...", flush=True)
    done = subprocess.run(ganforge("train", "--resume", str(run), "-q"), capture_output=True, text=True)
    tracebacks += "Traceback" in done.stderr
    if done.returncode != 0:
        raise SystemExit(f"final resume failed: {done.stderr.strip()}")
    a, b = final_state(run), final_state(tmp / "reference")
    differ = compare(a["state"], b["state"])
    print(f"SIGKILLs: {kills}; final step {a['step']} (reference {b['step']}); tracebacks shown: {tracebacks}")
    if differ:
        print(f"NOT identical: {len(differ)} tensors differ, e.g. {differ[:3]}")
        sys.exit(1)
    print("bit-identical: G, D, G_ema and both optimizer states match the uninterrupted run")


if __name__ == "__main__":
    main()
