"""Drawing from a trained generator, rebuilt from a checkpoint alone (or an exported model
folder): no config file, no source tree, no training data."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.build import rebuild_networks, resolve_device
from ganforge.checkpoint import INDEX_NAME, load_checkpoint
from ganforge.data import DataInfo
from ganforge.errors import GanforgeError
from ganforge.generation import (
    GlobalRngStream,
    NoiseStream,
    class_labels,
    generate,
    seed_latent,
    seeded_global_rng,
    truncation_for,
)
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
    nets = rebuild_networks(ckpt, file, ("G_ema" if use_ema else "G",), device)
    G = nets.G_ema if use_ema else nets.G
    return LoadedGenerator(G, nets.info, int(ckpt.step), file, ckpt.config,
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


def draw(loaded: LoadedGenerator, num: int, seed: int = 0, batch_size: int = 256, class_index: int | None = None,
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
