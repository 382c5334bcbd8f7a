"""Writing drawn samples: one PNG per sample (named by position, or by seed: seed0042.png), one
grid PNG, or for 2D data a .npy file and a scatter plot."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganforge.errors import CheckpointError, GanforgeError
from ganforge.generation import grid_columns
from ganforge.generation.drawing import LoadedGenerator
from ganforge.imaging import grid, scatter, to_pil, to_uint8

# Points drawn in the scatter plot of 2D samples (the .npy file holds them all).
SCATTER_POINTS = 20_000
# The file names of single samples (000042.png).
SAMPLE_NAME = re.compile(r"\d{6,}\.png")


class SampleWriter:
    """Writes samples as they are drawn: PNG files in a folder, one grid PNG, or (2D data) a .npy
    file plus a scatter plot. Before the first file is written, it refuses in one line a `num`
    whose files cannot fit on the disk (or, for a grid, in memory)."""

    def __init__(self, loaded: LoadedGenerator, out: Path, num: int, as_grid: bool, class_grid: bool = False,
                 seeds: list[int] | None = None) -> None:
        self.info, self.out, self.num, self.written = loaded.info, out, num, 0
        self.seeds = seeds  # one file per seed, named by it (seed0042.png), instead of by position
        self.columns = grid_columns(num, loaded.num_classes) if class_grid else None
        self.files: list[Path] = []  # the fixed output files (none when writing a file per sample)
        if not self.info.is_image:
            npy = out if out.suffix == ".npy" else out / "samples.npy"
            self.files = [npy, npy.with_suffix(".png")]
        elif as_grid:
            self.files = [out if out.suffix.lower() == ".png" else out.with_suffix(".png")]
        self._array: np.ndarray | None = None
        self._kept: list[Tensor] = []  # the grid's images, or the points of the scatter plot

    def file(self, i: int) -> Path:
        """The file of sample i (one file per sample): 000042.png, or seed0042.png by its seed."""
        return self.out / (f"seed{self.seeds[i]:04d}.png" if self.seeds is not None else f"{i:06d}.png")

    def targets(self, paths: list[Path]) -> list[Path]:
        """The files it would write among those named like `paths` (to compare them with what is read)."""
        if self.files:
            return self.files
        if self.seeds is not None:
            names = {p.name for p in paths}
            return [self.file(i) for i in range(self.num) if self.file(i).name in names]
        return [self.file(int(p.name[:-4])) for p in paths
                if SAMPLE_NAME.fullmatch(p.name) and int(p.name[:-4]) < self.num]

    def check_room(self, bytes_per_sample: float) -> None:
        """Refuse, before anything is written, samples that need more than the free disk space
        (at `bytes_per_sample` each), or more files than the file system has left."""
        where = next(p for p in (self.out, *self.out.parents) if p.exists())
        try:
            fs = os.statvfs(where)
        except OSError:
            return  # no figures to go by: a full disk is reported when a write fails
        need, free = bytes_per_sample * self.num, fs.f_bavail * fs.f_frsize
        if need > free:
            raise GanforgeError(f"--num {self.num}: the samples need about {_size(need)} on the disk of {where}, "
                                f"which has {_size(free)} free; lower --num or choose another --out")
        if not self.files and fs.f_files and self.num > fs.f_favail:
            raise GanforgeError(f"--num {self.num}: one file per sample, but the file system of {where} has room "
                                f"for {fs.f_favail} more files; lower --num, write a --grid, or choose another --out")

    def start(self) -> None:
        """Check the room the samples need that their shape alone tells (before any is drawn)."""
        values = int(np.prod(self.info.shape))
        if not self.info.is_image:
            self.check_room(values * 4)
        elif self.files:  # a grid: every image in memory at once, as uint8 pixels, then the PNG
            need, available = 3 * values * self.num, _available_memory()
            if available is not None and need > available:
                raise GanforgeError(f"--grid of {self.num} samples: needs about {_size(need)} of memory, "
                                    f"{_size(available)} is available; lower --num, or drop --grid to write a "
                                    "file per sample")
            self.check_room(values)
        else:
            self.check_room(_block_size(self.out))  # at least a block per file

    def add(self, batch: Tensor) -> None:
        """Write (or keep, for a grid) the next batch of samples."""
        try:
            if not self.info.is_image:
                self._add_points(batch)
            elif self.files:
                self._kept.append(to_uint8(batch))
            else:
                self._add_files(batch)
        except OSError as e:
            raise CheckpointError(f"cannot write samples to {self.out} after {self.written} of {self.num} "
                                  f"({e.strerror or e})") from None
        self.written += len(batch)

    def _add_points(self, batch: Tensor) -> None:
        if self._array is None:
            self.files[0].parent.mkdir(parents=True, exist_ok=True)
            self._array = np.lib.format.open_memmap(self.files[0], mode="w+", dtype=np.float32,
                                                    shape=(self.num, *self.info.shape))
        self._array[self.written : self.written + len(batch)] = batch.numpy()
        kept = sum(len(k) for k in self._kept)
        if kept < SCATTER_POINTS:
            self._kept.append(batch[: SCATTER_POINTS - kept].clone())

    def _add_files(self, batch: Tensor) -> None:
        encoded = []
        for image in batch:
            buffer = io.BytesIO()
            to_pil(image).save(buffer, format="png")
            encoded.append(buffer.getvalue())
        if self.written == 0:
            # The room all the files need, estimated from this batch as the disk stores it.
            block = _block_size(self.out)
            self.check_room(sum(-(-len(e) // block) * block for e in encoded) / len(encoded))
            self.out.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(encoded):
            self.file(self.written + i).write_bytes(data)

    def close(self) -> list[Path]:
        """Finish the files (the grid, the scatter plot); returns the fixed files written."""
        try:
            if not self.info.is_image:
                if self._array is not None:
                    self._array.flush()
                    self._array = None
                scatter(torch.cat(self._kept)).save(self.files[1])
            elif self.files:
                self.files[0].parent.mkdir(parents=True, exist_ok=True)
                grid(torch.cat(self._kept), nrow=self.columns).save(self.files[0])
        except OSError as e:
            raise CheckpointError(f"cannot write samples to {self.out} ({e.strerror or e})") from None
        return self.files


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _block_size(folder: Path) -> int:
    """The disk's allocation unit under `folder` (the least a small file takes)."""
    where = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        return max(1, os.statvfs(where).f_frsize)
    except OSError:
        return 4096


def _available_memory() -> int | None:
    """Memory available to a new allocation (Linux's MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
