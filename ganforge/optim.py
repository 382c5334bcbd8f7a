"""Optimizers by short name. Builders take the parameters to optimise plus explicit settings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import torch
from torch import nn

from ganforge.params import Range
from ganforge.registry import OPTIMIZERS

LearningRate = Annotated[float, Range(gt=0.0)]
Beta = Annotated[float, Range(ge=0.0, lt=1.0)]
Decay = Annotated[float, Range(ge=0.0)]
Eps = Annotated[float, Range(gt=0.0)]


@OPTIMIZERS.register("adam")
def adam(
    params: Iterable[nn.Parameter],
    lr: LearningRate = 2e-4,
    betas: tuple[Beta, Beta] = (0.5, 0.999),
    weight_decay: Decay = 0.0,
    eps: Eps = 1e-8,
) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2014); DCGAN's betas (0.5, 0.999) by default."""
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)


@OPTIMIZERS.register("adamw")
def adamw(
    params: Iterable[nn.Parameter],
    lr: LearningRate = 2e-4,
    betas: tuple[Beta, Beta] = (0.5, 0.999),
    weight_decay: Decay = 0.01,
    eps: Eps = 1e-8,
) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    params: Iterable[nn.Parameter],
    lr: LearningRate = 5e-5,
    alpha: Beta = 0.99,
    momentum: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.0,
    weight_decay: Decay = 0.0,
    eps: Eps = 1e-8,
) -> torch.optim.Optimizer:
    """RMSprop; the original WGAN's optimizer (lr 5e-5)."""
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, momentum=momentum, weight_decay=weight_decay, eps=eps)
