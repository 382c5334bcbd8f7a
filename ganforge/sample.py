"""Generating from a checkpoint alone: no config file, no source tree, no training data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganforge.build import build_networks, resolve_device
from ganforge.checkpoint import load_checkpoint
from ganforge.config import parse_config
from ganforge.data import DataInfo
from ganforge.errors import CheckpointError, ConfigError
from ganforge.generation import (  # noqa: F401  (re-exported for users)
    check_truncation,
    class_labels,
    class_rows,
    generate,
    grid_columns,
    sample_noise,
    seeded_global_rng,
)
from ganforge.imaging import grid, scatter, to_pil
from ganforge.models import conditioning_classes
from ganforge.run import find_checkpoint


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint, with what is needed to interpret its output."""

    G: nn.Module
    info: DataInfo
    step: int
    checkpoint: Path
    config: dict[str, Any]

    @property
    def num_classes(self) -> int:
        """Classes the generator is conditioned on (0: unconditional, whatever the data's labels)."""
        return conditioning_classes(self.G)


def load_generator(path: str | Path, use_ema: bool = True, device: str = "auto") -> LoadedGenerator:
    """Rebuild the (EMA) generator from a checkpoint file or a run folder's latest checkpoint."""
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
    return LoadedGenerator(G, info, int(ckpt.step), file, ckpt.config)


def sample(loaded: LoadedGenerator, num: int, seed: int = 0, batch_size: int = 256, class_index: int | None = None,
           truncation: float | None = None, progress: bool = False, noise_mode: str | None = None) -> torch.Tensor:
    """`num` samples on the CPU: images in [-1, 1] (N, C, H, W) or vectors (N, D). noise_mode
    (stylegan2): random (default, as StyleGAN2-ADA's metrics), const or none; the seed fixes
    the random noise as well as z."""
    device = next(loaded.G.parameters()).device
    extra = check_truncation(loaded.G, truncation)
    labels = class_labels(num, loaded.num_classes, class_index, device)
    z = sample_noise(num, loaded.G.latent_dim, seed, device)
    with seeded_global_rng(seed, device):
        return generate(loaded.G, z, labels, batch_size, progress=progress, noise_mode=noise_mode, **extra).cpu()


def write_samples(loaded: LoadedGenerator, samples: torch.Tensor, out: Path, as_grid: bool,
                  class_grid: bool = False) -> list[Path]:
    """Write samples as image files in a folder, one grid PNG, or (2D data) .npy plus a scatter plot."""
    written: list[Path] = []
    try:
        if not loaded.info.is_image:
            npy = out if out.suffix == ".npy" else out / "samples.npy"
            npy.parent.mkdir(parents=True, exist_ok=True)
            np.save(npy, samples.numpy())
            png = npy.with_suffix(".png")
            scatter(samples).save(png)
            return [npy, png]
        if as_grid:
            png = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
            png.parent.mkdir(parents=True, exist_ok=True)
            grid(samples, nrow=grid_columns(len(samples), loaded.num_classes) if class_grid else None).save(png)
            return [png]
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(samples):
            path = out / f"{i:06d}.png"
            to_pil(image).save(path)
            written.append(path)
    except OSError as e:
        raise CheckpointError(f"cannot write samples to {out} ({e.strerror or e})") from None
    return written
