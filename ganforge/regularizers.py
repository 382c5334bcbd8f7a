"""Regularizers: penalties added to the discriminator (or generator) loss.

A regularizer returns its unweighted penalty; the training loop multiplies it by `weight` and,
for lazy regularization (StyleGAN2), by `every`, and applies it every `every`-th update.
Penalties that differentiate through D are computed in float32 even under mixed precision.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import Tensor, nn

from ganforge.params import Range
from ganforge.registry import REGULARIZERS

Weight = Annotated[float, Range(ge=0.0)]
Every = Annotated[int, Range(ge=1)]


class Regularizer:
    """Base class. `applies_to` is 'd' or 'g'; `every` > 1 makes it lazy."""

    applies_to: Literal["d", "g"] = "d"

    def __init__(self, weight: float, every: int = 1) -> None:
        self.weight = weight
        self.every = every

    def __call__(self, D: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None,
                 gen: torch.Generator | None = None) -> Tensor:
        """The unweighted penalty; `gen` is the step's noise stream for any randomness."""
        raise NotImplementedError


def input_gradient_norms(D: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    """Per-sample L2 norms of dD(x)/dx, with the graph kept so the norm can be trained on."""
    x = x.detach().requires_grad_(True)
    out = D(x, labels)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1).norm(2, dim=1)


@REGULARIZERS.register("gradient_penalty")
class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on real/fake interpolates."""

    def __init__(self, weight: Weight = 10.0, every: Every = 1, target: Annotated[float, Range(ge=0)] = 1.0):
        super().__init__(weight, every)
        self.target = target

    def __call__(self, D: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None,
                 gen: torch.Generator | None = None) -> Tensor:
        n = min(len(real), len(fake))
        real, fake = real[:n].detach(), fake[:n].detach()
        alpha = torch.rand([n] + [1] * (real.dim() - 1), device=real.device, dtype=real.dtype, generator=gen)
        mixed = torch.lerp(real, fake, alpha)
        norms = input_gradient_norms(D, mixed, labels[:n] if labels is not None else None)
        return ((norms - self.target) ** 2).mean()


@REGULARIZERS.register("r1")
class R1(Regularizer):
    """R1 (Mescheder et al. 2018): (gamma/2) ||grad D(x)||^2 on real data; lazy with `every`."""

    def __init__(self, weight: Weight = 10.0, every: Every = 16) -> None:
        # weight is gamma; the penalty below carries the 1/2.
        super().__init__(weight, every)

    def __call__(self, D: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None,
                 gen: torch.Generator | None = None) -> Tensor:
        return 0.5 * (input_gradient_norms(D, real, labels) ** 2).mean()
