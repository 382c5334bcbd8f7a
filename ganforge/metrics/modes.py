"""Mode-collapse figures for 2D Gaussian mixtures (the VEEGAN / PacGAN protocol).

Each sample is assigned to its nearest mode centre; it is high quality when it lies within
3 standard deviations of that centre. A mode is captured when at least `min_count` high-quality
samples land on it (PacGAN: 20 of 2,500, a fifth of the 100 expected per mode of the 25-grid).
Reverse KL is KL(generated mode histogram || uniform over the modes), from high-quality samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mode_coverage(samples: Tensor, centres: Tensor, std: float, min_count: int | None = None) -> dict[str, float]:
    """Modes captured, % high-quality samples and reverse KL of the mode histogram."""
    samples = samples.double()
    centres = centres.double()
    n, k = len(samples), len(centres)
    if min_count is None:
        min_count = max(1, round(0.2 * n / k))
    dist = torch.cdist(samples, centres)
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= 3 * std
    counts = torch.bincount(nearest[good], minlength=k).double()
    captured = int((counts >= min_count).sum())
    total_good = float(counts.sum())
    if total_good > 0:
        p = counts / total_good
        nz = p > 0
        reverse_kl = float((p[nz] * (p[nz] * k).log()).sum())
    else:
        reverse_kl = math.inf
    return {
        "modes": captured,
        "num_modes": k,
        "high_quality_pct": 100.0 * float(good.double().mean()),
        "reverse_kl": reverse_kl,
        "num_samples": n,
    }
