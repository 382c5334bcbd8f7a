#!/usr/bin/env python
"""Time `ganforge eval` on 10,000 generated 32x32 images (FID, KID, IS, precision/recall) on this
machine, including the real-data statistics on the first run and the cached second run.

Without the real FID Inception weights (offline), an untrained network of the same architecture
is used: the time is the same, the figures are meaningless, and the script says so.

    python scripts/bench_eval.py --num 10000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--metrics", default="fid,kid,is,pr")
    parser.add_argument("--inception-weights", help="the real FID weights (default: hub cache, else untrained)")
    args = parser.parse_args()
    from ganforge.metrics.inception import FIDInception, default_weights_path

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.inception_weights or (str(default_weights_path()) if default_weights_path().is_file() else None)
        if weights is None:
            weights = str(Path(tmp) / "untrained-inception.pth")
            torch.save(FIDInception().net.state_dict(), weights)
            print("FID Inception weights not found: timing an untrained network of the same architecture")
        run = Path(tmp) / "run"
        # A 32x32 DCGAN checkpoint on digits (the quickstart's networks, a few steps trained).
        subprocess.run([sys.executable, "-m", "ganforge", "train", str(ROOT / "configs" / "quickstart.yaml"), "-q",
                        "--set", "train.steps=2", "--set", f"output.dir={run}", "--set", "train.device=cpu"],
                       check=True, capture_output=True)
        for label in ("first run (real statistics computed)", "second run (real statistics cached)"):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ganforge", "eval", str(run), "--metrics", args.metrics,
                            "--num", str(args.num), "--inception-weights", weights, "--cache-dir",
                            str(Path(tmp) / "cache"), "--device", "cpu", "--out", str(Path(tmp) / "eval.json")],
                           check=True)
            seconds = time.perf_counter() - start
            report = json.loads((Path(tmp) / "eval.json").read_text())
            print(f"{label}: {seconds:.0f} s for {report['num_samples']} generated images "
                  f"(+ {report['reference']['num_samples']} real), torch {torch.__version__}, "
                  f"{torch.get_num_threads()} threads", flush=True)


if __name__ == "__main__":
    main()
