"""Images per second that each data kind delivers to the training loop, on data made here; and,
with --dataset, the speed and memory of `ganforge dataset`.

    python scripts/bench_data.py [--num-images 2000] [--resolution 64] [--batches 60] [--workers N]
    python scripts/bench_data.py --dataset [--counts 5000,20000] [--workers N]

Writes `--num-images` random RGB PNGs (two class folders) into a temporary folder, the same
images as a zip (`ganforge dataset`) and, when `datasets` is installed, as a Hugging Face
`save_to_disk` folder; then times the batch stream of each kind (digits, image_folder, zip, hf)
as training reads it: `batch_size` 64 on the CPU, each kind's default `num_workers` unless
--workers is given. The first batches (worker start-up) are timed apart from the steady state.
Random noise compresses badly, so decoding costs about what large photos' PNGs cost per pixel.

--dataset writes, for each count, that many 256x256 JPEGs (smooth random colour fields with fine
noise, about 15 KB each, as photos compress) and runs `ganforge dataset` on them at 256 px in a
fresh process (default --workers: the CPU count), reporting images/s and the peak resident memory
of the main process and of its largest worker. Peak memory must not grow with the count: the tool
streams, so the 20,000-image run should peak where the 5,000-image run does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def load_average() -> str:
    """The 1/5/15-minute load averages and the CPU count (the machine may be shared)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def write_images(root: Path, num: int, resolution: int) -> None:
    """`num` random RGB PNGs in two class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(num):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def write_hf(root: Path, folder: Path) -> Path | None:
    """The same images as a Hugging Face save_to_disk folder (None without `datasets`)."""
    try:
        import datasets
    except ImportError:
        return None
    files = sorted(folder.rglob("*.png"))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    # The encoded bytes inside the data set, as one from the Hub holds them (not paths to the files).
    table = datasets.Dataset.from_dict({"image": [{"bytes": f.read_bytes(), "path": None} for f in files],
                                        "label": [0 if f.parent.name == "a" else 1 for f in files]},
                                       features=features)
    out = root / "hf"
    table.save_to_disk(str(out))
    return out


def time_stream(data: dict, batches: int, batch_size: int = 64) -> tuple[float, float]:
    """(seconds to the first batch, steady images/s over `batches` batches after the next 3)."""
    from ganforge.build import build_data
    from ganforge.config import parse_config

    source = build_data(parse_config({"data": data, "generator": {"kind": "mlp"}, "discriminator": {"kind": "mlp"}}))
    start = time.perf_counter()
    stream = source.batches(batch_size, 0, torch.device("cpu"))
    next(stream)
    first = time.perf_counter() - start
    for _ in range(3):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = next(stream)
    elapsed = time.perf_counter() - start
    del stream  # stops its DataLoader workers
    return first, batches * batch_size / elapsed


def write_photos(root: Path, num: int, side: int = 256) -> int:
    """`num` JPEGs of side x side, smooth random colour fields with fine noise; returns their bytes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(num):
        field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((side, side),
                                                                                        Image.Resampling.BICUBIC)
        noisy = np.asarray(field).astype(np.int16) + rng.integers(-6, 7, (side, side, 3), dtype=np.int16)
        path = root / f"{i // 1000:03d}" / f"{i:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        total += path.stat().st_size
    return total


# Run in a fresh process: `ganforge dataset ...`, then its peak RSS (KiB) and its largest worker's.
# The process's own peak is VmHWM, its memory's high-water mark since exec; ru_maxrss would also count
# the memory of the process that started it (Linux carries it across exec).
_CHILD = """
import json, re, resource, sys
from pathlib import Path
from ganforge.cli import main
sys.argv = ["ganforge", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    if e.code:
        raise
main_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
workers_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("RUSAGE " + json.dumps({"main": main_kib, "workers": workers_kib}), file=sys.stderr)
"""


def bench_dataset(counts: list[int], workers: int | None, keep: Path | None) -> None:
    """`ganforge dataset` on generated JPEGs: images/s and peak memory for each count."""
    print(f"start: {load_average()}")
    print(f"{'images':>8} {'workers':>7} {'seconds':>8} {'images/s':>9} {'main peak RSS MiB':>18} "
          f"{'worker peak RSS MiB':>20} {'zip MiB':>8}")
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        for count in counts:
            root = Path(tmp) / f"photos-{count}"
            write_photos(root, count)
            out = Path(tmp) / f"data-{count}.zip"
            argv = ["dataset", str(root), "--out", str(out), "-r", "256", "--json", "-q"]
            if workers is not None:
                argv += ["--workers", str(workers)]
            done = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True)
            if done.returncode != 0 or "RUSAGE" not in done.stderr:
                raise SystemExit(f"ganforge dataset failed: {done.stderr[-2000:]}")
            summary = json.loads(done.stdout)
            usage = json.loads(done.stderr.split("RUSAGE ")[-1])
            used = workers if workers is not None else len(os.sched_getaffinity(0))
            print(f"{summary['written']:>8} {used:>7} {summary['seconds']:>8.1f} "
                  f"{summary['written'] / summary['seconds']:>9.0f} {usage['main'] / 1024:>18.0f} "
                  f"{usage['workers'] / 1024:>20.0f} {out.stat().st_size / 2**20:>8.0f}")
            out.unlink()
    print(f"end: {load_average()}")


def main() -> None:
    """Write the data, time every kind, print a table (or, with --dataset, bench `ganforge dataset`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batches", type=int, default=60, help="timed batches of 64 per kind")
    parser.add_argument("--workers", type=int, default=None,
                        help="num_workers for every kind (default: its own); with --dataset, dataset --workers")
    parser.add_argument("--dataset", action="store_true", help="bench `ganforge dataset` instead")
    parser.add_argument("--counts", default="5000,20000", help="--dataset: image counts, comma-separated")
    parser.add_argument("--tmp", type=Path, default=None, help="--dataset: folder for the generated data")
    args = parser.parse_args()
    if args.dataset:
        bench_dataset([int(c) for c in args.counts.split(",")], args.workers, args.tmp)
        return
    torch.set_num_threads(1)
    from ganforge.dataset_tool import make_dataset

    print(f"start: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        write_images(root / "images", args.num_images, args.resolution)
        print(f"wrote {args.num_images} PNGs of {args.resolution}x{args.resolution} in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        summary = make_dataset(root / "images", root / "data.zip", args.resolution, workers=0, progress=False)
        print(f"ganforge dataset (1 process): {summary.written} images in {time.perf_counter() - t:.1f} s")
        hf = write_hf(root, root / "images")
        workers = {} if args.workers is None else {"num_workers": args.workers}
        kinds = {
            "digits": {"kind": "digits", "resolution": args.resolution},
            "image_folder": {"kind": "image_folder", "path": str(root / "images"), "resolution": args.resolution,
                             **workers},
            "zip": {"kind": "zip", "path": str(root / "data.zip"), **workers},
        }
        if hf is not None:
            kinds["hf"] = {"kind": "hf", "path": str(hf), "resolution": args.resolution, **workers}
        else:
            print("hf: skipped (pip install 'ganforge[hf]')")
        print(f"{'kind':<14} {'first batch s':>13} {'images/s':>10}")
        for name, data in kinds.items():
            first, rate = time_stream(data, args.batches)
            print(f"{name:<14} {first:>13.2f} {rate:>10.0f}")
    print(f"end: {load_average()}")


if __name__ == "__main__":
    main()
