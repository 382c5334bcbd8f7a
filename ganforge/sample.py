"""Generating from a checkpoint alone: no config file, no source tree, no training data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganforge.build import build_generator, resolve_device
from ganforge.checkpoint import find_checkpoint, load_checkpoint
from ganforge.config import parse_config
from ganforge.data import DataInfo
from ganforge.errors import CheckpointError, ConfigError
from ganforge.imaging import grid, scatter, to_pil
from ganforge.train import generate


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint, with what is needed to interpret its output."""

    G: nn.Module
    info: DataInfo
    step: int
    checkpoint: Path
    config: dict[str, Any]


def load_generator(path: str | Path, use_ema: bool = True, device: str = "auto") -> LoadedGenerator:
    """Rebuild the (EMA) generator from a checkpoint file or a run folder's latest checkpoint."""
    file, sha = find_checkpoint(path)
    payload = load_checkpoint(file, sha)
    try:
        info = DataInfo.from_dict(payload["data_info"])
        cfg = parse_config(payload["config"], default_source=str(file))
        G = build_generator(cfg.generator, info)
        G.load_state_dict(payload["state"]["G_ema" if use_ema else "G"])
    except ConfigError as e:
        raise CheckpointError(f"{file}: its stored config is not valid for this ganforge ({e})") from None
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{file}: generator weights missing or of the wrong shape ({type(e).__name__})") from None
    G = G.to(resolve_device(device)).eval().requires_grad_(False)
    return LoadedGenerator(G, info, int(payload["step"]), file, payload["config"])


def sample_noise(num: int, latent_dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """Gaussian noise drawn on the CPU from `seed`, so the same seed gives the same samples anywhere."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num, latent_dim, generator=g).to(device)


def sample(loaded: LoadedGenerator, num: int, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """`num` samples on the CPU: images in [-1, 1] (N, C, H, W) or vectors (N, D)."""
    device = next(loaded.G.parameters()).device
    z = sample_noise(num, loaded.G.latent_dim, seed, device)
    labels = (torch.arange(num, device=device) % loaded.info.num_classes) if loaded.info.num_classes else None
    return generate(loaded.G, z, labels, batch_size).cpu()


def write_samples(loaded: LoadedGenerator, samples: torch.Tensor, out: Path, as_grid: bool) -> list[Path]:
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
            grid(samples).save(png)
            return [png]
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(samples):
            path = out / f"{i:06d}.png"
            to_pil(image).save(path)
            written.append(path)
    except OSError as e:
        raise CheckpointError(f"cannot write samples to {out} ({e.strerror or e})") from None
    return written
