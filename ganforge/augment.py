"""Differentiable augmentations of D's inputs (DiffAugment, ADA), in pure PyTorch.

Every operation takes a batch (N, C, H, W) in [-1, 1], a torch.Generator for its randomness
(the step's noise stream, so augmentations replay exactly on resume and split the same way over
ranks), and is differentiable with respect to the batch: gradients reach G through augmented
fakes. `strength` in [0, 1] scales each operation (ADA's probability p applies per sample).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def _uniform(n: int, x: Tensor, gen: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> Tensor:
    return torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype, generator=gen) * (high - low) + low


def color(x: Tensor, gen: torch.Generator | None) -> Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5), per sample."""
    n = x.shape[0]
    x = x + (_uniform(n, x, gen) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(n, x, gen) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(n, x, gen) + 0.5) + mean


def translation(x: Tensor, gen: torch.Generator | None, ratio: float = 0.125, padding: str = "zeros") -> Tensor:
    """Shift each sample by up to `ratio` of its size in x and y (whole pixels). `padding`: zeros
    shifted in (DiffAugment), or `reflect`: the image mirrored at its border without repeating the
    edge pixel (torch's reflect padding, as StudioGAN's bCR translation)."""
    n, _, h, w = x.shape
    shift_y = torch.randint(-int(h * ratio), int(h * ratio) + 1, (n,), device=x.device, generator=gen)
    shift_x = torch.randint(-int(w * ratio), int(w * ratio) + 1, (n,), device=x.device, generator=gen)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - shift_y.view(n, 1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w) - shift_x.view(n, 1, 1)
    if padding == "reflect":
        ys, xs = _reflect(ys, h), _reflect(xs, w)
    inside = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)
    index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    moved = torch.gather(x.flatten(2), 2, index).view_as(x)
    return moved * inside


def _reflect(i: Tensor, size: int) -> Tensor:
    """Indices in [-(size - 1), 2 (size - 1)] mirrored into [0, size) at the border pixels."""
    return (size - 1) - ((size - 1) - i.abs()).abs()


def cutout(x: Tensor, gen: torch.Generator | None, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` x the image size at a random place in each sample."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device, generator=gen)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device, generator=gen)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = cy - ch // 2, cx - cw // 2  # the hole may hang over the border, as in DiffAugment
    hole = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def xflip(x: Tensor, gen: torch.Generator | None) -> Tensor:
    """Mirror each sample left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=gen) < 0.5
    return torch.where(flip, x.flip(3), x)


OPERATIONS = {"color": color, "translation": translation, "cutout": cutout, "xflip": xflip}


def diff_augment(x: Tensor, policy: list[str], gen: torch.Generator | None) -> Tensor:
    """DiffAugment (Zhao et al. 2020): every operation of `policy` on every sample."""
    for name in policy:
        x = OPERATIONS[name](x, gen)
    return x


def adaptive_augment(x: Tensor, policy: list[str], p: float | Tensor, gen: torch.Generator | None) -> Tensor:
    """ADA-style: each operation applies to each sample with probability p (Karras et al. 2020)."""
    for name in policy:
        chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=gen) < p
        x = torch.where(chosen, OPERATIONS[name](x, gen), x)
    return x


def instance_noise(x: Tensor, std: float, gen: torch.Generator | None) -> Tensor:
    """Gaussian noise of the given std added to D's inputs (Sonderby et al. 2016)."""
    if std <= 0:
        return x
    return x + std * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=gen)


# -- StyleGAN2-ADA's augmentation pipeline -----------------------------------------------------------
#
# Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"; reference:
# NVlabs/stylegan2-ada-pytorch, training/augment.py (AugmentPipe). Each operation applies to each
# sample with probability p. The geometric ones compose one 3x3 matrix per sample (output pixel ->
# input pixel, pixel units, origin at the image centre) applied in a single resampling; the colour
# ones compose one 4x4 matrix per sample applied once.

BLIT_OPS = ("xflip", "rotate90", "xint")
GEOM_OPS = ("scale", "rotate", "aniso", "xfrac")
COLOR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
ADA_OPS = BLIT_OPS + GEOM_OPS + COLOR_OPS  # the order in which they are composed, as in the reference

# The reference's presets (train.py --augpipe) that need no filtering or corruption ops.
PIPELINES: dict[str, tuple[str, ...]] = {
    "blit": BLIT_OPS,
    "geom": GEOM_OPS,
    "color": COLOR_OPS,
    "bg": BLIT_OPS + GEOM_OPS,
    "bgc": ADA_OPS,
}

# The reference's ranges: translations relative to the image size, stds of log2 factors, 1 = full circle.
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.2, 0.5, 1.0, 1.0


def _affine2d(a: Tensor, b: Tensor, c: Tensor, d: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    """Per-sample 3x3 homogeneous matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (N,) entries."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, tx, c, d, ty, zero, zero, one], dim=1).view(-1, 3, 3)


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    zero = torch.zeros_like(sx)
    return _affine2d(sx, zero, zero, sy, zero, zero)


def _rotate2d(cos: Tensor, sin: Tensor) -> Tensor:
    zero = torch.zeros_like(cos)
    return _affine2d(cos, -sin, sin, cos, zero, zero)


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    one, zero = torch.ones_like(tx), torch.zeros_like(tx)
    return _affine2d(one, zero, zero, one, tx, ty)


def _reflected_to_unit(coord: Tensor, size: int) -> Tensor:
    """Pixel coordinates along an axis of `size` pixels (origin at its centre), reflected about the
    edge pixels' centres into the image, in grid_sample's units ([-1, 1] spans the outer edges)."""
    last = max(size - 1, 1)
    index = coord + (size - 1) / 2
    index = last - (torch.remainder(index, 2 * last) - last).abs()  # a triangle wave: repeated reflection
    return (2 * index + 1) / size - 1


def _color_bases(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """4x4 generators of the colour ops: luma projection v v^T, chroma projection, cross product
    with the luma axis (hue's rotation generator), and the offset column (brightness)."""
    # Filled on the device, not copied from host lists: a host-to-device copy would sync.
    rgb = torch.ones(4, dtype=dtype, device=device)
    rgb[3] = 0.0
    luma = torch.outer(rgb, rgb) / 3  # v v^T for the luma axis v = (1, 1, 1, 0) / sqrt(3)
    chroma = torch.diag(rgb) - luma
    cross = torch.zeros(4, 4, dtype=dtype, device=device)  # u -> v x u
    cross[0, 1] = cross[1, 2] = cross[2, 0] = -1 / 3 ** 0.5
    cross = cross - cross.T
    offset = torch.zeros(4, 4, dtype=dtype, device=device)
    offset[:3, 3] = 1.0
    return luma, chroma, cross, offset


# aten's codes for grid_sample's bilinear mode and border padding.
_BILINEAR, _BORDER = 0, 1


class _GridSample(torch.autograd.Function):
    """Bilinear, border-padded `grid_sample` (align_corners=False) of images at a fixed grid,
    differentiable to any order in the images, as the reference's `grid_sample_gradfix`: R1
    through ADA needs the second derivative, which torch's own grid_sample lacks in some versions
    (torch 2.11 on an H100: "derivative for aten::grid_sampler_2d_backward is not implemented";
    torch 2.14 has it).
    Resampling is linear in the images, so its backward is its adjoint and the adjoint's backward
    is the resampling again. The grid gets no gradient (ADA's grids come from random draws)."""

    @staticmethod
    def forward(ctx: Any, images: Tensor, grid: Tensor) -> Tensor:
        if ctx.needs_input_grad[1]:
            raise ValueError("_GridSample: the sampling grid must not require a gradient")
        ctx.save_for_backward(grid)
        ctx.shape = images.shape
        return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                               align_corners=False)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (grid,) = ctx.saved_tensors
        return _GridSampleAdjoint.apply(grad, grid, ctx.shape), None


class _GridSampleAdjoint(torch.autograd.Function):
    """The adjoint of `_GridSample` (its gradient with respect to the images)."""

    @staticmethod
    def forward(ctx: Any, grad: Tensor, grid: Tensor, shape: torch.Size) -> Tensor:
        ctx.save_for_backward(grid)
        images = grad.new_zeros(shape)  # only its shape and dtype are read: no gradient for the grid is asked
        grad_images, _ = torch.ops.aten.grid_sampler_2d_backward(grad.contiguous(), images, grid, _BILINEAR,
                                                                 _BORDER, False, [True, False])
        return grad_images

    @staticmethod
    def backward(ctx: Any, grad2: Tensor) -> tuple[Tensor, None, None]:
        (grid,) = ctx.saved_tensors
        return _GridSample.apply(grad2, grid), None, None


def ada_augment_ops(x: Tensor, ops: tuple[str, ...] | list[str], p: float | Tensor,
                    gen: torch.Generator | None) -> Tensor:
    """The named ops of StyleGAN2-ADA's pipeline, each applied to each sample with probability p.

    Deviation from the reference: the geometric ops resample once with bilinear `grid_sample`,
    where the reference upsamples 2x, resamples and downsamples through a sym6 wavelet low-pass
    filter (sharper, fewer aliases). Padding is reflection about the edge pixels' centres, as
    there, and repeats without limit (the reference pads at most one image width, then zeros).
    For 1-channel images hue and saturation are skipped and the rest acts on the single channel
    through the mean of the matrix's colour rows, as in the reference. Randomness comes only from
    `gen`, and as much is drawn whatever p is, so the stream advances alike at every p. A sample
    that no op changed is returned bit-identical; p may be a 0-d tensor on x's device (no host sync).
    """
    unknown = sorted(set(ops) - set(ADA_OPS))
    if unknown:
        raise ValueError(f"unknown ADA operation(s) {unknown}; valid: {', '.join(ADA_OPS)}")
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"ADA augments N x C x H x W images with C = 1 or 3, got shape {tuple(x.shape)}")
    if not isinstance(p, Tensor) and p <= 0:
        return x
    n, channels, height, width = x.shape
    device = x.device
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    # autocast would run the matrix products at low precision; the pipeline is cheap in float32.
    with torch.autocast(device_type=device.type, enabled=False):
        if isinstance(p, Tensor):
            p = p.to(device=device, dtype=dtype)
            p_rot = 1 - torch.sqrt((1 - p).clamp(0, 1))
        else:
            p_rot = 1 - math.sqrt(min(max(1 - p, 0.0), 1.0))
        images = x.to(dtype)

        def rand(*shape: int) -> Tensor:
            return torch.rand(n, *shape, dtype=dtype, device=device, generator=gen)

        def randn(*shape: int) -> Tensor:
            return torch.randn(n, *shape, dtype=dtype, device=device, generator=gen)

        def chosen(prob: Tensor) -> Tensor:
            return rand() < prob

        # Geometric ops: g_inv maps an output pixel to the input pixel it samples.
        eye3 = torch.eye(3, dtype=dtype, device=device).expand(n, 3, 3)
        g_inv = eye3
        if "xflip" in ops:
            flip = torch.where(chosen(p), torch.floor(rand() * 2), 0.0)
            g_inv = g_inv @ _scale2d(1 - 2 * flip, torch.ones_like(flip))
        if "rotate90" in ops:
            quarter = torch.where(chosen(p), torch.floor(rand() * 4), 0.0)
            # Exact cosines (1, 0, -1, 0) and sines (0, 1, 0, -1) of k quarter turns: no blur.
            cos = torch.where(quarter == 3, 0.0, 1 - quarter)
            sin = torch.where(quarter == 0, 0.0, 2 - quarter)
            g_inv = g_inv @ _rotate2d(cos, sin)
        if "xint" in ops:
            shift = torch.where(chosen(p).unsqueeze(1), (rand(2) * 2 - 1) * XINT_MAX, 0.0)
            g_inv = g_inv @ _translate2d(-torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height))
        if "scale" in ops:
            s = torch.where(chosen(p), torch.exp2(randn() * SCALE_STD), 1.0)
            g_inv = g_inv @ _scale2d(1 / s, 1 / s)
        # Rotation is split into a pre- and a post-rotation around the anisotropic scaling, each
        # with probability p_rot = 1 - sqrt(1 - p), so that a sample is rotated at all with probability p.
        for stage in ("pre", "post"):
            if stage == "post" and "aniso" in ops:
                s = torch.where(chosen(p), torch.exp2(randn() * ANISO_STD), 1.0)
                g_inv = g_inv @ _scale2d(1 / s, s)
            if "rotate" in ops:
                theta = torch.where(chosen(p_rot), (rand() * 2 - 1) * torch.pi * ROTATE_MAX, 0.0)
                g_inv = g_inv @ _rotate2d(torch.cos(theta), torch.sin(theta))
        if "xfrac" in ops:
            shift = torch.where(chosen(p).unsqueeze(1), randn(2) * XFRAC_STD, 0.0)
            g_inv = g_inv @ _translate2d(-shift[:, 0] * width, -shift[:, 1] * height)
        if g_inv is not eye3:
            # Each output pixel centre through g_inv to the input position it samples, in pixel
            # indices, reflected about the edge pixels' centres (the reference's padding), then to
            # grid_sample's units, where [-1, 1] spans the outer edges (align_corners=False). Built in
            # pixel units rather than by affine_grid so that flips, quarter turns and integer shifts
            # land exactly on pixel centres (bit-exact for power-of-two sizes).
            ys = torch.arange(height, dtype=dtype, device=device) - (height - 1) / 2
            xs = torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2
            centres = torch.stack([xs.expand(height, width), ys.view(height, 1).expand(height, width),
                                   torch.ones(height, width, dtype=dtype, device=device)], dim=-1)
            sources = torch.einsum("nij,hwj->nhwi", g_inv[:, :2, :], centres)
            grid = torch.stack([_reflected_to_unit(sources[..., 0], width),
                                _reflected_to_unit(sources[..., 1], height)], dim=-1)
            moved = _GridSample.apply(images, grid)
            # Untouched samples keep their exact pixels (bilinear at pixel centres is exact only up to rounding).
            changed = (g_inv != eye3).flatten(1).any(dim=1)
            images = torch.where(changed.view(n, 1, 1, 1), moved, images)

        # Colour ops: c maps (r, g, b, 1) to the new colour; each is the identity plus a multiple
        # of one generator, so an op not applied contributes exactly the identity, and an identity
        # c maps every (finite) pixel to itself exactly, with no mask needed as for resampling.
        eye4 = torch.eye(4, dtype=dtype, device=device).expand(n, 4, 4)
        c = eye4
        luma, chroma, cross, offset = _color_bases(dtype, device)
        if "brightness" in ops:
            b = torch.where(chosen(p), randn() * BRIGHTNESS_STD, 0.0)
            c = (eye4 + b.view(n, 1, 1) * offset) @ c
        if "contrast" in ops:
            k = torch.where(chosen(p), torch.exp2(randn() * CONTRAST_STD), 1.0)
            c = (eye4 + (k.view(n, 1, 1) - 1) * (luma + chroma)) @ c
        if "lumaflip" in ops:
            flip = torch.where(chosen(p), torch.floor(rand() * 2), 0.0)
            c = (eye4 - 2 * flip.view(n, 1, 1) * luma) @ c  # Householder reflection of the luma axis
        if "hue" in ops and channels > 1:
            theta = torch.where(chosen(p), (rand() * 2 - 1) * torch.pi * HUE_MAX, 0.0).view(n, 1, 1)
            c = (eye4 + (torch.cos(theta) - 1) * chroma + torch.sin(theta) * cross) @ c  # rotation about luma
        if "saturation" in ops and channels > 1:
            s = torch.where(chosen(p), torch.exp2(randn() * SATURATION_STD), 1.0)
            c = (eye4 + (s.view(n, 1, 1) - 1) * chroma) @ c
        if c is not eye4:
            flat = images.flatten(2)
            if channels == 3:
                recoloured = c[:, :3, :3] @ flat + c[:, :3, 3:]
            else:
                grey = c[:, :3, :].mean(dim=1, keepdim=True)  # (N, 1, 4): what a grey input maps to
                recoloured = flat * grey[:, :, :3].sum(dim=2, keepdim=True) + grey[:, :, 3:]
            images = recoloured.view_as(images)
    return images.to(x.dtype)


def ada_augment(x: Tensor, p: float | Tensor, gen: torch.Generator | None, pipeline: str = "bgc") -> Tensor:
    """StyleGAN2-ADA's augmentation (Karras et al. 2020): the ops of `pipeline` (a key of
    PIPELINES) with probability p each; the identity, bit for bit, at p = 0."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown ADA pipeline {pipeline!r}; valid: {', '.join(PIPELINES)}")
    return ada_augment_ops(x, PIPELINES[pipeline], p, gen)
