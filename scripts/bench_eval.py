#!/usr/bin/env python
"""Time `ganforge eval` on 10,000 generated 32x32 images (FID, KID, IS, precision/recall) on this
machine, including the real-data statistics on the first run and the cached second run.

Without the real FID Inception weights (offline), an untrained network of the same architecture
is used: the time is the same, the figures are meaningless, and the script says so.

    python scripts/bench_eval.py --num 10000
    python scripts/bench_eval.py --knn-real 50000 --num 10000   # peak memory of the knn metric

--knn-real N measures the knn memorisation metric alone: N real and --num generated pool3
features (2,048 floats each, drawn at random in place of the Inception's: the search's memory
and time do not depend on their values), searched as `ganforge eval --metrics knn` does (the
sheet's running search batch by batch, then the figures). It prints the peak resident memory
of the process beyond the features themselves.
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
    parser.add_argument("--knn-real", type=int, help="measure the knn metric's peak memory at this many real images")
    args = parser.parse_args()
    if args.knn_real:
        bench_knn(args.knn_real, args.num)
        return
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


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_knn(num_real: int, num_fake: int, batch: int = 100) -> None:
    """Peak memory and time of the knn metric on random 2048-d features."""
    from ganforge.metrics.knn import ClosestSamples, knn_figures

    g = torch.Generator().manual_seed(0)
    real = torch.rand(num_real, 2048, generator=g)
    fake = torch.rand(num_fake, 2048, generator=g)
    images = torch.zeros(batch, 3, 32, 32, dtype=torch.uint8)
    base = peak_rss_mb()
    start = time.perf_counter()
    closest = ClosestSamples(real)
    for part in fake.split(batch):
        closest(images[: len(part)], {"main": part})
    figures = knn_figures(fake, real)
    seconds = time.perf_counter() - start
    features_mb = (real.numel() + fake.numel()) * 4 / 2**20
    all_pairs_mb = num_fake * num_real * 4 / 2**20
    print(f"knn: {num_real} real, {num_fake} generated 2048-d features ({features_mb:.0f} MB): peak RSS "
          f"{peak_rss_mb():.0f} MB, {peak_rss_mb() - base:.0f} MB above the features in memory "
          f"(an all-pairs float32 matrix would be {all_pairs_mb:.0f} MB); {seconds:.0f} s, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; figures {figures}")


if __name__ == "__main__":
    main()
