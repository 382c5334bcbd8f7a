"""LPIPS-VGG (Zhang et al. 2018): the perceptual distance of projection (`ganforge project`) and of
the perceptual path length metric (`ppl`), with the published weights: LPIPS v0.1's linear heads
(`vgg.pth`) on torchvision's ImageNet VGG-16 (`vgg16-397923af.pth`)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError


def unit_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Each position's feature vector scaled to unit length (LPIPS' normalize_tensor)."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


LPIPS_FILE = "vgg.pth"  # LPIPS v0.1 linear heads (richzhang/PerceptualSimilarity: lpips/weights/v0.1/vgg.pth)
VGG_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG-16
VGG_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
WEIGHTS_HELP = (f"LPIPS-VGG needs {LPIPS_FILE} (the LPIPS v0.1 linear weights: lpips/weights/v0.1/{LPIPS_FILE} in "
                f"richzhang/PerceptualSimilarity or the `lpips` pip package) and torchvision's VGG-16 weights "
                f"{VGG_FILE} ({VGG_URL}) beside it or in the torch hub cache")


class LPIPS(nn.Module):
    """LPIPS v0.1 with VGG-16 (Zhang et al. 2018): unit-normalised relu1_2 ... relu5_3 features,
    squared differences weighted per channel by learned 1x1 heads, spatial mean, summed."""

    CHANNELS = (64, 128, 256, 512, 512)
    CUTS = (4, 9, 16, 23, 30)  # torchvision's vgg16().features indices that end each slice (after a ReLU)
    SHIFT = (-0.030, -0.088, -0.188)  # LPIPS' ScalingLayer, for inputs in [-1, 1]
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU()]
                c_in = int(v)
        self.features = nn.Sequential(*layers)  # indices as torchvision's vgg16().features[:30]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.CHANNELS)
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1))

    def layer_features(self, x: Tensor, resize: bool = True) -> list[Tensor]:
        """Unit-normalised features of images in [-1, 1] (grey images are repeated to RGB; unless
        `resize` is false, sides below 64 px are upsampled, above 256 px area-downsampled, as
        StyleGAN2-ADA's projector does; its path-length metric does not resize)."""
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if not resize:
            pass
        elif x.shape[-1] < 64:
            x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        elif x.shape[-1] > 256:
            x = F.interpolate(x, size=(256, 256), mode="area")
        h = (x - self.shift) / self.scale
        out, start = [], 0
        for cut in self.CUTS:
            h = self.features[start:cut](h)
            out.append(unit_channels(h))
            start = cut
        return out

    def distance(self, a: list[Tensor], b: list[Tensor]) -> Tensor:
        """LPIPS between two images' `layer_features` (N,)."""
        return sum(lin((x - y).pow(2)).mean(dim=(1, 2, 3)) for lin, x, y in zip(self.lins, a, b))  # type: ignore

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.distance(self.layer_features(x), self.layer_features(y))


def _read_weights(path: Path, what: str) -> dict[str, Tensor]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # refused pickles, truncated files, other formats
        raise ConfigError(f"--lpips: {path} could not be read as {what} ({type(e).__name__}); {WEIGHTS_HELP}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--lpips: {path} is not a state dict of {what}; {WEIGHTS_HELP}")
    return data


def lpips_files(path: str | Path | None) -> list[Path]:
    """The files `load_lpips(path)` may read (none without `path`)."""
    if path is None:
        return []
    heads = Path(path) / LPIPS_FILE if Path(path).is_dir() else Path(path)
    return [heads, heads.parent / VGG_FILE, Path(torch.hub.get_dir()) / "checkpoints" / VGG_FILE]


def load_lpips(path: str | Path) -> LPIPS:
    """LPIPS-VGG from the linear-head file (or a folder holding it) and the VGG-16 weights found
    beside it or in the torch hub cache; a missing or wrong file is a one-line ConfigError."""
    heads, *candidates = lpips_files(path)
    if not heads.is_file():
        raise ConfigError(f"--lpips: no file {heads}; {WEIGHTS_HELP}")
    backbone = next((p for p in candidates if p.is_file()), None)
    if backbone is None:
        raise ConfigError(f"--lpips: {VGG_FILE} is in neither {candidates[0].parent} nor {candidates[1].parent}; "
                          f"{WEIGHTS_HELP}")
    net = LPIPS()
    lin = _read_weights(heads, "LPIPS linear weights")
    state = {}
    for k, c in enumerate(net.CHANNELS):
        w = lin.get(f"lin{k}.model.1.weight", lin.get(f"lin{k}.model.0.weight"))
        if w is None or tuple(w.shape) != (1, c, 1, 1):
            raise ConfigError(f"--lpips: {heads} is not LPIPS-VGG's linear weights (lin{k}.model.1.weight of shape "
                              f"(1, {c}, 1, 1) is missing); {WEIGHTS_HELP}")
        state[f"lins.{k}.weight"] = w
    vgg = _read_weights(backbone, "VGG-16 weights")
    for key, value in net.features.state_dict().items():
        w = vgg.get(f"features.{key}")
        if w is None or w.shape != value.shape:
            raise ConfigError(f"--lpips: {backbone} is not torchvision's VGG-16 (features.{key} is missing or of "
                              f"another shape); {WEIGHTS_HELP}")
        state[f"features.{key}"] = w
    net.load_state_dict({**net.state_dict(), **state})
    return net.eval().requires_grad_(False)
