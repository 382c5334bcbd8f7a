"""Memorisation check: how close generated samples come to the real training images, in the
Inception's pool3 space (as PyTorch-StudioGAN's k-NN analysis, with a threshold from real data).

The cached real features are split in a fixed way: the last tenth (at least HOLDOUT_MIN rows)
is held out. The distance from each held-out image to its nearest neighbour among the other real
images is what a new image from the data distribution typically gets; its 5th percentile is the
threshold. A generated sample nearer than that to some real image (held-out ones included) counts
as memorised: `knn_memorised_pct` is their share. The search is chunked: distances are computed for
a block of queries against a block of real features at a time, never as an all-pairs matrix.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

K = 5  # neighbours shown on the sheet
HOLDOUT_FRACTION, HOLDOUT_MIN = 0.1, 20
THRESHOLD_PERCENTILE = 5.0
SHEET_ROWS = 16
MIN_REAL = HOLDOUT_MIN + K  # the held-out images and at least K others to search
QUERY_CHUNK, BASE_CHUNK = 1024, 8192  # a 1024 x 8192 float32 block of distances: 32 MB


def nearest(queries: Tensor, base: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
    """Euclidean distances (n, k) and indices (n, k) of each query's k nearest rows of `base`,
    nearest first. Blocks are ranked by |q|^2 - 2 q.b + |b|^2 in float32; the winners' distances
    are then recomputed exactly in float64, so that copies come out at 0."""
    base32 = base.float()
    base_sq = (base32 * base32).sum(1)
    k = min(k, len(base))
    out_d, out_i = [], []
    for q in queries.float().split(QUERY_CHUNK):
        best_d = torch.full((len(q), 0), float("inf"))
        best_i = torch.zeros((len(q), 0), dtype=torch.long)
        q_sq = (q * q).sum(1, keepdim=True)
        for start in range(0, len(base32), BASE_CHUNK):
            block = base32[start : start + BASE_CHUNK]
            # |b|^2 - 2 q.b in one product (no temporaries the size of the block), then + |q|^2.
            d2 = torch.addmm(base_sq[None, start : start + len(block)], q, block.T, alpha=-2).add_(q_sq)
            top_d, top_i = d2.topk(min(k, len(block)), dim=1, largest=False)
            best_d, order = torch.cat([best_d, top_d], 1).topk(k, dim=1, largest=False)
            best_i = torch.cat([best_i, top_i + start], 1).gather(1, order)
        exact = (q.double()[:, None, :] - base[best_i].double()).norm(dim=2)
        exact, order = exact.sort(dim=1)
        out_d.append(exact)
        out_i.append(best_i.gather(1, order))
    return torch.cat(out_d), torch.cat(out_i)


def holdout_size(num_real: int) -> int:
    """How many of the real features are held out to set the threshold."""
    return max(HOLDOUT_MIN, int(num_real * HOLDOUT_FRACTION))


def knn_figures(fake: Tensor, real: Tensor) -> dict[str, float]:
    """knn_min_dist (the smallest sample-to-real distance), knn_memorised_pct (% of samples nearer
    to a real image than the 5th percentile of held-out real images' nearest distances) and that
    threshold (knn_threshold)."""
    held = holdout_size(len(real))
    if len(real) - held < K:
        raise ValueError(f"knn needs at least {MIN_REAL} real images, got {len(real)}")
    held_dist, _ = nearest(real[-held:], real[:-held])
    threshold = float(np.percentile(held_dist[:, 0].numpy(), THRESHOLD_PERCENTILE))
    fake_dist, _ = nearest(fake, real)
    nearest_dist = fake_dist[:, 0]
    return {"knn_min_dist": float(nearest_dist.min()),
            "knn_memorised_pct": 100.0 * float((nearest_dist < threshold).double().mean()),
            "knn_threshold": threshold}


class ClosestSamples:
    """Keeps, while generated batches stream by, the SHEET_ROWS samples nearest to a real image,
    with their K nearest real neighbours (rows of `real`)."""

    def __init__(self, real: Tensor, view: str = "main", rows: int = SHEET_ROWS) -> None:
        self.real, self.view, self.rows = real, view, rows
        self.images: Tensor | None = None
        self.dist = torch.zeros(0, min(K, len(real)), dtype=torch.float64)
        self.index = torch.zeros(0, min(K, len(real)), dtype=torch.long)

    def __call__(self, images: Tensor, features: dict[str, Tensor]) -> None:
        dist, index = nearest(features[self.view], self.real, K)
        images = images.cpu()
        pool = images if self.images is None else torch.cat([self.images, images])
        dist, index = torch.cat([self.dist, dist]), torch.cat([self.index, index])
        keep = dist[:, 0].argsort()[: self.rows]
        self.images, self.dist, self.index = pool[keep], dist[keep], index[keep]


def sheet(samples: Tensor, neighbours: Tensor, padding: int = 2, gap: int = 8, min_cell: int = 64) -> Image.Image:
    """One row per sample: the sample, a gap, then its neighbours (uint8 (n, C, H, W) and
    (n, k, C, H, W)), on white; small images are scaled up by a whole factor to `min_cell` px."""
    n, k = neighbours.shape[:2]
    c, h, w = samples.shape[1:]
    width = padding + (w + padding) * (k + 1) + gap
    canvas = torch.full((c, padding + n * (h + padding), width), 255, dtype=torch.uint8)
    for r in range(n):
        top = padding + r * (h + padding)
        canvas[:, top : top + h, padding : padding + w] = samples[r]
        for j in range(k):
            left = padding + (w + padding) * (j + 1) + gap
            canvas[:, top : top + h, left : left + w] = neighbours[r, j]
    arr = canvas.permute(1, 2, 0).numpy()
    image = Image.fromarray(arr[:, :, 0] if c == 1 else arr)
    factor = max(1, min_cell // max(1, h))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
