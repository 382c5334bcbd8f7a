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
        output_scale: Annotated[float, Range(gt=0)] = 1.0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        # The network works in unit scale; outputs are multiplied up to the data's scale.
        self.output_scale = output_scale
        self.net = _mlp([latent_dim] + [width] * depth + [data_dim], act)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(z) * self.output_scale


@DISCRIMINATORS.register("mlp")
class MLPDiscriminator(nn.Module):
    """Fully connected discriminator for vector data."""

    def __init__(
        self,
        data_dim: int,
        width: Annotated[int, Range(ge=1)] = 256,
        depth: Annotated[int, Range(ge=1)] = 3,
        act: Activation = "leaky_relu",
        input_scale: Annotated[float, Range(gt=0)] = 1.0,
    ) -> None:
        super().__init__()
        # Inputs are divided by the data's scale: with default initialisation the first layer's
        # kinks lie within about +-1, so data spread far wider would leave D nearly linear.
        self.input_scale = input_scale
        self.net = _mlp([data_dim] + [width] * depth + [1], act)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(x / self.input_scale).squeeze(1)
