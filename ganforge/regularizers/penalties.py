"""Penalties through D's input gradients: WGAN-GP, R1, R2, DRAGAN."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from ganforge.params import Range
from ganforge.registry import REGULARIZERS
from ganforge.regularizers.base import Every, Regularizer, Term, Weight


def input_gradient_norms(D: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    """Per-sample L2 norms of dD(x)/dx, with the graph kept so the norm can be trained on."""
    return _outputs_and_gradient_norms(D, x, labels)[1]


def _outputs_and_gradient_norms(D: nn.Module, x: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """D(x) and the per-sample L2 norms of dD(x)/dx (graph kept)."""
    x = x.detach().requires_grad_(True)
    out = D(x, labels)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return out, grad.flatten(1).norm(2, dim=1)


@REGULARIZERS.register("gradient_penalty", d_passes=("D(interpolate)",))
class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on real/fake interpolates."""

    incompatible = ("weight_clipping",)

    def __init__(self, weight: Weight = 10.0, every: Every = 1, target: Annotated[float, Range(ge=0)] = 1.0):
        self.weight, self.every, self.target = weight, every, target

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        n = min(len(real), len(fake))
        real, fake = real[:n].detach(), fake[:n].detach()
        alpha = torch.rand([n] + [1] * (real.dim() - 1), device=real.device, dtype=real.dtype, generator=gen)
        norms = input_gradient_norms(D, torch.lerp(real, fake, alpha), labels[:n] if labels is not None else None)
        return ((norms - self.target) ** 2).mean()


@REGULARIZERS.register("r1", d_passes=("D(real)",), reports_reals=True)
class R1(Regularizer):
    """R1 (Mescheder et al. 2018): (gamma/2) ||grad D(x)||^2 on real data; lazy with `every`."""

    incompatible = ("weight_clipping",)

    def __init__(self, weight: Weight = 10.0, every: Every = 16) -> None:
        self.weight, self.every = weight, every  # weight is gamma; the penalty carries the 1/2

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        return self._penalty(D, real, labels)[0]

    @staticmethod
    def _penalty(D: nn.Module, real: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        logits, norms = _outputs_and_gradient_norms(D, real, labels)
        return 0.5 * (norms**2).mean(), logits

    def d_term(self, update, D, real, fake, labels, fake_labels, real_logits, fake_logits, gen):
        if update % self.every:
            return None
        value, logits = self._penalty(D, real, labels)
        # Lazy, its pass on the reals is one more that StyleGAN2-ADA's ADA counts (the Dreg phase
        # reports `Loss/signs/real` too); every update, the reference's one pass serves both.
        return Term(self.weight * self.every * value, value, real_logits=logits.detach() if self.every > 1 else None)


@REGULARIZERS.register("r2", d_passes=("D(fake)",))
class R2(Regularizer):
    """R2 (Mescheder et al. 2018): (gamma/2) ||grad D(x)||^2 on generated data; lazy with `every`."""

    incompatible = ("weight_clipping",)

    def __init__(self, weight: Weight = 10.0, every: Every = 16) -> None:
        self.weight, self.every = weight, every

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        return 0.5 * (input_gradient_norms(D, fake, fake_labels) ** 2).mean()


@REGULARIZERS.register("dragan", d_passes=("D(jittered real)",))
class DRAGAN(Regularizer):
    """DRAGAN (Kodali et al. 2017): (||grad D|| - 1)^2 at points jittered around the real data."""

    incompatible = ("weight_clipping",)

    def __init__(self, weight: Weight = 10.0, every: Every = 1, noise: Annotated[float, Range(gt=0)] = 0.5) -> None:
        self.weight, self.every, self.noise = weight, every, noise

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        real = real.detach()
        jitter = self.noise * real.std() * torch.rand(real.shape, device=real.device, dtype=real.dtype, generator=gen)
        alpha = torch.rand([len(real)] + [1] * (real.dim() - 1), device=real.device, dtype=real.dtype, generator=gen)
        norms = input_gradient_norms(D, real + alpha * jitter, labels)
        return ((norms - 1.0) ** 2).mean()
