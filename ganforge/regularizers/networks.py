"""Changes to the networks themselves: spectral normalisation, weight clipping."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from ganforge.params import Range
from ganforge.registry import REGULARIZERS
from ganforge.regularizers.base import Regularizer


def apply_spectral_norm(module: nn.Module) -> None:
    """Spectral normalisation (Miyato et al. 2018) on every conv, linear and embedding weight, in place.
    (Layers with equalized learning rate, as in stylegan2, keep their own scaling.)"""
    for child in list(module.modules()):
        if getattr(child, "spectral_norm_exempt", False):
            continue
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)) and \
                not torch.nn.utils.parametrize.is_parametrized(child, "weight"):
            dim = 1 if isinstance(child, nn.ConvTranspose2d) else 0
            torch.nn.utils.parametrizations.spectral_norm(child, dim=dim)


@REGULARIZERS.register("spectral_norm")
class SpectralNorm(Regularizer):
    """Spectral normalisation (SNGAN) of every conv/linear weight of D and/or G."""

    incompatible = ("weight_clipping",)

    def __init__(self, discriminator: bool = True, generator: bool = False) -> None:
        self.discriminator, self.generator, self.weight = discriminator, generator, 1.0

    def setup(self, G: nn.Module, D: nn.Module) -> None:
        for applies, net, role in ((self.discriminator, D, "discriminator"), (self.generator, G, "generator")):
            # A second normalisation on top of a network's own would divide by sigma twice.
            if applies and getattr(net, "has_spectral_norm", False):
                raise ValueError(f"the {role} has its own spectral norm built in (biggan: BigGAN-PyTorch's, set "
                                 f"by its num_svs, num_sv_itrs and sn_eps); set {role}: false here")
        if self.discriminator:
            apply_spectral_norm(D)
        if self.generator:
            apply_spectral_norm(G)


@REGULARIZERS.register("weight_clipping")
class WeightClipping(Regularizer):
    """The original WGAN's Lipschitz constraint: clamp D's weights to [-clip, clip] after each step."""

    incompatible = ("gradient_penalty", "r1", "r2", "dragan", "spectral_norm")

    def __init__(self, clip: Annotated[float, Range(gt=0)] = 0.01) -> None:
        self.clip, self.weight = clip, 1.0

    @torch.no_grad()
    def after_d_step(self, D: nn.Module) -> None:
        for p in D.parameters():
            if p.requires_grad:  # FreezeD's frozen layers keep their loaded weights
                p.clamp_(-self.clip, self.clip)
