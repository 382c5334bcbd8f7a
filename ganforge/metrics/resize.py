"""How each evaluation tool brings an image to its network's input size, on uint8 images (N, C, H, W).

- `legacy` (pytorch-fid): bilinear, no antialiasing, done inside the FID Inception (inception.py).
- `clean` (clean-fid, Parmar et al. 2022): PIL's bicubic filter, which antialiases when it
  shrinks, on each channel as a float32 image, clipped to [0, 255]; no rounding to 8 bits.
- `torch-fidelity`: TensorFlow 1.x's bilinear resize (no half-pixel centres, no antialiasing).
- `pil-bicubic-uint8` (DINOv2 in dgm-eval): torchvision's Resize on the PIL image, that is PIL's
  bicubic filter on the 8-bit image, whose output is 8-bit again.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def _rgb(images: Tensor) -> Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def clean_resize(images: Tensor, size: int) -> Tensor:
    """clean-fid's resizer: float32 (N, 3, size, size) in [0, 255]."""
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, image in enumerate(_rgb(images).cpu().numpy()):
        for c in range(3):
            channel = Image.fromarray(image[c].astype(np.float32), mode="F")
            out[i, c] = np.asarray(channel.resize((size, size), resample=Image.Resampling.BICUBIC)).clip(0, 255)
    return torch.from_numpy(out)


def pil_bicubic_uint8(images: Tensor, size: int) -> Tensor:
    """PIL's bicubic resize of each 8-bit RGB image: uint8 (N, 3, size, size)."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(_rgb(images).permute(0, 2, 3, 1).cpu().numpy()):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
            (size, size), resample=Image.Resampling.BICUBIC))
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def tf1_bilinear_resize(x: Tensor, size: int) -> Tensor:
    """TensorFlow 1.x `resize_bilinear` (align_corners=False): source coordinate = target x
    (input size / output size), neighbours clamped at the far edge."""
    def axis(n_in: int) -> tuple[Tensor, Tensor, Tensor]:
        pos = torch.arange(size, dtype=torch.float32, device=x.device) * (n_in / size)
        lo = pos.long()
        return lo, (lo + 1).clamp_max(n_in - 1), (pos - lo.float()).to(x.dtype)

    y_lo, y_hi, dy = axis(x.shape[2])
    x_lo, x_hi, dx = axis(x.shape[3])
    top = x[:, :, y_lo][..., x_lo] + (x[:, :, y_lo][..., x_hi] - x[:, :, y_lo][..., x_lo]) * dx
    bottom = x[:, :, y_hi][..., x_lo] + (x[:, :, y_hi][..., x_hi] - x[:, :, y_hi][..., x_lo]) * dx
    return top + (bottom - top) * dy[:, None]
