"""Feature extraction: images (or 2D points) -> the features every metric compares.

Generated and real images take the same path: quantised to 8 bits (`to_uint8`, as if saved as
PNG, which is how published FIDs are computed), scaled to [0, 1], grey repeated to RGB, then the
feature extractor. Vector data are compared as raw values (no extractor).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ganforge.errors import GanforgeError
from ganforge.metrics import scores
from ganforge.registry import EXTRACTORS

# --------------------------------------------------------------------------------------------
# Feature extractors
# --------------------------------------------------------------------------------------------


class FeatureExtractor(nn.Module):
    """uint8 images (N, C, H, W) -> (features (N, D), class logits (N, K) or None)."""

    name: str = "extractor"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError


class InceptionExtractor(FeatureExtractor):
    def __init__(self, state_dict: dict[str, Tensor], source: str) -> None:
        super().__init__()
        from ganforge.metrics.inception import FIDInception  # torchvision's models: imported when used

        # NHWC convolutions: the same network and weights, ~1.5x the images/s on this CPU
        # (scripts/bench_eval.py); features agree with the NCHW layout to float rounding.
        self.net = FIDInception(state_dict).to(memory_format=torch.channels_last)
        self.name = f"inception-v3-fid ({source})"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        x = images.float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x.contiguous(memory_format=torch.channels_last))


@EXTRACTORS.register("inception")
def inception(weights: str | None = None, download: bool = True) -> InceptionExtractor:
    """FID Inception v3 (TF 2015-12-05 weights, pytorch-fid port): pool3 2048-d and 1008 logits."""
    from ganforge.metrics.inception import WEIGHTS_FILE, load_fid_weights

    state = load_fid_weights(weights, download)
    return InceptionExtractor(state, weights or WEIGHTS_FILE)


# --------------------------------------------------------------------------------------------
# Features of a set of samples
# --------------------------------------------------------------------------------------------


@dataclass
class Features:
    """Features (and logits and class labels) of one set of samples; raw points for vector data."""

    values: Tensor
    logits: Tensor | None = None
    labels: Tensor | None = None
    _stats: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self._stats is None:
            self._stats = scores.mean_cov(self.values)
        return self._stats


LabelledBatches = Iterator[tuple[Tensor, "Tensor | None"]]


def extract_features(extractor: FeatureExtractor | None, batches: LabelledBatches, total: int, what: str,
                     device: torch.device, progress: bool = True) -> Features:
    """Features (and logits, and labels where the batches have them) of (images, labels) batches;
    raw float values when there is no extractor (vector data)."""
    values, logits, labels = [], [], []
    with tqdm(total=total, desc=f"features ({what})", unit="img", disable=not progress, leave=False) as bar:
        for images, batch_labels in batches:
            if extractor is None:
                values.append(images.float().cpu())
            else:
                with torch.inference_mode():
                    feats, logit = extractor(images.to(device))
                values.append(feats.float().cpu())
                if logit is not None:
                    logits.append(logit.float().cpu())
            if batch_labels is not None:
                labels.append(batch_labels.long().cpu())
            bar.update(len(images))
    if not values:
        raise GanforgeError(f"no {what} images to evaluate")
    return Features(torch.cat(values), torch.cat(logits) if logits else None,
                    torch.cat(labels) if len(labels) == len(values) else None)


def to_uint8(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> uint8, rounded as when saved to PNG."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
