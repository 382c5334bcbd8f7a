"""StyleGAN2 (Karras et al. 2020) as StyleGAN2-ADA builds it, in plain PyTorch.

The modules, their parameter names, initialisation, learning-rate multipliers and gains are
those of NVlabs/stylegan2-ada-pytorch `training/networks.py`, so that its network pickles load
one to one (ganforge.interop) and give the same outputs (tests/test_parity_stylegan2.py: within
1e-5 of the reference code in float32).

Generator: a mapping network (normalised z, and an embedded, normalised one-hot label when
conditional; FC layers with a 0.01 learning-rate multiplier) gives w, tracked by its running
average `w_avg`; the synthesis network starts from a learned 4x4 constant, and each resolution
has modulated/demodulated 3x3 convolutions with noise inputs. Resampling is the [1, 3, 3, 1] FIR
filter (`resample_filter`, ganforge.models.resample). `architecture`: `orig` (RGB from the last
block only), `skip` (every block adds its RGB output to the upsampled image, the default) or
`resnet` (residual blocks). In training mode, style mixing draws one coin and one cut-off layer
per batch (as StyleGAN2-ADA's `run_G`); the truncation trick pulls w towards w_avg.
Discriminator: per resolution a block of 3x3 convolution then blur + stride-2 convolution, then
activation; `resnet` (default) adds a 1x1 blurred stride-2 skip without bias, `skip` feeds the
downsampled image to every block; the 4x4 epilogue has minibatch standard deviation (`mbstd_group`
samples, `mbstd_channels` features). Conditional D maps the one-hot label through its own mapping
network and outputs the projection of its features on it (no unconditional term).

Noise inputs follow `noise_mode`, independent of train/eval mode: `random` (from torch's global
generator, which callers seed), `const` (the `noise_const` buffers: the same seed gives the same
image every time) or `none`. Numerics: the mapping networks and D's epilogue always run in
float32; of the other blocks only those at the `num_fp16_res` highest resolutions follow the
configured reduced precision (train.precision), the rest run in float32, and `conv_clamp` clamps
every convolution's output, as StyleGAN2-ADA does with float16.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Annotated, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.accepts import Accepts
from ganforge.models import stages
from ganforge.models.resample import (
    DEFAULT_FILTER,
    bias_act,
    conv2d_resample,
    downsample2d,
    fir_filter,
    upsample2d,
)
from ganforge.params import Range
from ganforge.registry import DISCRIMINATORS, GENERATORS

NoiseMode = Literal["random", "const", "none"]
NOISE_MODES: tuple[str, ...] = get_args(NoiseMode)
Architecture = Literal["orig", "skip", "resnet"]
ChannelBase = Annotated[int, Range(ge=1)]
ChannelMax = Annotated[int, Range(ge=1, le=4096)]
Clamp = Annotated[float, Range(gt=0)] | None
Fp16Resolutions = Annotated[int, Range(ge=0)]
# Any power of two from 8 (the constructors reject other sizes).
IMAGES = Accepts(images=True, vectors=False, min_resolution=8, powers_of_two=True)
# channel_base 512 keeps a channel at 256 px (channel_base / resolution, at most channel_max).
TINY_WIDTHS = {"channel_base": 512, "channel_max": 8}
SQRT_HALF = math.sqrt(0.5)
LRELU_GAIN = math.sqrt(2.0)


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at resolution `res`: channel_base / res, at most channel_max (StyleGAN2-ADA)."""
    channels = min(channel_base // res, channel_max)
    if channels < 1:
        raise ValueError(f"channel_base {channel_base} gives no channels at {res}x{res}; use at least {res}")
    return channels


def _fp16_resolution(log2_resolution: int, num_fp16_res: int) -> int:
    """The lowest resolution whose block follows the reduced precision."""
    return max(2 ** (log2_resolution + 1 - num_fp16_res), 8)


@contextlib.contextmanager
def _precision(x: Tensor, reduced: bool) -> Iterator[None]:
    """Run a block in the active autocast precision if `reduced`, else in float32."""
    device_type = x.device.type
    if reduced or not torch.is_autocast_enabled(device_type):
        yield
        return
    with torch.autocast(device_type, enabled=False):
        yield


def _block_input(x: Tensor, reduced: bool) -> Tensor:
    """A block's input in the dtype it computes in (as the reference casts before each block):
    the autocast dtype for a reduced block while autocast is on, float32 otherwise."""
    if not reduced:
        return x.float()
    device_type = x.device.type
    return x.to(torch.get_autocast_dtype(device_type)) if torch.is_autocast_enabled(device_type) else x


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the features (dim 1)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalized learning rate: N(0, 1/lr_multiplier^2) weights, scaled by
    lr_multiplier/sqrt(fan_in) (bias: by lr_multiplier) at run time; optional leaky ReLU (gain sqrt 2)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, lrelu: bool = False,
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        if not self.lrelu:
            return F.linear(x, w, b)
        return bias_act(x.matmul(w.t()), b, lrelu=True, gain=LRELU_GAIN)


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate, optional FIR 2x up/downsampling, bias, leaky
    ReLU (gain sqrt 2) and clamping."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 lrelu: bool = False, up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = DEFAULT_FILTER, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.lrelu, self.up, self.down, self.conv_clamp = lrelu, up, down, conv_clamp
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = LRELU_GAIN if lrelu else 1.0
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, lrelu=self.lrelu, gain=self.act_gain * gain, clamp=clamp)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, noise: Tensor | None = None, up: int = 1,
                     padding: int = 0, resample_filter: Tensor | None = None, demodulate: bool = True,
                     fused: bool = True) -> Tensor:
    """StyleGAN2's modulated convolution: each sample's styles (N, in) scale the weight's input
    channels, and demodulation rescales every output channel to unit expected variance; `noise`
    is added to the result. `fused`: one grouped convolution with per-sample weights; otherwise
    the styles scale the activations around one shared convolution (the same figures)."""
    n = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Scale the factors towards 1 so that float16 does not overflow; demodulation undoes it.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1) if demodulate or fused else None
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    if demodulate:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = conv2d_resample(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_channels, kh, kw).to(x.dtype),
                        resample_filter, up=up, padding=padding, groups=n)
    x = x.reshape(n, -1, *x.shape[2:])
    return x + noise.to(x.dtype) if noise is not None else x


class MappingNetwork(nn.Module):
    """z (and a one-hot label, embedded) -> w through `num_layers` FC layers with leaky ReLU.
    With `w_avg_beta`, a `w_avg` buffer holds the running average of w (the generator updates it)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_layers: int = 8, embed_features: int | None = None,
                 layer_features: int | None = None, lr_multiplier: float = 0.01,
                 w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_layers = z_dim, c_dim, w_dim, num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], lrelu=True,
                                                         lr_multiplier=lr_multiplier))
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor | None, c: Tensor | None) -> Tensor:
        """w (N, w_dim) from z (N, z_dim) and/or c (N, c_dim), in the dtype of the inputs."""
        parts = []
        if self.z_dim:
            parts.append(normalize_2nd_moment(z))
        if self.c_dim:
            parts.append(normalize_2nd_moment(self.embed(c)))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


def _styles(affine: FullyConnectedLayer, w: Tensor) -> Tensor:
    """A layer's styles from its w, in float32 whatever the block's precision (as the reference,
    whose w are float32)."""
    with torch.autocast(w.device.type, enabled=False):
        return affine(w.float())


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling), noise input, bias, leaky ReLU, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, resample_filter: Sequence[float] = DEFAULT_FILTER,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "random", fused: bool = True,
                gain: float = 1.0) -> Tensor:
        styles = _styles(self.affine, w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, fused=fused)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, lrelu=True, gain=LRELU_GAIN * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to the image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor, fused: bool = True) -> Tensor:
        styles = _styles(self.affine, w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (the constant, or 2x upsampling conv0), conv1,
    and the RGB output (`skip`, or the last block), with a residual skip for `resnet`."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: Architecture = "skip",
                 resample_filter: Sequence[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 use_fp16: bool = False, use_noise: bool = True) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.architecture = in_channels, resolution, architecture
        self.is_last, self.use_fp16 = is_last, use_fp16
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        layer = {"w_dim": w_dim, "resolution": resolution, "resample_filter": resample_filter,
                 "conv_clamp": conv_clamp, "use_noise": use_noise}
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1 if is_last or architecture == "skip" else 0
        if self.num_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        if in_channels and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, up=2, resample_filter=resample_filter)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: NoiseMode = "random"
                ) -> tuple[Tensor, Tensor | None]:
        ws = ws.unbind(dim=1)
        with _precision(ws[0], self.use_fp16):
            # As the reference: one grouped convolution per layer when sampling in float32, the
            # shared weight with scaled activations when training (faster, and the same figures).
            reduced = torch.is_autocast_enabled(ws[0].device.type)
            fused = not self.training and (not reduced or ws[0].shape[0] == 1)
            if self.in_channels == 0:
                x = self.const.unsqueeze(0).repeat(ws[0].shape[0], 1, 1, 1)
                x = self.conv1(_block_input(x, self.use_fp16), ws[0], noise_mode, fused)
            elif self.architecture == "resnet":
                x = _block_input(x, self.use_fp16)
                y = self.skip(x, gain=SQRT_HALF)
                x = self.conv0(x, ws[0], noise_mode, fused)
                x = y + self.conv1(x, ws[1], noise_mode, fused, gain=SQRT_HALF)
            else:
                x = self.conv0(_block_input(x, self.use_fp16), ws[0], noise_mode, fused)
                x = self.conv1(x, ws[1], noise_mode, fused)
            if img is not None:
                img = upsample2d(img, self.resample_filter)
            if self.num_torgb:
                y = self.torgb(x, ws[self.num_conv], fused).float()  # the image accumulates in float32
                img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """Per-layer styles (N, num_ws, w_dim) -> images, through blocks b4, b8, ... b<resolution>."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, architecture: Architecture = "skip",
                 resample_filter: Sequence[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 use_noise: bool = True) -> None:
        super().__init__()
        log2 = stages(img_resolution, IMAGES) + 2
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        fp16_resolution = _fp16_resolution(log2, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(channels_at(res // 2, channel_base, channel_max) if res > 4 else 0,
                                   channels_at(res, channel_base, channel_max), w_dim, res, img_channels,
                                   is_last=res == img_resolution, architecture=architecture,
                                   resample_filter=resample_filter, conv_clamp=conv_clamp,
                                   use_fp16=res >= fp16_resolution, use_noise=use_noise)
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks from 4x4 up."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, ws: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode {noise_mode!r}: use one of {', '.join(NOISE_MODES)}")
        ws = ws.float()
        x = img = None
        w_idx = 0
        for block in self.blocks():
            # A block's RGB layer shares its w with the next block's first convolution.
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode)
            w_idx += block.num_conv
        return img


class StyleGAN2Generator(nn.Module):
    """Mapping network + synthesis network, with style mixing in training and truncation."""

    supports_truncation = True
    noise_modes = NOISE_MODES  # what `forward(..., noise_mode=...)` takes

    def __init__(self, channels: int, resolution: int, num_classes: int = 0, latent_dim: int = 512,
                 w_dim: int = 512, mapping_layers: int = 8, embed_features: int | None = None,
                 layer_features: int | None = None, mapping_lr_multiplier: float = 0.01,
                 w_avg_beta: float = 0.995, channel_base: int = 32768, channel_max: int = 512,
                 architecture: Architecture = "skip", resample_filter: Sequence[float] = DEFAULT_FILTER,
                 conv_clamp: float | None = None, num_fp16_res: int = 0, use_noise: bool = True,
                 conditional: bool = False, style_mixing: float = 0.9) -> None:
        super().__init__()
        if conditional and num_classes < 2:
            raise ValueError(f"conditional needs a labelled data set (this one has {num_classes} classes)")
        self.num_classes = num_classes if conditional else 0
        self.latent_dim, self.w_dim = latent_dim, w_dim
        self.style_mixing, self.w_avg_beta = style_mixing, w_avg_beta
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels, channel_base, channel_max, num_fp16_res,
                                          architecture, resample_filter, conv_clamp, use_noise)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(latent_dim, self.num_classes, w_dim, mapping_layers, embed_features,
                                      layer_features, mapping_lr_multiplier, w_avg_beta)

    @property
    def w_avg(self) -> Tensor:
        """The running average of w (the truncation trick's centre)."""
        return self.mapping.w_avg

    def mapping_w(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """w for z (n, w_dim), always in float32: StyleGAN2-ADA never runs the mapping network in
        reduced precision (its learning rate is scaled by 0.01), and w_avg is a float32 buffer."""
        if self.num_classes and labels is None:
            raise ValueError("this generator is conditional: pass class labels")
        with torch.autocast(z.device.type, enabled=False):
            c = F.one_hot(labels, self.num_classes).float() if self.num_classes else None
            return self.mapping(z.float(), c)

    def mapping_ws(self, z: Tensor, labels: Tensor | None, truncation: float | None = None) -> Tensor:
        """Per-layer styles (n, num_ws, w_dim): in training mode w_avg is updated and styles are
        mixed; then truncation."""
        w = self.mapping_w(z, labels)
        if self.training:
            with torch.no_grad():  # track the average w for the truncation trick
                self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if self.training and self.style_mixing > 0:
            # One coin and one cut-off layer for the whole batch, as StyleGAN2-ADA's run_G: with
            # probability style_mixing the layers from the cut-off on take the styles of other z.
            cutoff = torch.randint(1, self.num_ws, (), device=z.device)
            cutoff = torch.where(torch.rand((), device=z.device) < self.style_mixing, cutoff,
                                 torch.full_like(cutoff, self.num_ws))
            later = (torch.arange(self.num_ws, device=z.device) >= cutoff)[None, :, None]
            ws = torch.where(later, self.mapping_w(torch.randn_like(z), labels).unsqueeze(1), ws)
        if truncation is not None and truncation != 1:
            ws = self.w_avg.lerp(ws, truncation)
        return ws

    def synthesis_with_styles(self, z: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """Images and the styles they came from (for the path-length penalty): as in training,
        with style mixing and random noise (StyleGAN2-ADA's run_G)."""
        ws = self.mapping_ws(z, labels)
        return self.synthesis(ws), ws

    def forward(self, z: Tensor, labels: Tensor | None = None, truncation: float | None = None,
                noise_mode: NoiseMode = "random") -> Tensor:
        # The output is linear, as in StyleGAN2: D sees unclamped values; samples are clamped when saved.
        return self.synthesis(self.mapping_ws(z, labels, truncation), noise_mode)


# --------------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """One resolution of D: (from RGB), 3x3 conv, blurred stride-2 3x3 conv; a blurred stride-2
    1x1 skip without bias for `resnet`; the downsampled image passes on for `skip`."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 architecture: Architecture = "resnet", resample_filter: Sequence[float] = DEFAULT_FILTER,
                 conv_clamp: float | None = None, use_fp16: bool = False) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.architecture, self.use_fp16 = \
            in_channels, resolution, architecture, use_fp16
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, lrelu=True, conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, lrelu=True, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, lrelu=True, down=2, resample_filter=resample_filter,
                                 conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter)

    def forward(self, x: Tensor | None, img: Tensor) -> tuple[Tensor, Tensor | None]:
        with _precision(img if x is None else x, self.use_fp16):
            if x is not None:
                x = _block_input(x, self.use_fp16)
            if self.in_channels == 0 or self.architecture == "skip":
                y = self.fromrgb(_block_input(img, self.use_fp16))
                x = x + y if x is not None else y
                img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
            if self.architecture == "resnet":
                y = self.skip(x, gain=SQRT_HALF)
                x = y + self.conv1(self.conv0(x), gain=SQRT_HALF)
            else:
                x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(nn.Module):
    """Appends the standard deviation of features over groups of samples (a diversity cue for D):
    sample i is in group i mod (N / group_size); `num_channels` figures per group, each over its
    share of the channels."""

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        if n % g:
            g = math.gcd(g, n)  # the reference needs the batch to divide; any batch works here
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # (n/g, f)
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """D at 4x4: (from RGB), minibatch standard deviation, 3x3 conv, FC, output (the projection
    on the mapped label when conditional). Always float32."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: Architecture = "resnet", mbstd_group_size: int | None = 4,
                 mbstd_num_channels: int = 1, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.cmap_dim, self.architecture = cmap_dim, architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, lrelu=True)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, lrelu=True, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, lrelu=True)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if self.architecture == "skip":
                x = x + self.fromrgb(img.float())
            if self.mbstd is not None:
                x = self.mbstd(x)
            x = self.out(self.fc(self.conv(x).flatten(1)))
            if self.cmap_dim:
                x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class StyleGAN2Discriminator(nn.Module):
    """Blocks b<resolution> ... b8 and the 4x4 epilogue b4; conditional: a projection on the
    label mapped by D's own mapping network."""

    # What exists or changes shape only with labels (fine-tuning between conditional and not): the
    # label's mapping network, and the output layer (one logit, or the projection's cmap_dim).
    class_modules = ("mapping", "b4.out")

    def __init__(self, channels: int, resolution: int, num_classes: int = 0, channel_base: int = 32768,
                 channel_max: int = 512, architecture: Architecture = "resnet",
                 resample_filter: Sequence[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 num_fp16_res: int = 0, mbstd_group: int | None = 4, mbstd_channels: int = 1,
                 cmap_dim: int | None = None, mapping_layers: int = 8, conditional: bool = False) -> None:
        super().__init__()
        if conditional and num_classes < 2:
            raise ValueError(f"conditional needs a labelled data set (this one has {num_classes} classes)")
        log2 = stages(resolution, IMAGES) + 2
        self.num_classes = num_classes if conditional else 0
        self.img_resolution, self.img_channels = resolution, channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        fp16_resolution = _fp16_resolution(log2, num_fp16_res)
        width = {res: channels_at(res, channel_base, channel_max) for res in [*self.block_resolutions, 4]}
        cmap_dim = (width[4] if cmap_dim is None else cmap_dim) if self.num_classes else 0
        for res in self.block_resolutions:
            setattr(self, f"b{res}", DiscriminatorBlock(
                width[res] if res < resolution else 0, width[res], width[res // 2], res, channels,
                architecture=architecture, resample_filter=resample_filter, conv_clamp=conv_clamp,
                use_fp16=res >= fp16_resolution))
        if self.num_classes:
            self.mapping = MappingNetwork(0, self.num_classes, cmap_dim, mapping_layers, w_avg_beta=None)
        self.b4 = DiscriminatorEpilogue(width[4], cmap_dim, 4, channels, architecture, mbstd_group, mbstd_channels,
                                        conv_clamp)

    def blocks(self) -> list[DiscriminatorBlock]:
        """The blocks from the input side (the epilogue b4 not among them)."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def feature_blocks(self) -> list[list[nn.Module]]:
        """Each block b<resolution> ... b8 (the first holds from_rgb); the epilogue is the head."""
        return [[b] for b in self.blocks()]

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        img, h = x, None
        for block in self.blocks():
            h, img = block(h, img)
        cmap = None
        if self.num_classes:
            if labels is None:
                raise ValueError("this discriminator is conditional: pass class labels")
            with torch.autocast(x.device.type, enabled=False):
                cmap = self.mapping(None, F.one_hot(labels, self.num_classes).float())
        return self.b4(h, img, cmap).squeeze(1)


# --------------------------------------------------------------------------------------------
# Registered builders: the config's keys, with StyleGAN2-ADA's defaults (networks.py)
# --------------------------------------------------------------------------------------------


# The output is linear, as in the paper (no tanh): no output range.
@GENERATORS.register("stylegan2", accepts=IMAGES, output_range=None,
                     tiny={"latent_dim": 8, "w_dim": 8, "mapping_layers": 1, **TINY_WIDTHS})
def stylegan2_generator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    latent_dim: Annotated[int, Range(ge=1)] = 512,  # z_dim
    w_dim: Annotated[int, Range(ge=1)] = 512,
    mapping_layers: Annotated[int, Range(ge=1)] = 8,  # StyleGAN2-ADA's train.py uses 2 (`map`) for cifar and auto
    embed_features: Annotated[int, Range(ge=1)] | None = None,  # label embedding width (null: w_dim)
    layer_features: Annotated[int, Range(ge=1)] | None = None,  # mapping layers' width (null: w_dim)
    mapping_lr_multiplier: Annotated[float, Range(gt=0)] = 0.01,
    w_avg_beta: Annotated[float, Range(ge=0, lt=1)] = 0.995,
    channel_base: ChannelBase = 32768,  # feature maps at resolution r: min(channel_base / r, channel_max)
    channel_max: ChannelMax = 512,
    architecture: Architecture = "skip",
    resample_filter: list[float] = DEFAULT_FILTER,  # type: ignore[assignment]
    conv_clamp: Clamp = None,  # clamp convolution outputs to +-X (StyleGAN2-ADA's train.py: 256)
    num_fp16_res: Fp16Resolutions = 0,  # the N highest resolutions follow train.precision (train.py: 4)
    use_noise: bool = True,
    conditional: bool = False,
    style_mixing: Annotated[float, Range(ge=0, le=1)] = 0.9,
) -> StyleGAN2Generator:
    """StyleGAN2 G as StyleGAN2-ADA: mapping network, modulated convs, noise, FIR resampling, orig/skip/resnet."""
    return StyleGAN2Generator(channels, resolution, num_classes, latent_dim, w_dim, mapping_layers, embed_features,
                              layer_features, mapping_lr_multiplier, w_avg_beta, channel_base, channel_max,
                              architecture, resample_filter, conv_clamp, num_fp16_res, use_noise, conditional,
                              style_mixing)



@DISCRIMINATORS.register("stylegan2", accepts=IMAGES, tiny=TINY_WIDTHS)
def stylegan2_discriminator(
    channels: int,
    resolution: int,
    num_classes: int = 0,
    channel_base: ChannelBase = 32768,
    channel_max: ChannelMax = 512,
    architecture: Architecture = "resnet",
    resample_filter: list[float] = DEFAULT_FILTER,  # type: ignore[assignment]
    conv_clamp: Clamp = None,
    num_fp16_res: Fp16Resolutions = 0,
    mbstd_group: Annotated[int, Range(ge=1)] | None = 4,  # null: the whole batch
    mbstd_channels: Annotated[int, Range(ge=0)] = 1,  # 0: no minibatch standard deviation
    cmap_dim: Annotated[int, Range(ge=1)] | None = None,  # mapped label width (null: the 4x4 channels)
    mapping_layers: Annotated[int, Range(ge=1)] = 8,  # of the label's mapping network (conditional D)
    conditional: bool = False,
) -> StyleGAN2Discriminator:
    """StyleGAN2 D as StyleGAN2-ADA: FIR-blurred strided convs, orig/skip/resnet, minibatch std, label projection."""
    return StyleGAN2Discriminator(channels, resolution, num_classes, channel_base, channel_max, architecture,
                                  resample_filter, conv_clamp, num_fp16_res, mbstd_group, mbstd_channels, cmap_dim,
                                  mapping_layers, conditional)
