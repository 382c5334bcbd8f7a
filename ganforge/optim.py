"""Optimizers by short name. Builders take the parameters to optimise plus explicit settings."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import torch
from torch import nn

from ganforge.params import Range
from ganforge.registry import OPTIMIZERS

LearningRate = Annotated[float, Range(gt=0.0)]
Beta = Annotated[float, Range(ge=0.0, lt=1.0)]
Decay = Annotated[float, Range(ge=0.0)]
Eps = Annotated[float, Range(gt=0.0)]
Implementation = Literal["auto", "fused", "foreach", "loop"]


def _implementation(cls: type[torch.optim.Optimizer], params: list[nn.Parameter], choice: str) -> dict[str, Any]:
    """Keyword arguments selecting the update kernel. `auto` takes the fused kernel where this
    torch has one for the parameters' device (one kernel for all parameters: on this project's
    CPU machine it made the Adam step over a DCGAN many times faster), else torch's default."""
    supports_fused = "fused" in inspect.signature(cls).parameters
    if choice == "fused" or (choice == "auto" and supports_fused):
        if not supports_fused:
            raise ValueError(f"{cls.__name__} has no fused implementation in torch {torch.__version__}")
        if choice == "fused" or _fused_ok(cls, params):
            return {"fused": True}
        return {}
    if choice == "foreach":
        return {"foreach": True}
    if choice == "loop":
        return {"foreach": False}
    return {}


def _fused_ok(cls: type[torch.optim.Optimizer], params: list[nn.Parameter]) -> bool:
    """Whether the fused kernel accepts these parameters (device and dtype), tried on a copy."""
    try:
        probe = [torch.zeros(1, device=p.device, dtype=p.dtype, requires_grad=True) for p in params[:1]]
        cls(probe, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


@OPTIMIZERS.register("adam")
def adam(
    params: Iterable[nn.Parameter],
    lr: LearningRate = 2e-4,
    betas: tuple[Beta, Beta] = (0.5, 0.999),
    weight_decay: Decay = 0.0,
    eps: Eps = 1e-8,
    implementation: Implementation = "auto",
) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2014); DCGAN's betas (0.5, 0.999) by default."""
    params = list(params)
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps,
                            **_implementation(torch.optim.Adam, params, implementation))


@OPTIMIZERS.register("adamw")
def adamw(
    params: Iterable[nn.Parameter],
    lr: LearningRate = 2e-4,
    betas: tuple[Beta, Beta] = (0.5, 0.999),
    weight_decay: Decay = 0.01,
    eps: Eps = 1e-8,
    implementation: Implementation = "auto",
) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""
    params = list(params)
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps,
                             **_implementation(torch.optim.AdamW, params, implementation))


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    params: Iterable[nn.Parameter],
    lr: LearningRate = 5e-5,
    alpha: Beta = 0.99,
    momentum: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.0,
    weight_decay: Decay = 0.0,
    eps: Eps = 1e-8,
    implementation: Implementation = "auto",
) -> torch.optim.Optimizer:
    """RMSprop; the original WGAN's optimizer (lr 5e-5)."""
    params = list(params)
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, momentum=momentum, weight_decay=weight_decay, eps=eps,
                               **_implementation(torch.optim.RMSprop, params, implementation))
