#!/usr/bin/env python
"""The size check's refusals, timed: shipped configs with one size set far too large, each
validated as `ganforge train --dry-run` validates it (ganforge/footprint.py), with the seconds
(wall and CPU) from the config to the one-line error.

    python scripts/size_check.py              # against this machine's memory
    python scripts/size_check.py --cap 2      # as a process limited to 2 GiB more than it holds (ulimit -v)

The cap is applied after torch is imported; it is what the fuzz test does, and it keeps a config
that the check lets through (one that fits) from taking a shared machine's memory while the
script builds it.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ("stylegan2_cifar10.yaml", ["generator.mapping_layers=100000"]),
    ("tiny.yaml", ["train.batch_size=10000000"]),
    ("cifar10.yaml", ["train.batch_size=10000000"]),
    ("gaussian_grid.yaml", ["generator.depth=100000"]),
    ("gaussian_grid.yaml", ["generator.width=10000000"]),
    ("wgan_gp_cifar10.yaml", ["discriminator.extra_blocks=100000"]),
]
# With --cap only: these fit a machine with 16 GiB or more (100,000 mapping layers of w_dim 64 are
# 416 M parameters, about 9 GiB to train; DCGAN at 4096 channels about 12 GiB), and the script
# would then build them for real.
CAPPED_CASES = [("stylegan2_digits.yaml", ["generator.mapping_layers=100000"]),
                ("cifar10.yaml", ["generator.base_width=4096", "generator.max_width=4096"])]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=None, metavar="GIB",
                        help="limit this process to GIB more address space than it holds after importing torch")
    args = parser.parse_args()

    import torch  # noqa: F401  (imported before the cap: its libraries map gigabytes of address space)

    from ganforge.build import validate
    from ganforge.config import load_config
    from ganforge.errors import ConfigError

    if args.cap is not None:
        in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (in_use + int(args.cap * 2**30), resource.RLIM_INFINITY))
    for name, overrides in CASES + (CAPPED_CASES if args.cap is not None else []):
        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            cfg, _ = load_config(ROOT / "configs" / name, overrides)
            _, footprint = validate(cfg)
            outcome = f"fits: {footprint.describe()}"
        except ConfigError as e:
            outcome = f"error: {e}"
        print(f"{name} {' '.join(overrides)}: {time.perf_counter() - wall:.2f} s wall, {cpu_seconds() - cpu:.2f} s CPU")
        print(f"  {outcome}")


if __name__ == "__main__":
    main()
