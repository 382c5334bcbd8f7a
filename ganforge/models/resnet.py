"""Residual GANs: the ResNet G/D of WGAN-GP and SNGAN, and BigGAN.

One set of blocks serves both families. Generators upsample a 4x4 map through residual blocks
whose batch norms may be class-conditional (SNGAN's conditional BN; BigGAN's shared class
embedding plus a chunk of the noise per block). Discriminators downsample through residual
blocks and end in global sum pooling and a linear layer, with an optional projection of the
class embedding (Miyato & Koyama 2018) and an optional auxiliary classifier (AC-GAN).
Spectral normalisation is the `spectral_norm` regularizer; widths and depth follow the resolution.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.params import Range
from ganforge.registry import DISCRIMINATORS, GENERATORS

Width = Annotated[int, Range(ge=1, le=4096)]
AttentionAt = Annotated[int, Range(ge=0)]


def _stages(resolution: int, what: str) -> int:
    if resolution not in (16, 32, 64, 128, 256):
        raise ValueError(f"{what}: resolution {resolution} is not supported; use 16, 32, 64, 128 or 256 "
                         "(data.resolution)")
    return int(math.log2(resolution)) - 2


def stage_widths(stages: int, base_width: int, max_width: int) -> list[int]:
    """Channels from the 4x4 map (index 0) to the full resolution (index `stages`)."""
    return [min(base_width * 2 ** (stages - i), max_width) for i in range(stages + 1)]


def _check_classes(conditional: bool, num_classes: int, what: str) -> int:
    if conditional and num_classes < 2:
        raise ValueError(f"{what}: conditional needs a labelled data set (this one has {num_classes} classes)")
    return num_classes if conditional else 0


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias come from a conditioning vector (zero vector: plain BN)."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=cond_dim == 0)
        self.gain = nn.Linear(cond_dim, channels, bias=False) if cond_dim else None
        self.bias = nn.Linear(cond_dim, channels, bias=False) if cond_dim else None
        if self.gain is not None:
            # Zero at the start (plain BN); never spectrally normalised: a zero matrix has no spectrum.
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)
            self.gain.spectral_norm_exempt = self.bias.spectral_norm_exempt = True

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        x = self.bn(x)
        if self.gain is None or cond is None:
            return x
        return x * (1 + self.gain(cond)[:, :, None, None]) + self.bias(cond)[:, :, None, None]


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019), with BigGAN's pooled keys and values."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.theta = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.phi = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.g = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.out = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))  # starts as the identity

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        theta = self.theta(x).flatten(2)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)
        g = F.max_pool2d(self.g(x), 2).flatten(2)
        attention = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)
        o = (g @ attention.transpose(1, 2)).view(n, c // 2, h, w)
        return x + self.gamma * self.out(o)


class GBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv, plus an upsampled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = ConditionalBatchNorm2d(c_in, cond_dim), ConditionalBatchNorm2d(c_out, cond_dim)
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
    """Residual generator: linear to 4x4, upsampling blocks, BN-ReLU-conv-tanh."""

    def __init__(self, channels: int, resolution: int, num_classes: int = 0, latent_dim: int = 128,
                 base_width: int = 128, max_width: int = 128, conditional: bool = False, shared_dim: int = 0,
                 hierarchical: bool = False, attention_resolution: int = 0, what: str = "generator") -> None:
        super().__init__()
        stages = _stages(resolution, what)
        self.num_classes = _check_classes(conditional, num_classes, what)
        self.latent_dim = latent_dim
        widths = stage_widths(stages, base_width, max_width)
        # BigGAN: a shared class embedding, and (hierarchical) one chunk of z per block.
        self.chunks = stages + 1 if hierarchical else 1
        if latent_dim % self.chunks:
            raise ValueError(f"latent_dim {latent_dim} does not split into {self.chunks} equal chunks")
        chunk = latent_dim // self.chunks
        self.shared = nn.Embedding(self.num_classes, shared_dim) if (self.num_classes and shared_dim) else None
        class_dim = (shared_dim if self.shared is not None else self.num_classes) if self.num_classes else 0
        cond_dim = class_dim + (chunk if hierarchical else 0)
        self.hierarchical = hierarchical
        self.linear = nn.Linear(chunk, 16 * widths[0])
        self.blocks = nn.ModuleList(GBlock(widths[i], widths[i + 1], cond_dim) for i in range(stages))
        self.attention = nn.ModuleDict({
            str(i): SelfAttention(widths[i + 1]) for i in range(stages) if 2 ** (i + 3) == attention_resolution
        })
        self.bn = nn.BatchNorm2d(widths[-1])
        self.out = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self.widths = widths

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        chunks = z.chunk(self.chunks, dim=1) if self.hierarchical else [z]
        if self.num_classes:
            if labels is None:
                raise ValueError("this generator is conditional: pass class labels")
            cls = self.shared(labels) if self.shared is not None else F.one_hot(labels, self.num_classes).to(z.dtype)
        else:
            cls = None
        h = self.linear(chunks[0]).view(z.shape[0], self.widths[0], 4, 4)
        for i, block in enumerate(self.blocks):
            parts = [t for t in (cls, chunks[i + 1] if self.hierarchical else None) if t is not None]
            h = block(h, torch.cat(parts, 1) if parts else None)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class ResNetDiscriminator(nn.Module):
    """Residual discriminator: downsampling blocks, ReLU, global sum pooling, linear (+ projection)."""

    def __init__(self, channels: int, resolution: int, num_classes: int = 0, base_width: int = 128,
                 max_width: int = 128, conditional: bool = False, auxiliary_classifier: bool = False,
                 extra_blocks: int = 1, attention_resolution: int = 0, what: str = "discriminator") -> None:
        super().__init__()
        stages = _stages(resolution, what)
        classes = num_classes if (conditional or auxiliary_classifier) else 0
        _check_classes(conditional or auxiliary_classifier, num_classes, what)
        widths = list(reversed(stage_widths(stages, base_width, max_width)))  # full resolution first
        # Down to 8x8 (SNGAN's CIFAR D keeps its last blocks at 8x8), then `extra_blocks` more.
        downs = max(1, stages - 1)
        blocks: list[nn.Module] = [DBlock(channels, widths[1], down=True, first=True)]
        res = resolution // 2
        for i in range(1, downs):
            blocks.append(DBlock(widths[i], widths[i + 1], down=True))
            res //= 2
            if res == attention_resolution:
                blocks.append(SelfAttention(widths[i + 1]))
        c = widths[downs]
        blocks += [DBlock(c, c, down=False) for _ in range(extra_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(c, 1)
        self.embed = nn.Embedding(classes, c) if (conditional and classes) else None
        self.aux = nn.Linear(c, classes) if (auxiliary_classifier and classes) else None

    def features(self, x: Tensor) -> Tensor:
        return F.relu(self.blocks(x)).sum(dim=(2, 3))

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


@GENERATORS.register("resnet")
def resnet_generator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    latent_dim: Annotated[int, Range(ge=1)] = 128,
    base_width: Width = 128,
    max_width: Width = 256,
    conditional: bool = False,
) -> ResNetGenerator:
    """Residual G of WGAN-GP / SNGAN (16-256 px); conditional: class-conditional BatchNorm."""
    return ResNetGenerator(channels, resolution, num_classes, latent_dim, base_width, max_width, conditional)


@DISCRIMINATORS.register("resnet")
def resnet_discriminator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    base_width: Width = 128,
    max_width: Width = 256,
    conditional: bool = False,
    auxiliary_classifier: bool = False,
    extra_blocks: Annotated[int, Range(ge=0)] = 2,
) -> ResNetDiscriminator:
    """Residual D of WGAN-GP / SNGAN; conditional: projection; auxiliary_classifier: AC-GAN head."""
    return ResNetDiscriminator(channels, resolution, num_classes, base_width, max_width, conditional,
                               auxiliary_classifier, extra_blocks)


def _orthogonal_init(module: nn.Module) -> None:
    """BigGAN's initialisation: orthogonal conv and linear weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


@GENERATORS.register("biggan")
def biggan_generator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    latent_dim: Annotated[int, Range(ge=1)] = 120,
    base_width: Width = 64,
    max_width: Width = 1024,
    conditional: bool = True,
    shared_dim: Annotated[int, Range(ge=1)] = 128,
    attention_resolution: AttentionAt = 64,
) -> ResNetGenerator:
    """BigGAN G: residual, shared class embedding + hierarchical noise into conditional BN, self-attention."""
    hierarchical = True
    G = ResNetGenerator(channels, resolution, num_classes, latent_dim, base_width, max_width, conditional,
                        shared_dim, hierarchical, attention_resolution)
    # Orthogonal weights, as BigGAN; the conditional BN gains stay zero (plain BN at the start).
    for m in G.modules():
        if isinstance(m, (nn.Conv2d, nn.Embedding)) or (isinstance(m, nn.Linear) and m is G.linear):
            nn.init.orthogonal_(m.weight)
    return G


@DISCRIMINATORS.register("biggan")
def biggan_discriminator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    base_width: Width = 64,
    max_width: Width = 1024,
    conditional: bool = True,
    auxiliary_classifier: bool = False,
    attention_resolution: AttentionAt = 64,
) -> ResNetDiscriminator:
    """BigGAN D: residual, projection discriminator, self-attention at one resolution."""
    D = ResNetDiscriminator(channels, resolution, num_classes, base_width, max_width, conditional,
                            auxiliary_classifier, extra_blocks=1, attention_resolution=attention_resolution)
    _orthogonal_init(D)
    return D
