"""The Python API: `ganforge.load(path)` -> the networks of a run, a checkpoint or an importable
file, ready to generate from and to score images with."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.build import rebuild_networks, resolve_device
from ganforge.checkpoint import FORMAT, Checkpoint, load_checkpoint
from ganforge.data import DataInfo
from ganforge.errors import CheckpointError, GanforgeError
from ganforge.generation import seed_latent, truncation_for
from ganforge.models import conditioning_classes
from ganforge.run import find_checkpoint


@dataclass
class Networks:
    """G, D and G_ema of a run (torch modules in eval mode, gradients off), its resolved config
    and the shape of its samples."""

    G: nn.Module | None  # None for an exported model folder (it holds one generator, G_ema)
    D: nn.Module | None  # None where an imported file or an exported folder had no discriminator
    G_ema: nn.Module
    config: dict[str, Any]
    info: DataInfo
    source: Path
    step: int

    @property
    def num_classes(self) -> int:
        """Classes the generator is conditioned on (0: unconditional)."""
        return conditioning_classes(self.G_ema)

    @property
    def latent_dim(self) -> int:
        return int(self.G_ema.latent_dim)

    @torch.no_grad()
    def generate(self, z: Tensor | None = None, seeds: Sequence[int] | None = None,
                 labels: Tensor | Sequence[int] | int | None = None, truncation: float = 1.0,
                 noise_mode: str = "const", ema: bool = True) -> Tensor:
        """Images (N, C, H, W) in [-1, 1] on the networks' device, from latents `z` (N, latent_dim)
        or from `seeds` (one image each, z drawn as StyleGAN2-ADA's generate.py draws it:
        numpy RandomState(seed).randn(latent_dim)). `labels`: class indices (one, or N) for a
        conditional generator. `truncation`: in w for stylegan2, else z from the truncated normal
        (seeds only); `noise_mode` (const, random, none) where the generator has it (stylegan2);
        `ema=False` uses raw G."""
        G = self.G_ema if ema else self.G
        if G is None:
            raise GanforgeError("generate: this model holds G_ema only (an exported folder): leave ema=True")
        device = next(G.parameters()).device
        if (z is None) == (seeds is None):
            raise GanforgeError("generate: give z (N x latent_dim) or seeds, one of them")
        trunc = truncation_for(G, truncation if truncation != 1.0 else None)
        if z is None:
            z = torch.stack([seed_latent(int(s), self.latent_dim, trunc.threshold) for s in seeds])
        elif trunc.threshold is not None:
            raise GanforgeError(f"generate: {type(G).__name__} is truncated in z: give seeds (z is then drawn from "
                                "the truncated normal), or draw z truncated yourself and leave truncation at 1")
        z = torch.as_tensor(z, dtype=torch.float32).to(device)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise GanforgeError(f"generate: z must be N x {self.latent_dim}, got {tuple(z.shape)}")
        classes = self.num_classes
        if classes and labels is None:
            raise GanforgeError(f"generate: this generator is conditional: give labels (class indices 0 to "
                                f"{classes - 1})")
        if labels is not None:
            if not classes:
                raise GanforgeError("generate: this generator is unconditional; it takes no labels")
            labels = torch.as_tensor(labels, dtype=torch.long)
            labels = (labels.expand(len(z)) if labels.dim() == 0 else labels).to(device)
            if len(labels) != len(z) or int(labels.min()) < 0 or int(labels.max()) >= classes:
                raise GanforgeError(f"generate: labels must be {len(z)} class indices from 0 to {classes - 1}")
        kwargs: dict[str, Any] = dict(trunc.g_kwargs)
        if "const" in getattr(G, "noise_modes", ()):
            kwargs["noise_mode"] = noise_mode
        return G(z, labels, **kwargs).float().clamp(-1, 1)


def is_ganforge_checkpoint(path: Path) -> bool:
    """A run folder, or a file torch.save wrote with ganforge's checkpoint header."""
    if path.is_dir():
        return (path / "checkpoints").is_dir() or (path / "config.yaml").is_file()
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
        return name is not None and FORMAT.encode() in archive.read(name)[:4096]


def networks_from_checkpoint(ckpt: Checkpoint, source: Path, device: str = "auto") -> Networks:
    """G, D and G_ema rebuilt from a checkpoint's config and loaded with its weights."""
    nets = rebuild_networks(ckpt, source, ("G", "G_ema", "D"), device)
    return Networks(nets.G, nets.D, nets.G_ema, ckpt.config, nets.info, source, int(ckpt.step))


def load(path: str | Path, device: str = "auto") -> Networks:
    """The networks of a run folder, a checkpoint, a model folder `ganforge export --format
    safetensors` wrote (its generator as G_ema; no G, no D), or a file `ganforge import` reads
    (imported in memory; nothing is written)."""
    from ganforge import interop
    from ganforge.model_folder import is_model_folder, read_model_folder

    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"no such file or folder: {path}")
    if is_model_folder(path):  # `ganforge export --format safetensors`: the generator alone
        shared = read_model_folder(path, device=str(resolve_device(device)))
        return Networks(None, None, shared.G, shared.config, shared.info, path, shared.step)
    if is_ganforge_checkpoint(path):
        file, sha = find_checkpoint(path)
        return networks_from_checkpoint(load_checkpoint(file, sha), file, device)
    return networks_from_checkpoint(interop.to_checkpoint(interop.read(path), str(path)), path, device)
