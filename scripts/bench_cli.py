#!/usr/bin/env python
"""Start-up costs of the command line: `ganforge --help`, and `ganforge sample` of 64 images
from a DCGAN checkpoint end to end (process start to files written), next to a bare
`python -c "import torch"` for scale. Median of --repeat runs each.

    python scripts/bench_cli.py --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        # A DCGAN checkpoint at 32 px (the quickstart's networks), trained for a few steps.
        subprocess.run([py, "-m", "ganforge", "train", str(ROOT / "configs" / "quickstart.yaml"), "-q",
                        "--set", "train.steps=2", "--set", f"output.dir={run}", "--set", "train.device=cpu"],
                       check=True, capture_output=True)
        rows = [
            ("ganforge --help", [py, "-m", "ganforge", "--help"]),
            ('python -c "import torch"', [py, "-c", "import torch"]),
            ("ganforge sample (64 images, files)", [py, "-m", "ganforge", "sample", str(run), "--num", "64",
                                                    "--out", str(Path(tmp) / "out"), "--device", "cpu"]),
            ("ganforge sample (64 images, grid)", [py, "-m", "ganforge", "sample", str(run), "--num", "64",
                                                   "--grid", "--out", str(Path(tmp) / "g.png"), "--device", "cpu"]),
        ]
        print(f"{'command':<38} {'median s':>9}   ({args.repeat} runs each)")
        results = {}
        for name, cmd in rows:
            results[name] = timed(cmd, args.repeat)
            print(f"{name:<38} {results[name]:>9.3f}", flush=True)
        share = results['python -c "import torch"'] / results["ganforge sample (64 images, files)"]
        print(f"torch import is {share:.0%} of the end-to-end sample time")


if __name__ == "__main__":
    main()
