"""Perceptual path length (Karras et al. 2019), as StyleGAN2-ADA's
`metrics/perceptual_path_length.py` computes it.

For each pair of latents, the LPIPS-VGG distance between the images at t and t + eps along the
path between them, divided by eps^2 (eps = 1e-4); the figure is the mean after dropping the
values below the 1st and above the 99th percentile. Variants as the reference's metric names:
- `ppl_wend`: lerp between two mapped w, t = 0 (the path's end);
- `ppl_zfull`: slerp between two z on the unit sphere, t ~ U(0, 1).
Both centre-crop as the reference does for them (rows 3/8-7/8, columns 2/8-6/8: its FFHQ face
crop), images above 256 px are box-downsampled to 256, LPIPS runs on the images unresized.
StyleGAN2's per-layer noise is the same for both images of a pair and redrawn for every batch
(the reference fills its `noise_const` buffers and uses noise_mode const; they are restored after).

Generators without a mapping network are measured in z only: the slerp's point on the unit sphere
is scaled to radius sqrt(latent_dim), where N(0, I) latents lie (a StyleGAN mapping network
normalises z to that radius itself).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.models import conditioning_classes

EPSILON = 1e-4
# name -> (space, sampling, crop), as the reference's metric registry defines them
VARIANTS = {"ppl_wend": ("w", "end", True), "ppl_zfull": ("z", "full", True)}


def has_w_space(G: nn.Module) -> bool:
    """A generator with a mapping network to per-layer styles and a synthesis network (stylegan2)."""
    return callable(getattr(G, "mapping_ws", None)) and callable(getattr(G, "synthesis", None))


def variants_for(G: nn.Module) -> list[str]:
    """The PPL figures this generator has: both with a w space, ppl_zfull otherwise."""
    return list(VARIANTS) if has_w_space(G) else ["ppl_zfull"]


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between the directions of a and b, on the unit sphere."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def face_crop(images: Tensor) -> Tensor:
    """The reference's crop: rows 3c..7c, columns 2c..6c with c = side // 8."""
    c = images.shape[2] // 8
    return images[:, :, c * 3 : c * 7, c * 2 : c * 6]


def filtered_mean(distances: np.ndarray) -> float:
    """The mean of the values between the 1st (rounded down) and the 99th (rounded up) percentiles."""
    lo = np.percentile(distances, 1, method="lower")
    hi = np.percentile(distances, 99, method="higher")
    return float(distances[(distances >= lo) & (distances <= hi)].mean())


@contextmanager
def _random_const_noise(G: nn.Module, generator: torch.Generator) -> Iterator[None]:
    """Fill G's `noise_const` buffers with fresh noise (restored on exit)."""
    buffers = [b for name, b in G.named_buffers() if name.endswith("noise_const")]
    saved = [b.clone() for b in buffers]
    try:
        for b in buffers:
            b.copy_(torch.randn(b.shape, generator=generator).to(b.device, b.dtype))
        yield
    finally:
        for b, s in zip(buffers, saved):
            b.copy_(s)


def path_distances(G: nn.Module, lpips: nn.Module, z0: Tensor, z1: Tensor, t: Tensor, labels: Tensor | None,
                   space: str, crop: bool, epsilon: float = EPSILON) -> Tensor:
    """LPIPS(image(t), image(t + eps)) / eps^2 for each pair of latents (n,)."""
    both = torch.cat([labels, labels]) if labels is not None else None
    if space == "w":
        w0, w1 = G.mapping_ws(torch.cat([z0, z1]), both).chunk(2)
        tt = t[:, None, None]
        images = G.synthesis(torch.cat([w0.lerp(w1, tt), w0.lerp(w1, tt + epsilon)]), noise_mode="const")
    else:
        tt = t[:, None]
        z = torch.cat([slerp(z0, z1, tt), slerp(z0, z1, tt + epsilon)])
        if has_w_space(G):
            images = G.synthesis(G.mapping_ws(z, both), noise_mode="const")
        else:
            images = G(z * math.sqrt(z.shape[1]), both)
    images = images.float()
    if crop:
        images = face_crop(images)
    factor = images.shape[2] // 256 if images.shape[2] == images.shape[3] else 1
    if factor > 1:
        images = F.avg_pool2d(images, factor)
    a, b = images.chunk(2)
    return lpips.distance(lpips.layer_features(a, resize=False), lpips.layer_features(b, resize=False)) / epsilon**2


@torch.no_grad()
def perceptual_path_length(G: nn.Module, lpips: nn.Module, num_samples: int, seed: int = 0, batch_size: int = 64,
                           variants: list[str] | None = None) -> dict[str, float]:
    """The PPL figures of G over `num_samples` pairs each (latents, t, labels and noise from `seed`)."""
    device = next(G.parameters()).device
    lpips = lpips.to(device)
    num_classes = conditioning_classes(G)
    pairs = max(1, batch_size // 2)
    out = {}
    was_training = G.training
    G.eval()
    try:
        for name in variants or variants_for(G):
            space, sampling, crop = VARIANTS[name]
            g = torch.Generator().manual_seed(seed)
            dist = []
            for start in range(0, num_samples, pairs):
                n = min(pairs, num_samples - start)
                t = torch.rand(n, generator=g) * (1.0 if sampling == "full" else 0.0)
                z0, z1 = torch.randn(2 * n, G.latent_dim, generator=g).chunk(2)
                labels = torch.randint(num_classes, (n,), generator=g).to(device) if num_classes else None
                with _random_const_noise(G, g):
                    dist.append(path_distances(G, lpips, z0.to(device), z1.to(device), t.to(device), labels,
                                               space, crop).double().cpu())
            out[name] = filtered_mean(torch.cat(dist).numpy())
    finally:
        G.train(was_training)
    return out


def load_metric_lpips(path: str | None = None) -> nn.Module:
    """LPIPS-VGG for ppl, read as `ganforge project --lpips` reads it: the linear heads `vgg.pth` at
    `path` (eval.lpips, --lpips) or in the torch hub cache, VGG-16 beside it or in that cache. A
    missing file is one line naming the metric and the files to put where."""
    from ganforge.metrics.lpips import LPIPS_FILE, VGG_FILE, VGG_URL, load_lpips

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    target = Path(path).expanduser() if path else hub / LPIPS_FILE
    try:
        return load_lpips(target)
    except ConfigError as e:
        if path is None and not target.is_file():
            raise ConfigError(f"ppl: the LPIPS-VGG weights are missing: put {LPIPS_FILE} (LPIPS v0.1's linear heads, "
                              f"lpips/weights/v0.1/{LPIPS_FILE} of the `lpips` package) and {VGG_FILE} ({VGG_URL}) "
                              f"in {hub}, or give the heads' path as eval.lpips (ganforge eval --lpips)") from None
        raise ConfigError(f"ppl: {str(e).removeprefix('--lpips: ')}") from None
