"""Feature views: the extractor behind each kind of feature the metrics compare (see
`catalog.feature_view`): eval.extractor resized per eval.resize, the same Inception resized as
torch-fidelity does, and DINOv2."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ganforge.errors import ConfigError
from ganforge.metrics.dinov2 import load_dinov2
from ganforge.metrics.features import FeatureExtractor


def build_views(views: Mapping[str, str], main: FeatureExtractor | None, resize: str,
                dinov2_weights: str | None = None, device: torch.device | None = None
                ) -> dict[str, FeatureExtractor | None]:
    """The extractor of each feature view the metrics need (view -> metric that needs it):
    `main` (eval.extractor, resized as `resize`), `torch-fidelity` (the same Inception, resized
    as torch-fidelity does) and `dinov2`. Problems are one line naming the metric."""
    out: dict[str, FeatureExtractor | None] = {}
    for view, metric in views.items():
        if view == "main":
            if main is None:
                if resize != "legacy":
                    raise ConfigError(f"{metric}: eval.resize (--resize) {resize} resizes images, and these data "
                                      "are 2D points with no feature extractor; use --resize legacy")
                out[view] = None
            else:
                try:
                    out[view] = main.with_resize(resize)
                except ConfigError as e:
                    raise ConfigError(f"{metric}: {e}") from None
        elif view == "torch-fidelity":
            if "torch-fidelity" not in getattr(main, "resize_modes", ()):
                raise ConfigError(f"{metric}: eval.protocol torch-fidelity resizes images for the FID Inception; "
                                  f"the extractor {getattr(main, 'name', 'none')} has no such mode; use the "
                                  "inception extractor or eval.protocol pytorch-fid")
            out[view] = main.with_resize("torch-fidelity")  # type: ignore[union-attr]
        elif view == "dinov2":
            out[view] = load_dinov2(dinov2_weights, metric).to(device or torch.device("cpu"))
        else:
            raise ValueError(f"unknown feature view {view!r}")
    return out
