"""Differentiable augmentations of D's inputs (DiffAugment, ADA), in pure PyTorch.

Every operation takes a batch (N, C, H, W) in [-1, 1], a torch.Generator for its randomness
(the step's noise stream, so augmentations replay exactly on resume and split the same way over
ranks), and is differentiable with respect to the batch: gradients reach G through augmented
fakes. `strength` in [0, 1] scales each operation (ADA's probability p applies per sample).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _uniform(n: int, x: Tensor, gen: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> Tensor:
    return torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype, generator=gen) * (high - low) + low


def color(x: Tensor, gen: torch.Generator | None) -> Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5), per sample."""
    n = x.shape[0]
    x = x + (_uniform(n, x, gen) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(n, x, gen) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(n, x, gen) + 0.5) + mean


def translation(x: Tensor, gen: torch.Generator | None, ratio: float = 0.125) -> Tensor:
    """Shift each sample by up to `ratio` of its size in x and y (whole pixels), zeros shifted in."""
    n, _, h, w = x.shape
    shift_y = torch.randint(-int(h * ratio), int(h * ratio) + 1, (n,), device=x.device, generator=gen)
    shift_x = torch.randint(-int(w * ratio), int(w * ratio) + 1, (n,), device=x.device, generator=gen)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - shift_y.view(n, 1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w) - shift_x.view(n, 1, 1)
    inside = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)
    index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    moved = torch.gather(x.flatten(2), 2, index).view_as(x)
    return moved * inside


def cutout(x: Tensor, gen: torch.Generator | None, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` x the image size at a random place in each sample."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device, generator=gen)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device, generator=gen)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = cy - ch // 2, cx - cw // 2  # the hole may hang over the border, as in DiffAugment
    hole = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def xflip(x: Tensor, gen: torch.Generator | None) -> Tensor:
    """Mirror each sample left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=gen) < 0.5
    return torch.where(flip, x.flip(3), x)


OPERATIONS = {"color": color, "translation": translation, "cutout": cutout, "xflip": xflip}


def diff_augment(x: Tensor, policy: list[str], gen: torch.Generator | None) -> Tensor:
    """DiffAugment (Zhao et al. 2020): every operation of `policy` on every sample."""
    for name in policy:
        x = OPERATIONS[name](x, gen)
    return x


def adaptive_augment(x: Tensor, policy: list[str], p: float | Tensor, gen: torch.Generator | None) -> Tensor:
    """ADA-style: each operation applies to each sample with probability p (Karras et al. 2020)."""
    for name in policy:
        chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=gen) < p
        x = torch.where(chosen, OPERATIONS[name](x, gen), x)
    return x


def instance_noise(x: Tensor, std: float, gen: torch.Generator | None) -> Tensor:
    """Gaussian noise of the given std added to D's inputs (Sonderby et al. 2016)."""
    if std <= 0:
        return x
    return x + std * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=gen)
