"""Turning generator output into pictures: image grids and 2D scatter plots (PIL only)."""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw
from torch import Tensor


def to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1] -> uint8 [0, 255] (N, C, H, W), on the CPU."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_pil(x: Tensor) -> Image.Image:
    """One image (C, H, W) in [-1, 1] -> PIL image (L or RGB)."""
    arr = to_uint8(x.unsqueeze(0))[0].permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def grid(x: Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """A batch of images (N, C, H, W) in [-1, 1] (or as uint8 pixels) laid out in a grid (nrow images per row)."""
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.zeros(c, rows * (h + padding) + padding, nrow * (w + padding) + padding, dtype=torch.uint8)
    pixels = x if x.dtype == torch.uint8 else to_uint8(x)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        canvas[:, top : top + h, left : left + w] = pixels[i]
    arr = canvas.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if c == 1 else arr)


def scatter(fake: Tensor, real: Tensor | None = None, size: int = 512) -> Image.Image:
    """A scatter plot of 2D samples (blue) over real data (grey), framed on the real data."""
    fake = fake.detach().float().cpu()
    frame = real.detach().float().cpu() if real is not None and len(real) else fake
    lo, hi = frame.min(0).values, frame.max(0).values
    span = float((hi - lo).max().clamp_min(1e-6))
    centre = (lo + hi) / 2
    half = span * 0.6  # 10% margin on each side

    def pixels(points: Tensor) -> list[tuple[float, float]]:
        u = (points - centre + half) / (2 * half) * (size - 1)
        keep = ((u >= 0) & (u <= size - 1)).all(1)
        u = u[keep]
        return [(float(a), float(size - 1 - b)) for a, b in u.tolist()]

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    if real is not None:
        for x, y in pixels(real.detach().float().cpu()):
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(190, 190, 190))
    for x, y in pixels(fake):
        draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(31, 90, 200))
    return img


def enlarge(image: Image.Image, min_cell: int, cell: int) -> Image.Image:
    """Scale a grid of `cell`-pixel images up by a whole factor (nearest neighbour) so that each
    shows at least `min_cell` pixels: small samples stay visible in GIFs and strips."""
    factor = max(1, min_cell // max(1, cell))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
