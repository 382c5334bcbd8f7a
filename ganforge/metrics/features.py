"""Feature extraction: images (or 2D points) -> the features every metric compares.

Generated and real images take the same path: quantised to 8 bits (`to_uint8`, as if saved as
PNG, which is how published FIDs are computed), scaled to [0, 1], grey repeated to RGB, then the
feature extractor. Vector data are compared as raw values (no extractor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.errors import ConfigError, GanforgeError
from ganforge.metrics import scores
from ganforge.progress import Progress
from ganforge.registry import EXTRACTORS

# eval.resize: how images reach the Inception's 299x299 input (see resize.py).
RESIZE_MODES = ("legacy", "clean")

# --------------------------------------------------------------------------------------------
# Feature extractors
# --------------------------------------------------------------------------------------------


class FeatureExtractor(nn.Module):
    """uint8 images (N, C, H, W) -> (features (N, D), class logits (N, K) or None)."""

    name: str = "extractor"
    resize_modes: tuple[str, ...] = ()  # eval.resize modes it offers besides its own (legacy)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def with_resize(self, mode: str) -> FeatureExtractor:
        """This extractor bringing images to its input size as `mode` says (legacy: its own way)."""
        if mode == "legacy":
            return self
        raise ConfigError(f"eval.resize (--resize) {mode}: the {self.name} extractor does not resize images "
                          "(only the inception extractor has the clean mode); use --resize legacy")


class InceptionExtractor(FeatureExtractor):
    """The FID Inception on 8-bit images, resized as pytorch-fid (legacy), clean-fid (clean) or
    torch-fidelity does; the last two scale pixels as (x - 128) / 128, as their networks do."""

    resize_modes = ("legacy", "clean", "torch-fidelity")

    def __init__(self, state_dict: dict[str, Tensor] | None, source: str, resize: str = "legacy",
                 net: nn.Module | None = None) -> None:
        super().__init__()
        if resize not in self.resize_modes:
            raise ValueError(f"resize mode {resize!r}: use one of {', '.join(self.resize_modes)}")
        from ganforge.metrics.inception import FIDInception  # torchvision's models: imported when used

        # NHWC convolutions: the same network and weights, ~1.5x the images/s on this CPU
        # (scripts/bench_eval.py); features agree with the NCHW layout to float rounding.
        self.net = net if net is not None else FIDInception(state_dict).to(memory_format=torch.channels_last)
        self.source, self.resize = source, resize
        self.name = f"inception-v3-fid ({source}, resize {resize})"

    def with_resize(self, mode: str) -> InceptionExtractor:
        """The same network (shared, not copied) with another resize mode."""
        return self if mode == self.resize else InceptionExtractor(None, self.source, mode, net=self.net)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        from ganforge.metrics.resize import clean_resize, tf1_bilinear_resize

        if self.resize == "legacy":
            x = images.float() / 255.0
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            return self.net(x.contiguous(memory_format=torch.channels_last))
        if self.resize == "clean":
            x = clean_resize(images, 299).to(images.device)
        else:
            x = images.float()
            x = tf1_bilinear_resize(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x, 299)
        return self.net.trunk(((x - 128) / 128).contiguous(memory_format=torch.channels_last))


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
    """Features (and logits, class labels and data-set indices) of one set of samples; raw points
    for vector data."""

    values: Tensor
    logits: Tensor | None = None
    labels: Tensor | None = None
    indices: Tensor | None = None  # real samples: each row's index in the data set
    _stats: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self._stats is None:
            self._stats = scores.mean_cov(self.values)
        return self._stats


# (uint8 images or raw points, class labels, data-set indices): what feature extraction reads.
LabelledBatches = Iterator[tuple[Tensor, "Tensor | None"]] | Iterator[tuple[Tensor, "Tensor | None", Tensor]]
# Called with each batch's images and their features in every view (the kNN sheet keeps some).
BatchHook = Callable[[Tensor, dict[str, Tensor]], None]


def extract_features(extractors: Mapping[str, FeatureExtractor | None], batches: LabelledBatches, total: int,
                     what: str, device: torch.device, progress: bool = True, on_batch: BatchHook | None = None
                     ) -> dict[str, Features]:
    """Features of (images, labels[, indices]) batches in every view (name -> extractor); raw
    float values for a view without an extractor (vector data). Each batch goes through every
    extractor once, so generated images are never held all at once."""
    values: dict[str, list[Tensor]] = {name: [] for name in extractors}
    logits: dict[str, list[Tensor]] = {name: [] for name in extractors}
    labels, indices = [], []
    batches_seen = 0
    bar = Progress(total, desc=f"features ({what})", enabled=progress, unit="img")
    try:
        for batch in batches:
            images, batch_labels = batch[0], batch[1]
            batches_seen += 1
            features = {}
            for name, extractor in extractors.items():
                if extractor is None:
                    features[name] = images.float().cpu()
                    continue
                with torch.inference_mode():
                    feats, logit = extractor(images.to(device))
                features[name] = feats.float().cpu()
                if logit is not None:
                    logits[name].append(logit.float().cpu())
            for name, feats in features.items():
                values[name].append(feats)
            if batch_labels is not None:
                labels.append(batch_labels.long().cpu())
            if len(batch) > 2:
                indices.append(batch[2].long().cpu())  # type: ignore[misc]
            if on_batch is not None:
                on_batch(images, features)
            bar.update(len(images))
    finally:
        bar.close()
    if not batches_seen:
        raise GanforgeError(f"no {what} could be read to evaluate")
    return {name: Features(torch.cat(values[name]), torch.cat(logits[name]) if logits[name] else None,
                           torch.cat(labels) if len(labels) == batches_seen else None,
                           torch.cat(indices) if len(indices) == batches_seen else None)
            for name in extractors}
def to_uint8(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> uint8, rounded as when saved to PNG."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
