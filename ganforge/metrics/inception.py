"""The FID Inception network: TensorFlow's 2015-12-05 Inception v3 as ported by pytorch-fid.

FID numbers are only comparable with published ones when they come from this exact network:
torchvision's Inception v3 with 1008 classes, whose pooling branches behave as TensorFlow's did
(average pools that ignore the zero padding; a max pool in the last block), inputs resized to
299x299 bilinearly, and the 2048-d pool3 features. The weights are the pytorch-fid release
(`pt_inception-2015-12-05-6726825d.pth`), read from a given path, the torch hub cache, or
downloaded once when online.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

from ganforge.errors import GanforgeError

WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


def _tf_avg_pool(x: Tensor) -> Tensor:
    # TensorFlow's 3x3 average pool divides by the number of real (unpadded) inputs.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(InceptionA):
    def _forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        return [
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_tf_avg_pool(x)),
        ]


class _BlockC(InceptionC):
    def _forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))]


class _BlockE(InceptionE):
    """InceptionE with TensorFlow's pooling: average (Mixed_7b) or, in Mixed_7c, max."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return [self.branch1x1(x), b3, d, self.branch_pool(pooled)]


def fid_inception_v3() -> Inception3:
    """The FID Inception architecture with untrained weights (state-dict keys as the release)."""
    net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = _BlockA(192, pool_features=32)
    net.Mixed_5c = _BlockA(256, pool_features=64)
    net.Mixed_5d = _BlockA(288, pool_features=64)
    net.Mixed_6b = _BlockC(768, channels_7x7=128)
    net.Mixed_6c = _BlockC(768, channels_7x7=160)
    net.Mixed_6d = _BlockC(768, channels_7x7=160)
    net.Mixed_6e = _BlockC(768, channels_7x7=192)
    net.Mixed_7b = _BlockE(1280, max_pool=False)
    net.Mixed_7c = _BlockE(2048, max_pool=True)
    return net


class FIDInception(nn.Module):
    """Images in [0, 1] (N, 3, H, W) -> pool3 features (N, 2048) and logits (N, 1008)."""

    def __init__(self, state_dict: dict[str, Tensor] | None = None) -> None:
        super().__init__()
        self.net = fid_inception_v3()
        if state_dict is not None:
            self.net.load_state_dict(state_dict)
        self.eval().requires_grad_(False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """pytorch-fid's input path: bilinear resize to 299 (no antialiasing), [0, 1] -> [-1, 1]."""
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.trunk(2 * x - 1)

    def trunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The network on inputs already resized to 299x299 and scaled to about [-1, 1]."""
        n = self.net
        x = n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d,
                      n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = block(x)
        pool = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        # Inception Score uses the logits without the bias, as OpenAI's original code did.
        logits = pool @ n.fc.weight.T
        return pool, logits


def default_weights_path() -> Path:
    """Where the torch hub cache keeps the FID weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def load_fid_weights(path: str | None = None, download: bool = True) -> dict[str, Tensor]:
    """The FID Inception state dict: from `path`, the torch hub cache, or a download."""
    target = Path(path).expanduser() if path else default_weights_path()
    if not target.is_file():
        if path:
            raise GanforgeError(f"eval.extractor.weights (or --inception-weights): no file at {target}")
        if download:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(WEIGHTS_URL, str(target), hash_prefix="6726825d", progress=True)
            except Exception as e:  # network failures come in many types
                target.unlink(missing_ok=True)
                raise GanforgeError(
                    f"the FID Inception weights are not on this machine and could not be downloaded "
                    f"({type(e).__name__}); download {WEIGHTS_URL} and place it at {target}, "
                    "or set eval.extractor.weights (ganforge eval: --inception-weights) to its path"
                ) from None
        else:
            raise GanforgeError(f"the FID Inception weights are missing: place {WEIGHTS_FILE} at {target}")
    try:
        state = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file
        raise GanforgeError(f"{target} is not a readable Inception weights file ({type(e).__name__})") from None
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise GanforgeError(f"{target} does not hold the FID Inception weights ({WEIGHTS_FILE})")
    return state
