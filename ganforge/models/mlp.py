"""Fully connected generator and discriminator for vector data (the 2D mixtures)."""

from __future__ import annotations

from typing import Annotated, Literal

from torch import Tensor, nn

from ganforge.models import activation
from ganforge.params import Range
from ganforge.registry import DISCRIMINATORS, GENERATORS

Activation = Literal["relu", "leaky_relu", "silu", "tanh"]


def _mlp(sizes: list[int], act: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


@GENERATORS.register("mlp")
class MLPGenerator(nn.Module):
    """Fully connected generator for vector data (e.g. the 2D Gaussian mixtures)."""

    def __init__(
        self,
        data_dim: int,
        latent_dim: Annotated[int, Range(ge=1)] = 16,
        width: Annotated[int, Range(ge=1)] = 256,
        depth: Annotated[int, Range(ge=1)] = 3,
        act: Activation = "relu",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = _mlp([latent_dim] + [width] * depth + [data_dim], act)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(z)


@DISCRIMINATORS.register("mlp")
class MLPDiscriminator(nn.Module):
    """Fully connected discriminator for vector data."""

    def __init__(
        self,
        data_dim: int,
        width: Annotated[int, Range(ge=1)] = 256,
        depth: Annotated[int, Range(ge=1)] = 3,
        act: Activation = "leaky_relu",
    ) -> None:
        super().__init__()
        self.net = _mlp([data_dim] + [width] * depth + [1], act)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(x).squeeze(1)
