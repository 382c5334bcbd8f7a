"""StyleGAN2 (Karras et al. 2020) in plain PyTorch, sized by arguments.

Generator: a mapping network (normalised z, optional class embedding, FC layers with a 0.01
learning-rate multiplier) gives w; a learned 4x4 constant goes through modulated/demodulated
3x3 convolutions with per-layer noise inputs, and each resolution adds its RGB output to the
upsampled image of the one below (skip architecture). Style mixing mixes two w at a random
layer during training; the truncation trick pulls w towards its running average when sampling.
Discriminator: residual blocks, minibatch standard deviation at 4x4, and (conditional)
projection of a class embedding. All layers use equalized learning rate.

Noise inputs follow the reference's `noise_mode`, independent of train/eval mode: `random`
(fresh noise from torch's global generator, which callers seed), `const` (a fixed buffer per layer:
the same seed gives the same image every time) or `none`. Under mixed precision the mapping
network, the average w and the truncation run in float32, as in StyleGAN2-ADA.

Simplification: resampling is bilinear (plus a [1, 2, 1] blur before strided-free pooling)
rather than the paper's FIR upfirdn kernels, so no custom CUDA code is needed anywhere.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.accepts import Accepts
from ganforge.params import Range
from ganforge.registry import DISCRIMINATORS, GENERATORS

Width = Annotated[int, Range(ge=1, le=4096)]
SQRT2 = math.sqrt(2.0)
NoiseMode = Literal["random", "const", "none"]
NOISE_MODES: tuple[str, ...] = get_args(NoiseMode)
# Any power of two from 8 (the constructors reject other sizes).
IMAGES_FROM_8 = Accepts(images=True, vectors=False, min_resolution=8)


def _stages(resolution: int) -> int:
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution {resolution} is not supported; use a power of two from 8 (data.resolution)")
    return int(math.log2(resolution)) - 2


def _width(res: int, resolution: int, base_width: int, max_width: int) -> int:
    """Channels at resolution `res`: doubling towards low resolutions, capped."""
    return min(base_width * (resolution // res), max_width)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: N(0, 1) weights scaled at run time."""

    def __init__(self, n_in: int, n_out: int, bias_init: float = 0.0, lr_multiplier: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((n_out,), float(bias_init)))
        self.w_gain = lr_multiplier / math.sqrt(n_in)
        self.b_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.w_gain, self.bias * self.b_gain)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class EqualConv2d(nn.Module):
    """3x3 (or 1x1) convolution with equalized learning rate."""

    def __init__(self, c_in: int, c_out: int, kernel: int, activation: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.gain = 1 / math.sqrt(c_in * kernel * kernel)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight * self.gain, self.bias, padding=self.weight.shape[-1] // 2)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class ModulatedConv(nn.Module):
    """Modulated convolution: a per-sample style scales the input channels of the weight, which
    is then demodulated to unit output variance; optional 2x upsampling and a noise input."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int = 3, up: bool = False, demodulate: bool = True,
                 noise: bool = True, activation: bool = True, resolution: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.up, self.demodulate, self.activation = up, demodulate, activation
        self.gain = 1 / math.sqrt(c_in * kernel * kernel)
        if noise:
            self.noise_strength = nn.Parameter(torch.zeros(()))
            # Fixed noise for noise_mode "const", so that a seed gives the same image every time.
            g = torch.Generator().manual_seed(resolution * 1000 + c_out)
            self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution, generator=g))
        else:
            self.noise_strength = None

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        n, c_in, _, _ = x.shape
        style = self.affine(w)  # (n, c_in)
        weight = self.weight[None] * self.gain * style[:, None, :, None, None]  # (n, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        _, _, h, wd = x.shape
        out_c, k = weight.shape[1], weight.shape[-1]
        # One grouped convolution runs every sample with its own weights.
        x = F.conv2d(x.reshape(1, n * c_in, h, wd), weight.reshape(n * out_c, c_in, k, k), padding=k // 2, groups=n)
        x = x.view(n, out_c, h, wd)
        if self.noise_strength is not None and noise_mode != "none":
            noise = torch.randn(n, 1, h, wd, device=x.device, dtype=x.dtype) if noise_mode == "random" else \
                self.noise_const.to(x.dtype)
            x = x + noise * self.noise_strength
        x = x + self.bias[None, :, None, None]
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class MappingNetwork(nn.Module):
    """z (and a class embedding) -> w, through FC layers with a reduced learning rate."""

    def __init__(self, latent_dim: int, w_dim: int, layers: int, num_classes: int, lr_multiplier: float = 0.01):
        super().__init__()
        self.embed = EqualLinear(num_classes, w_dim) if num_classes else None
        dims = [latent_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_multiplier=lr_multiplier, activation=True)
                                   for a, b in zip(dims[:-1], dims[1:])])
        self.num_classes = num_classes

    def forward(self, z: Tensor, labels: Tensor | None) -> Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this generator is conditional: pass class labels")
            y = self.embed(F.one_hot(labels, self.num_classes).to(z.dtype))
            x = torch.cat([x, y * torch.rsqrt(y.pow(2).mean(dim=1, keepdim=True) + 1e-8)], dim=1)
        return self.net(x)


class StyleGAN2Generator(nn.Module):
    """Mapping network + synthesis network with skip RGB outputs."""

    accepts = IMAGES_FROM_8
    supports_truncation = True
    noise_modes = NOISE_MODES  # what `forward(..., noise_mode=...)` takes

    def __init__(self, channels: int, resolution: int, num_classes: int = 0, latent_dim: int = 512,
                 w_dim: int = 512, mapping_layers: int = 8, base_width: int = 64, max_width: int = 512,
                 conditional: bool = False, style_mixing: float = 0.9, w_avg_beta: float = 0.995) -> None:
        super().__init__()
        if conditional and num_classes < 2:
            raise ValueError(f"conditional needs a labelled data set (this one has {num_classes} classes)")
        self.num_classes = num_classes if conditional else 0
        self.latent_dim, self.w_dim = latent_dim, w_dim
        self.style_mixing, self.w_avg_beta = style_mixing, w_avg_beta
        stages = _stages(resolution)
        self.mapping = MappingNetwork(latent_dim, w_dim, mapping_layers, self.num_classes)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        c4 = _width(4, resolution, base_width, max_width)
        self.const = nn.Parameter(torch.randn(1, c4, 4, 4))
        self.convs = nn.ModuleList([ModulatedConv(c4, c4, w_dim, resolution=4)])
        self.to_rgb = nn.ModuleList([ModulatedConv(c4, channels, w_dim, kernel=1, demodulate=False, noise=False,
                                                   activation=False)])
        c_prev = c4
        for i in range(1, stages + 1):
            res = 4 * 2**i
            c = _width(res, resolution, base_width, max_width)
            self.convs.append(ModulatedConv(c_prev, c, w_dim, up=True, resolution=res))
            self.convs.append(ModulatedConv(c, c, w_dim, resolution=res))
            self.to_rgb.append(ModulatedConv(c, channels, w_dim, kernel=1, demodulate=False, noise=False,
                                             activation=False))
            c_prev = c
        self.num_ws = len(self.convs) + 1  # each conv takes a w; the last RGB layer its own

    def mapping_w(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """w for z (n, w_dim), always in float32: StyleGAN2-ADA never runs the mapping network in
        reduced precision (its learning rate is scaled by 0.01), and w_avg is a float32 buffer."""
        with torch.autocast(z.device.type, enabled=False):
            return self.mapping(z.float(), labels)

    def mapping_ws(self, z: Tensor, labels: Tensor | None, truncation: float | None = None) -> Tensor:
        """Per-layer styles (n, num_ws, w_dim), with style mixing in training and truncation."""
        w = self.mapping_w(z, labels)
        if self.training:
            with torch.no_grad():  # track the average w for the truncation trick
                self.w_avg.lerp_(w.detach().mean(0), 1 - self.w_avg_beta)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if self.training and self.style_mixing > 0:
            mix = torch.rand(z.shape[0], 1, 1, device=z.device) < self.style_mixing
            cut = torch.randint(1, self.num_ws, (z.shape[0], 1, 1), device=z.device)
            w2 = self.mapping_w(torch.randn_like(z), labels).unsqueeze(1)
            later = torch.arange(self.num_ws, device=z.device)[None, :, None] >= cut
            ws = torch.where(mix & later, w2.expand_as(ws), ws)
        if truncation is not None and truncation != 1:
            ws = self.w_avg.lerp(ws, truncation)
        return ws

    def synthesis(self, ws: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        """Images from per-layer styles; `noise_mode` random, const or none (see the module notes)."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode {noise_mode!r}: use one of {', '.join(NOISE_MODES)}")
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], noise_mode)
        image = self.to_rgb[0](x, ws[:, 1])
        for i in range(1, len(self.to_rgb)):
            x = self.convs[2 * i - 1](x, ws[:, 2 * i - 1], noise_mode)
            x = self.convs[2 * i](x, ws[:, 2 * i], noise_mode)
            image = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False)
            image = image + self.to_rgb[i](x, ws[:, 2 * i + 1])
        return image

    def synthesis_with_styles(self, z: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """Images and the styles they came from (for the path-length penalty)."""
        w = self.mapping_w(z, labels)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.synthesis(ws), ws

    def forward(self, z: Tensor, labels: Tensor | None = None, truncation: float | None = None,
                noise_mode: NoiseMode = "random") -> Tensor:
        # The output is linear, as in StyleGAN2: D sees unclamped values; samples are clamped when saved.
        return self.synthesis(self.mapping_ws(z, labels, truncation), noise_mode)


class MinibatchStd(nn.Module):
    """Appends the standard deviation of features over groups of samples (a diversity cue for D)."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = math.gcd(self.group_size, n)
        y = x.view(g, -1, c, h, w).float()
        y = (y - y.mean(dim=0)).pow(2).mean(dim=0).add(1e-8).sqrt()
        y = y.mean(dim=(1, 2, 3)).to(x.dtype)  # one figure per group member slot
        y = y.view(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DBlock(nn.Module):
    """conv-conv-down with a 1x1 down shortcut, summed and scaled by 1/sqrt(2)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = EqualConv2d(c_in, c_in, 3), EqualConv2d(c_in, c_out, 3)
        self.skip = EqualConv2d(c_in, c_out, 1, activation=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.conv2(self.conv1(x)), 2)
        return (h + self.skip(F.avg_pool2d(x, 2))) / SQRT2


class StyleGAN2Discriminator(nn.Module):
    """Residual discriminator with minibatch standard deviation (and projection when conditional)."""

    accepts = IMAGES_FROM_8

    def __init__(self, channels: int, resolution: int, num_classes: int = 0, base_width: int = 64,
                 max_width: int = 512, conditional: bool = False, mbstd_group: int = 4) -> None:
        super().__init__()
        if conditional and num_classes < 2:
            raise ValueError(f"conditional needs a labelled data set (this one has {num_classes} classes)")
        stages = _stages(resolution)
        self.from_rgb = EqualConv2d(channels, _width(resolution, resolution, base_width, max_width), 1)
        blocks = []
        for i in range(stages, 0, -1):
            res = 4 * 2**i
            blocks.append(DBlock(_width(res, resolution, base_width, max_width),
                                 _width(res // 2, resolution, base_width, max_width)))
        self.blocks = nn.Sequential(*blocks)
        c4 = _width(4, resolution, base_width, max_width)
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualConv2d(c4 + 1, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activation=True)
        self.out = EqualLinear(c4, 1)
        self.embed = EqualLinear(num_classes, c4) if conditional else None
        self.num_classes = num_classes if conditional else 0

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.blocks(self.from_rgb(x))
        h = self.fc(self.conv(self.mbstd(h)).flatten(1))
        out = self.out(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is conditional: pass class labels")
            cmap = self.embed(F.one_hot(labels, self.num_classes).to(h.dtype))
            out = out + (h * cmap).sum(1) / math.sqrt(h.shape[1])
        return out


@GENERATORS.register("stylegan2")
def stylegan2_generator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    latent_dim: Annotated[int, Range(ge=1)] = 512,
    w_dim: Annotated[int, Range(ge=1)] = 512,
    mapping_layers: Annotated[int, Range(ge=1)] = 8,
    base_width: Width = 64,
    max_width: Width = 512,
    conditional: bool = False,
    style_mixing: Annotated[float, Range(ge=0, le=1)] = 0.9,
) -> StyleGAN2Generator:
    """StyleGAN2 G: mapping network, modulated convs, noise inputs, skip outputs, style mixing, truncation."""
    return StyleGAN2Generator(channels, resolution, num_classes, latent_dim, w_dim, mapping_layers, base_width,
                              max_width, conditional, style_mixing)


stylegan2_generator.accepts = IMAGES_FROM_8  # type: ignore[attr-defined]


@DISCRIMINATORS.register("stylegan2")
def stylegan2_discriminator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    base_width: Width = 64,
    max_width: Width = 512,
    conditional: bool = False,
    mbstd_group: Annotated[int, Range(ge=1)] = 4,
) -> StyleGAN2Discriminator:
    """StyleGAN2 D: residual blocks, minibatch standard deviation, projection when conditional."""
    return StyleGAN2Discriminator(channels, resolution, num_classes, base_width, max_width, conditional, mbstd_group)


stylegan2_discriminator.accepts = IMAGES_FROM_8  # type: ignore[attr-defined]
