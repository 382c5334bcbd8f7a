"""Projection (GAN inversion): the latent from which a trained generator best redraws an image.

As StyleGAN2-ADA's projector: StyleGAN2 optimises one w, started at w_avg (the mean of 10,000
mapped z), and its per-layer noise inputs, with Adam (lr 0.1, betas 0.9/0.999), a cosine
learning-rate ramp (up over the first 5%, down over the last 25%), Gaussian noise on w that
fades over the first 75%, and the noise-map regularisation (weight 1e5) that keeps the noise
from carrying the image. Other generators optimise z, started at 0 (the mean of the prior),
with a prior term that keeps |z|^2 near its typical value.

The distance is LPIPS-VGG (Zhang et al. 2018) when its weights are at hand. Offline they cannot
be fetched, so without them it is the pixel MSE plus a distance between the run's own
discriminator features of the two images (LPIPS' recipe on D's blocks: unit-normalised channels,
squared difference, spatial mean).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError, GanforgeError
from ganforge.finetune import discriminator_blocks
from ganforge.generation.drawing import LoadedGenerator

# LPIPS lives with the metrics (ppl uses it too); its loader and file names are this command's as well.
from ganforge.metrics.lpips import LPIPS, unit_channels
from ganforge.metrics.lpips import LPIPS_FILE as LPIPS_FILE
from ganforge.metrics.lpips import VGG_FILE as VGG_FILE
from ganforge.metrics.lpips import load_lpips as load_lpips
from ganforge.metrics.lpips import lpips_files as lpips_files
from ganforge.models import conditioning_classes
from ganforge.progress import Progress

W_AVG_SEED = 123  # StyleGAN2-ADA draws its 10,000 z for w_avg from RandomState(123)


@dataclass
class ProjectionResult:
    """The projected latent, its image and how the optimisation went."""

    latent: Tensor  # w (1, num_ws, w_dim) for stylegan2, z (1, latent_dim) otherwise
    space: str  # "w" or "z"
    image: Tensor  # the reconstruction (C, H, W), as G draws it
    noise: dict[str, Tensor] = field(default_factory=dict)  # stylegan2: the optimised noise maps
    frames: list[Tensor] = field(default_factory=list)  # reconstructions along the way
    frame_steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # per step
    initial_error: float = math.nan  # pixel MSE to the target at the starting latent
    final_error: float = math.nan  # pixel MSE to the target at the end
    distance: str = ""  # "lpips" or "pixels + D features"


# --------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by the last feature hook: the rest of D's forward is not needed."""


class DiscriminatorFeatures(nn.Module):
    """The outputs of D's feature blocks (forward hooks), from a frozen copy in eval mode."""

    def __init__(self, D: nn.Module) -> None:
        super().__init__()
        self.D = copy.deepcopy(D).eval().requires_grad_(False)
        self.blocks = discriminator_blocks(self.D)
        if not self.blocks:
            raise GanforgeError(f"projection cannot read features of a {type(D).__name__}; pass an LPIPS file")
        self.captured: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            block[-1].register_forward_hook(self._hook(last=i == len(self.blocks) - 1))

    def _hook(self, last: bool):  # noqa: ANN202
        def hook(module: nn.Module, inputs: object, output: Tensor | tuple[Tensor, ...]) -> None:
            # stylegan2's blocks return (features, downsampled image): the features.
            self.captured.append(output[0] if isinstance(output, tuple) else output)
            if last:
                raise _Stop

        return hook

    def forward(self, x: Tensor) -> list[Tensor]:
        self.captured = []
        try:
            self.D(x)  # the head never runs: labels are not needed
        except _Stop:
            pass
        return self.captured


def feature_distance(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """Mean over layers of the spatial mean of |unit(a) - unit(b)|^2 per position (N,)."""
    per_layer = [(unit_channels(x) - unit_channels(y)).pow(2).sum(1).reshape(len(x), -1).mean(1)
                 for x, y in zip(a, b)]
    return torch.stack(per_layer).mean(0)


# --------------------------------------------------------------------------------------------
# The optimisation
# --------------------------------------------------------------------------------------------


def learning_rate_ramp(t: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """StyleGAN2-ADA's projector schedule at fraction `t` of the steps: linear warm-up, cosine fade-out."""
    down = min(1.0, (1.0 - t) / rampdown)
    return (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, t / rampup)


def noise_regularization(maps: list[Tensor]) -> Tensor:
    """StyleGAN2's noise-map penalty: squared autocorrelation with a one-pixel shift (both axes),
    at every scale down to 8x8, so the maps stay white noise and cannot carry the image."""
    total = maps[0].new_zeros(()) if maps else torch.zeros(())
    for noise in maps:
        noise = noise.reshape(1, 1, *noise.shape[-2:])  # stylegan2 keeps each map as (H, W)
        while True:
            total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return total


def is_style_generator(G: nn.Module) -> bool:
    """A generator with a mapping network to w and a synthesis network (stylegan2)."""
    return all(hasattr(G, a) for a in ("mapping", "synthesis", "num_ws"))


@torch.no_grad()
def w_statistics(G: nn.Module, labels: Tensor | None, samples: int = 10_000, batch: int = 1_000
                 ) -> tuple[Tensor, float]:
    """(mean w (1, w_dim), the root mean squared distance of w from it) over `samples` mapped z."""
    g = torch.Generator().manual_seed(W_AVG_SEED)
    device = next(G.parameters()).device
    mapping = getattr(G, "mapping_w", G.mapping)  # float32 whatever the autocast
    ws = []
    for start in range(0, samples, batch):
        z = torch.randn(min(batch, samples - start), G.latent_dim, generator=g).to(device)
        y = labels.expand(len(z)) if labels is not None else None
        ws.append(mapping(z, y).float())
    w = torch.cat(ws)
    w_avg = w.mean(0, keepdim=True)
    return w_avg, float((w - w_avg).pow(2).sum(1).mean().sqrt())


def project(
    G: nn.Module,
    D: nn.Module | None,
    target: Tensor,
    steps: int = 1000,
    labels: Tensor | None = None,
    lpips: LPIPS | None = None,
    d_weight: float = 1.0,
    prior_weight: float = 1e-3,
    lr: float = 0.1,
    noise_weight: float = 1e5,
    initial_noise_factor: float = 0.05,
    noise_ramp: float = 0.75,
    w_avg_samples: int = 10_000,
    num_frames: int = 8,
    seed: int = 303,
    progress: bool = False,
) -> ProjectionResult:
    """Find the latent whose image best matches `target` (C, H, W) in G's output range.
    Distance: `lpips` if given, else pixel MSE + `d_weight` x D-feature distance (pixels alone
    without D). G and D are not changed (the work happens on copies)."""
    if steps < 1:
        raise ConfigError(f"--steps {steps}: project needs at least one step")
    device = next(G.parameters()).device
    G = copy.deepcopy(G).eval().requires_grad_(False)
    if conditioning_classes(G) and labels is None:
        raise GanforgeError("this generator is conditional: give the target's class (labels, or --class K)")
    labels = labels.to(device) if labels is not None else None
    target = target.to(device=device, dtype=torch.float32).unsqueeze(0)
    gen = torch.Generator().manual_seed(seed)

    # The latent to optimise, where it starts, and how G draws from it.
    style = is_style_generator(G)
    noise_maps: dict[str, Tensor] = {}
    if style:
        w_avg, scale = w_statistics(G, labels, w_avg_samples)
        latent = w_avg.clone()
        for name, buf in G.named_buffers():
            if "noise_const" in name:
                buf.copy_(torch.randn(buf.shape, generator=gen).to(device))
                noise_maps[name] = buf.requires_grad_(True)

        # The noise maps are the buffers of noise mode "const" (where G has modes; before them,
        # eval mode used the buffers).
        extra = {"noise_mode": "const"} if "const" in getattr(G, "noise_modes", ()) else {}

        def draw(v: Tensor) -> Tensor:
            return G.synthesis(v.unsqueeze(1).repeat(1, G.num_ws, 1), **extra)
    else:
        latent, scale = torch.zeros(1, G.latent_dim, device=device), 1.0

        def draw(v: Tensor) -> Tensor:
            return G(v, labels)

    with torch.no_grad():
        start_image = draw(latent).float()
    if start_image.shape != target.shape:
        raise ConfigError(f"--target: the image is {tuple(target.shape[1:])} but this generator draws "
                          f"{tuple(start_image.shape[1:])} (channels, height, width)")

    # The distance to the target.
    if lpips is not None:
        lpips = lpips.to(device)
        target_features = lpips.layer_features(target)

        def distance(image: Tensor) -> Tensor:
            return lpips.distance(lpips.layer_features(image), target_features).sum()
        kind = "lpips"
    else:
        features = DiscriminatorFeatures(D).to(device) if D is not None and d_weight > 0 else None
        target_features = features(target) if features is not None else None

        def distance(image: Tensor) -> Tensor:
            d = F.mse_loss(image, target)
            if features is not None:
                d = d + d_weight * feature_distance(features(image), target_features).sum()
            return d
        kind = "pixels + D features" if features is not None else "pixels"

    latent.requires_grad_(True)
    optimizer = torch.optim.Adam([latent, *noise_maps.values()], betas=(0.9, 0.999), lr=lr)
    frame_at = sorted({round(i * steps / max(num_frames - 1, 1)) for i in range(num_frames)})
    result = ProjectionResult(latent=latent, space="w" if style else "z", image=start_image[0], distance=kind)
    result.initial_error = float(F.mse_loss(start_image, target))
    if 0 in frame_at:
        result.frames.append(start_image[0].cpu())
        result.frame_steps.append(0)
    bar = Progress(steps, desc="projecting", enabled=progress, leave=False)
    for step in range(steps):
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = lr * learning_rate_ramp(t)
        # Noise on the latent early on explores around it; it fades to nothing by `noise_ramp`.
        jitter = scale * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp) ** 2
        image = draw(latent + jitter * torch.randn(latent.shape, generator=gen).to(device))
        loss = distance(image.float())
        if noise_maps:
            loss = loss + noise_weight * noise_regularization(list(noise_maps.values()))
        if not style and prior_weight > 0:
            loss = loss + prior_weight * (latent.pow(2).mean() - 1.0) ** 2  # |z|^2 near latent_dim
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.losses.append(loss.detach().item())
        with torch.no_grad():
            for buf in noise_maps.values():  # keep the maps zero-mean, unit-variance
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
            if step + 1 in frame_at:
                result.frames.append(draw(latent).float()[0].cpu())
                result.frame_steps.append(step + 1)
        bar.update()
    bar.close()

    with torch.no_grad():
        final = draw(latent).float()
    result.image = final[0].cpu()
    result.final_error = float(F.mse_loss(final, target))
    latent = latent.detach()
    result.latent = (latent.unsqueeze(1).repeat(1, G.num_ws, 1) if style else latent).cpu()
    result.noise = {name: buf.detach().cpu() for name, buf in noise_maps.items()}
    return result


# --------------------------------------------------------------------------------------------
# From files: the run's networks and the target image
# --------------------------------------------------------------------------------------------


def load_networks(path: str | Path, use_ema: bool = True, device: str = "auto"
                  ) -> tuple[LoadedGenerator, nn.Module | None]:
    """The (EMA) generator and the discriminator (None where the checkpoint has none) of a
    checkpoint file or run folder."""
    from ganforge.build import rebuild_networks
    from ganforge.checkpoint import load_checkpoint
    from ganforge.run import find_checkpoint

    file, sha = find_checkpoint(path)
    ckpt = load_checkpoint(file, sha)
    # D is None for an imported generator without its discriminator: pixels (or LPIPS) only.
    nets = rebuild_networks(ckpt, file, ("G_ema" if use_ema else "G", "D"), device)
    G = nets.G_ema if use_ema else nets.G
    return LoadedGenerator(G, nets.info, int(ckpt.step), file, ckpt.config), nets.D


def load_target(path: str | Path, channels: int, resolution: int) -> Tensor:
    """An image file, centre-cropped to a square and resized (Lanczos) to the generator's size,
    as (C, H, W) in [-1, 1]; decoded as the data loaders decode (ganforge.data.decode)."""
    from ganforge.data.decode import BadImage, ImageOptions, decode

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--target: no image file at {path}")
    try:
        arr = decode(path, ImageOptions(resolution, channels)).pixels.astype(np.float32)
    except BadImage as e:
        raise ConfigError(f"--target: {path} could not be read as an image ({e})") from None
    return torch.from_numpy(arr.transpose(2, 0, 1) / 127.5 - 1.0)
