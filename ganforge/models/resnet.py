"""Residual GANs: the ResNet G/D of WGAN-GP and SNGAN (BigGAN is models/biggan.py).

Generators upsample a 4x4 map through residual blocks whose batch norms may be class-conditional
(SNGAN's conditional BN). Discriminators downsample through residual blocks and end in global
pooling (a sum, or a mean for the WGAN-GP critic) and a linear layer, with an optional projection
of the class embedding (Miyato & Koyama 2018) and an optional auxiliary classifier (AC-GAN).
Spectral normalisation is the `spectral_norm` regularizer. Widths and depth follow the
resolution (SNGAN's layout).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.accepts import Accepts
from ganforge.models import stages
from ganforge.params import Range
from ganforge.registry import DISCRIMINATORS, GENERATORS

Width = Annotated[int, Range(ge=1, le=4096)]
Pool = Literal["sum", "mean"]
# `he_uniform` is igul222's name (`he_init`) for the same initialisation as `glorot`: an alias.
ResNetInit = Literal["glorot", "he_uniform", "default"]
IMAGES = Accepts(images=True, vectors=False, min_resolution=16, max_resolution=256, powers_of_two=True)
TINY_WIDTHS = {"base_width": 4, "max_width": 8}


def stage_widths(stages: int, base_width: int, max_width: int) -> list[int]:
    """Channels from the 4x4 map (index 0) to the full resolution (index `stages`)."""
    return [min(base_width * 2 ** (stages - i), max_width) for i in range(stages + 1)]


def sngan_d_layout(resolution: int, base_width: int, max_width: int, extra_blocks: int
                   ) -> tuple[list[int], list[bool]]:
    """SNGAN / WGAN-GP critic: (channels after each block, whether it halves the resolution).
    Down to 8x8 (SNGAN's CIFAR D keeps its last blocks at 8x8), then `extra_blocks` more."""
    doublings = stages(resolution, IMAGES)
    widths = list(reversed(stage_widths(doublings, base_width, max_width)))  # full resolution first
    downs = max(1, doublings - 1)
    return widths[1 : downs + 1] + [widths[downs]] * extra_blocks, [True] * downs + [False] * extra_blocks


def _check_classes(conditional: bool, num_classes: int) -> int:
    if conditional and num_classes < 2:
        raise ValueError(f"conditional needs a labelled data set (this one has {num_classes} classes)")
    return num_classes if conditional else 0


def init_resnet_weights(module: nn.Module, scheme: str) -> None:
    """The `resnet` G/D's initialisation. `glorot` is both references': Glorot-uniform weights
    (std = gain x sqrt(2 / (fan_in + fan_out))) with gain sqrt(2) on the 3x3 convs of the
    residual blocks and gain 1 on the shortcut convs, G's input linear and output conv, and D's
    output, projection and classifier layers; biases zero. sngan_projection writes it as
    GlorotUniform(sqrt(2)) and GlorotUniform(); igul222's gan_cifar_resnet.py as `he_init=True`
    (std sqrt(4 / (fan_in + fan_out))) and its Glorot default, hence `he_uniform`, its name for
    the same weights. `default` keeps PyTorch's own
    initialisation. The per-class BatchNorm gains and biases keep their zero start (plain BN)."""
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, (GBlock, DBlock)):
            for conv in (m.conv1, m.conv2):
                _glorot(conv, math.sqrt(2.0))
            if m.skip is not None:
                _glorot(m.skip, 1.0)
    for name in ("linear", "out", "embed", "aux"):
        layer = getattr(module, name, None)
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.Embedding)):
            _glorot(layer, 1.0)


def _glorot(layer: nn.Module, gain: float) -> None:
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain (1 + .) and bias are linear in a one-hot class (SNGAN's categorical
    BN): per-class embeddings that start at zero (plain BN) and are never spectrally normalised
    (a zero matrix has no spectrum)."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=cond_dim == 0)
        self.gain = nn.Linear(cond_dim, channels, bias=False) if cond_dim else None
        self.bias = nn.Linear(cond_dim, channels, bias=False) if cond_dim else None
        if self.gain is not None:
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)
            self.gain.spectral_norm_exempt = self.bias.spectral_norm_exempt = True

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        x = self.bn(x)
        if self.gain is None or cond is None:
            return x
        return x * (1 + self.gain(cond)[:, :, None, None]) + self.bias(cond)[:, :, None, None]


class GBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv, plus an upsampled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, cond_dim)
        self.bn2 = ConditionalBatchNorm2d(c_out, cond_dim)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """(ReLU-)conv-ReLU-conv, average-pool down, plus a 1x1 shortcut; the first block skips the
    leading ReLU and pools before its shortcut conv (SNGAN's optimized block)."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or down) else None
        self.down, self.first = down, first

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x if self.first else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:
            s = self.skip(F.avg_pool2d(s, 2)) if self.skip is not None else s
        else:
            s = self.skip(s) if self.skip is not None else s
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


class ResNetGenerator(nn.Module):
    """Residual generator: linear to 4x4, upsampling blocks, BN-ReLU-conv-tanh.

    widths: channels from the 4x4 map to the full resolution (one block per doubling)."""


    def __init__(self, channels: int, widths: list[int], num_classes: int = 0, latent_dim: int = 128,
                 conditional: bool = False) -> None:
        super().__init__()
        stages = len(widths) - 1
        self.num_classes = _check_classes(conditional, num_classes)
        self.latent_dim = latent_dim
        self.linear = nn.Linear(latent_dim, 16 * widths[0])
        self.blocks = nn.ModuleList(GBlock(widths[i], widths[i + 1], self.num_classes) for i in range(stages))
        self.bn = nn.BatchNorm2d(widths[-1])
        self.out = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self.widths = widths

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("this generator is conditional: pass class labels")
            cls = F.one_hot(labels, self.num_classes).to(z.dtype)
        else:
            cls = None
        h = self.linear(z).view(z.shape[0], self.widths[0], 4, 4)
        for block in self.blocks:
            h = block(h, cls)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class ResNetDiscriminator(nn.Module):
    """Residual discriminator: blocks, ReLU, global sum (or mean) pooling, linear (+ projection).

    widths[i]: channels after block i; downsample[i]: whether block i halves the resolution."""


    def __init__(self, channels: int, resolution: int, widths: list[int], downsample: list[bool],
                 num_classes: int = 0, conditional: bool = False, auxiliary_classifier: bool = False,
                 pool: Pool = "sum", output_bias: bool = True) -> None:
        super().__init__()
        if len(widths) != len(downsample) or not widths:
            raise ValueError(f"{len(widths)} block widths but {len(downsample)} downsample flags")
        if pool not in ("sum", "mean"):
            raise ValueError(f"pool {pool!r}: use sum or mean")
        classes = num_classes if (conditional or auxiliary_classifier) else 0
        _check_classes(conditional or auxiliary_classifier, num_classes)
        blocks: list[nn.Module] = []
        c_in = channels
        for i, (c, down) in enumerate(zip(widths, downsample)):
            blocks.append(DBlock(c_in, c, down=down, first=i == 0))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.pool = pool
        self.linear = nn.Linear(c_in, 1, bias=output_bias)
        self.embed = nn.Embedding(classes, c_in) if (conditional and classes) else None
        self.aux = nn.Linear(c_in, classes) if (auxiliary_classifier and classes) else None

    def features(self, x: Tensor) -> Tensor:
        """Pooled features of the last block, (N, channels)."""
        h = F.relu(self.blocks(x))
        # SNGAN sums over space; the WGAN-GP critic (gan_cifar_resnet.py) averages.
        return h.sum(dim=(2, 3)) if self.pool == "sum" else h.mean(dim=(2, 3))

    def feature_blocks(self) -> list[list[nn.Module]]:
        """Each residual block, from the input side."""
        return [[m] for m in self.blocks]

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.features(x)
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is conditional: pass class labels")
            out = out + (self.embed(labels) * h).sum(1)  # the projection term
        return out

    def classify(self, x: Tensor) -> Tensor:
        """Class logits of the auxiliary classifier (AC-GAN)."""
        if self.aux is None:
            raise ValueError("this discriminator has no auxiliary classifier")
        return self.aux(self.features(x))


@GENERATORS.register("resnet", accepts=IMAGES, tiny={"latent_dim": 8, **TINY_WIDTHS}, output_range=(-1.0, 1.0))
def resnet_generator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    latent_dim: Annotated[int, Range(ge=1)] = 128,
    base_width: Width = 128,
    max_width: Width = 256,
    conditional: bool = False,
    init: ResNetInit = "glorot",
) -> ResNetGenerator:
    """Residual G of WGAN-GP / SNGAN (16-256 px); conditional: class-conditional BatchNorm;
    init: glorot (both references'; he_uniform is igul222's name for it) or default (PyTorch's)."""
    widths = stage_widths(stages(resolution, IMAGES), base_width, max_width)
    G = ResNetGenerator(channels, widths, num_classes, latent_dim, conditional)
    init_resnet_weights(G, init)
    return G


@DISCRIMINATORS.register("resnet", accepts=IMAGES, tiny={**TINY_WIDTHS, "extra_blocks": 0})
def resnet_discriminator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    base_width: Width = 128,
    max_width: Width = 256,
    conditional: bool = False,
    auxiliary_classifier: bool = False,
    extra_blocks: Annotated[int, Range(ge=0)] = 2,
    pool: Pool = "sum",
    output_bias: bool = False,
    init: ResNetInit = "glorot",
) -> ResNetDiscriminator:
    """Residual D of WGAN-GP / SNGAN; conditional: projection; auxiliary_classifier: AC-GAN head;
    pool: sum (SNGAN) | mean (the WGAN-GP critic); output_bias: a bias on the output layer (the
    WGAN-GP critic has one, SNGAN's D none); init: glorot (both references'; he_uniform is igul222's
    name for it) or default (PyTorch's)."""
    widths, downsample = sngan_d_layout(resolution, base_width, max_width, extra_blocks)
    D = ResNetDiscriminator(channels, resolution, widths, downsample, num_classes, conditional,
                            auxiliary_classifier, pool=pool, output_bias=output_bias)
    init_resnet_weights(D, init)
    return D
