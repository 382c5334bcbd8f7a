"""Generating from a checkpoint alone: no config file, no source tree, no training data."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.build import build_networks, resolve_device
from ganforge.checkpoint import INDEX_NAME, load_checkpoint
from ganforge.config import parse_config
from ganforge.data import DataInfo
from ganforge.errors import CheckpointError, ConfigError, GanforgeError
from ganforge.generation import (  # noqa: F401  (re-exported for users)
    GlobalRngStream,
    NoiseStream,
    check_truncation,
    class_labels,
    class_rows,
    generate,
    grid_columns,
    sample_noise,
    seed_latent,
    seeded_global_rng,
    truncation_for,
)
from ganforge.imaging import grid, scatter, to_pil, to_uint8
from ganforge.model_folder import CONFIG_FILE, MODEL_FILE, is_model_folder, read_model_folder
from ganforge.models import conditioning_classes
from ganforge.progress import Progress
from ganforge.run import find_checkpoint


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint (or an exported model folder), with what is needed
    to interpret its output."""

    G: nn.Module
    info: DataInfo
    step: int
    checkpoint: Path  # the checkpoint file, or the model folder's model.safetensors
    config: dict[str, Any]
    trained_with: dict[str, str] = field(default_factory=dict)  # ganforge's and torch's versions

    @property
    def num_classes(self) -> int:
        """Classes the generator is conditioned on (0: unconditional, whatever the data's labels)."""
        return conditioning_classes(self.G)

    @property
    def files(self) -> list[Path]:
        """The files it was read from: the checkpoint and its folder's index (the model folder's
        weights and config.json)."""
        if self.checkpoint.suffix == ".safetensors":
            return [self.checkpoint, self.checkpoint.parent / CONFIG_FILE]
        return [self.checkpoint, self.checkpoint.parent / INDEX_NAME]


def load_generator(path: str | Path, use_ema: bool = True, device: str = "auto") -> LoadedGenerator:
    """Rebuild the (EMA) generator from a checkpoint file, a run folder's latest checkpoint, or a
    model folder that `export --format safetensors` wrote (which holds one network: `use_ema`
    cannot choose)."""
    if is_model_folder(Path(path)):
        shared = read_model_folder(path, device=str(resolve_device(device)))
        if not use_ema and shared.meta.get("network") == "G_ema":
            raise GanforgeError(f"--no-ema: {path} holds G_ema only (exported without --no-ema)")
        return LoadedGenerator(shared.G, shared.info, shared.step, Path(path) / MODEL_FILE, shared.config,
                               dict(shared.meta.get("trained_with") or {}))
    file, sha = find_checkpoint(path)
    ckpt = load_checkpoint(file, sha)
    try:
        info = DataInfo.from_dict(ckpt.data_info)
        cfg = parse_config(ckpt.config, default_source=str(file))
        G, _, _ = build_networks(cfg, info)
        G.load_state_dict(ckpt.state["G_ema" if use_ema else "G"])
    except ConfigError as e:
        raise CheckpointError(f"{file}: its stored config is not valid for this ganforge ({e})") from None
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{file}: generator weights missing or of the wrong shape ({type(e).__name__})") from None
    G = G.to(resolve_device(device)).eval().requires_grad_(False)
    return LoadedGenerator(G, info, int(ckpt.step), file, ckpt.config,
                           {"ganforge": str(ckpt.ganforge_version), "torch": str(ckpt.torch_version)})


def sample_batches(loaded: LoadedGenerator, num: int, seed: int = 0, batch_size: int = 256,
                   class_index: int | None = None, truncation: float | None = None,
                   noise_mode: str | None = None) -> Iterator[Tensor]:
    """`sample`'s samples a batch at a time, on the CPU: memory for one batch whatever `num`,
    and the same samples as in one piece."""
    device = next(loaded.G.parameters()).device
    trunc = truncation_for(loaded.G, truncation)
    class_labels(0, loaded.num_classes, class_index, device)  # a wrong --class fails before the first draw
    noise = NoiseStream(num, loaded.G.latent_dim, seed, trunc.threshold)
    rng = GlobalRngStream(seed, device)
    for start in range(0, num, batch_size):
        stop = min(num, start + batch_size)
        labels = class_labels(num, loaded.num_classes, class_index, device, start, stop)
        with rng.block():
            batch = generate(loaded.G, noise.take(stop - start).to(device), labels, batch_size,
                             noise_mode=noise_mode, **trunc.g_kwargs)
        yield batch.cpu()


def seed_batches(loaded: LoadedGenerator, seeds: list[int], batch_size: int = 256, class_index: int | None = None,
                 truncation: float | None = None, noise_mode: str | None = "const") -> Iterator[Tensor]:
    """One sample per seed, in order, a batch at a time, on the CPU. Each seed's sample depends on
    that seed alone (not on the other seeds, nor on the batch): z is StyleGAN2-ADA generate.py's
    `np.random.RandomState(seed).randn(latent_dim)` (the truncated normal drawn on from the same
    state), and stylegan2's random per-pixel noise comes from torch seeded with the seed, one
    sample per forward pass. A conditional generator needs `class_index`, as in generate.py."""
    G = loaded.G
    device = next(G.parameters()).device
    trunc = truncation_for(G, truncation)
    if loaded.num_classes and class_index is None:
        raise GanforgeError(f"--seeds: this generator is conditional: name the class of the samples with --class "
                            f"(0 to {loaded.num_classes - 1})")
    class_labels(0, loaded.num_classes, class_index, device)  # a wrong --class fails before the first draw
    modes = getattr(G, "noise_modes", ())
    # Per-pixel noise drawn inside G from torch's global generator: a pass per seed, seeded by it.
    per_seed = bool(modes) and (noise_mode or "random") == "random"
    step = 1 if per_seed else batch_size
    for start in range(0, len(seeds), step):
        chunk = seeds[start : start + step]
        z = torch.stack([seed_latent(s, G.latent_dim, trunc.threshold) for s in chunk]).to(device)
        labels = class_labels(len(chunk), loaded.num_classes, class_index, device)
        with seeded_global_rng(chunk[0], device) if per_seed else contextlib.nullcontext():
            batch = generate(G, z, labels, batch_size, noise_mode=noise_mode, **trunc.g_kwargs)
        yield batch.cpu()


def sample(loaded: LoadedGenerator, num: int, seed: int = 0, batch_size: int = 256, class_index: int | None = None,
           truncation: float | None = None, progress: bool = False, noise_mode: str | None = None) -> torch.Tensor:
    """`num` samples on the CPU: images in [-1, 1] (N, C, H, W) or vectors (N, D). noise_mode
    (stylegan2): random (default, as StyleGAN2-ADA's metrics), const or none; the seed fixes
    the random noise as well as z."""
    parts = []
    with Progress(num, desc="generating", unit="images", enabled=progress, leave=False) as bar:
        for batch in sample_batches(loaded, num, seed, batch_size, class_index, truncation, noise_mode):
            parts.append(batch)
            bar.update(len(batch))
    return torch.cat(parts)


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
