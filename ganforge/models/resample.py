"""StyleGAN2's FIR resampling and resampling convolutions, in plain PyTorch (no custom CUDA code).

upfirdn2d (upsample by inserting zeros, pad, convolve with a 2-D FIR filter, downsample) is a
reshape, a pad and one depthwise convolution. A convolution that doubles the resolution is a
strided transposed convolution followed by the filter; one that halves it is the filter
followed by a strided convolution. The padding arithmetic follows StyleGAN2-ADA's
`conv2d_resample`, so a network with the same weights gives the same outputs (tests/
test_parity_stylegan2.py compares them to the reference's within 1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# The binomial filter of StyleGAN2 (Karras et al. 2020).
DEFAULT_FILTER = (1, 3, 3, 1)


def fir_filter(taps: Sequence[float]) -> Tensor:
    """The filter as the networks store it: taps normalised to sum 1 (float32), as their outer
    product (2-D) when there are fewer than 8 of them and as they are (1-D, applied along each
    axis) otherwise, so that the buffer has the reference's shape."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"resample_filter must be a list of filter taps, got {list(taps)}")
    if sum(float(t) for t in taps) == 0:  # from the numbers given: the tensor may be a meta tensor (size checks)
        raise ValueError(f"resample_filter {list(taps)} sums to 0; its taps must have a non-zero sum")
    if f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def _filter_size(f: Tensor) -> int:
    return int(f.shape[-1])


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0, 0, 0),
              gain: float = 1.0) -> Tensor:
    """Upsample `x` (N, C, H, W) by inserting up-1 zeros after each pixel, pad it (x0, x1, y0, y1;
    negative values crop), convolve every channel with the FIR filter `f` (times `gain`) and keep
    every `down`-th pixel."""
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    # A true convolution (flipped filter; conv2d correlates), scaled so that 2-D and separable
    # filters have the same gain; one filter per channel.
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c, stride=down)
    x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, -1), groups=c, stride=(1, down))
    return F.conv2d(x, f[None, None, :, None].expand(c, 1, -1, 1), groups=c, stride=(down, 1))


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x upsampling through the filter: (N, C, H, W) -> (N, C, 2H, 2W)."""
    fw = _filter_size(f)
    p0, p1 = (fw + 1) // 2, (fw - 2) // 2
    return upfirdn2d(x, f, up=2, pad=(p0, p1, p0, p1), gain=4.0)


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x downsampling through the filter: (N, C, H, W) -> (N, C, H/2, W/2)."""
    fw = _filter_size(f)
    p0, p1 = (fw - 1) // 2, (fw - 2) // 2
    return upfirdn2d(x, f, down=2, pad=(p0, p1, p0, p1))


def _transposed_weight(w: Tensor, groups: int) -> Tensor:
    """A conv2d weight (out, in/groups, k, k) as conv_transpose2d wants it (in, out/groups, k, k)."""
    out_channels, in_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_channels // groups, kh, kw)


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1, padding: int = 0,
                    groups: int = 1) -> Tensor:
    """conv2d(x, w) (a correlation, padded by `padding`), with the resolution doubled (`up` 2) or
    halved (`down` 2) through the FIR filter `f`. Upsampling is a transposed convolution then the
    filter; downsampling the filter then a strided convolution (1x1 kernels: the other way
    round, which is cheaper); the padding is taken once, relative to the upsampled image."""
    k = int(w.shape[-1])
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    if f is None:
        raise ValueError("resampling needs a filter")
    fw = _filter_size(f)
    if down == 2 and up == 1:
        p0, p1 = padding + (fw - 1) // 2, padding + (fw - 2) // 2
        if k == 1:
            return F.conv2d(upfirdn2d(x, f, down=2, pad=(p0, p1, p0, p1)), w, groups=groups)
        return F.conv2d(upfirdn2d(x, f, pad=(p0, p1, p0, p1)), w, stride=2, groups=groups)
    if up == 2 and down == 1:
        p0, p1 = padding + (fw + 1) // 2, padding + (fw - 2) // 2
        if k == 1:
            return upfirdn2d(F.conv2d(x, w, groups=groups), f, up=2, pad=(p0, p1, p0, p1), gain=4.0)
        # The transposed convolution makes the (k - 1) border the upsampled image needs; what it
        # makes beyond the filter's padding it is cropped from (negative padding), what it lacks is padded.
        p0, p1 = p0 - (k - 1), p1 - (k - 2)
        inner = max(min(-p0, -p1), 0)
        x = F.conv_transpose2d(x, _transposed_weight(w, groups), stride=2, padding=inner, groups=groups)
        return upfirdn2d(x, f, pad=(p0 + inner, p1 + inner, p0 + inner, p1 + inner), gain=4.0)
    raise ValueError(f"conv2d_resample supports up=2 or down=2, not up={up}, down={down}")


def bias_act(x: Tensor, b: Tensor | None = None, lrelu: bool = False, gain: float = 1.0,
             clamp: float | None = None) -> Tensor:
    """x + b (along dim 1), then leaky ReLU (slope 0.2) if `lrelu`, times `gain`, clamped to +-clamp."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if lrelu:
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def is_reduced_precision(device_type: str) -> bool:
    """Whether an autocast to a reduced precision is active for this device type."""
    return torch.is_autocast_enabled(device_type)
