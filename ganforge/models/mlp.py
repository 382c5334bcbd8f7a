"""Fully connected generator and discriminator: vectors (the 2D mixtures) or flattened images.

On image data (the original GAN paper's MNIST nets were fully connected) D flattens its input
and G reshapes its output to (channels, resolution, resolution), in [-1, 1] through a tanh like
the other image generators.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from torch import Tensor, nn

from ganforge.models import activation, layer_groups
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


def sample_shape(data_dim: int, channels: int, resolution: int) -> tuple[int, ...]:
    """The shape of one sample: (data_dim,) for vectors, (channels, resolution, resolution) for images."""
    if channels and resolution:
        return (channels, resolution, resolution)
    if data_dim:
        return (data_dim,)
    raise ValueError("needs the data's shape: data_dim for vectors, or channels and resolution for images")


# Any data; a tanh bounds image samples (vectors are scaled to the data's range).
@GENERATORS.register("mlp", tiny={"latent_dim": 4, "width": 8, "depth": 1}, output_range=(-1.0, 1.0))
class MLPGenerator(nn.Module):
    """Fully connected generator for vector data (e.g. the 2D Gaussian mixtures) or flattened images."""

    def __init__(
        self,
        data_dim: int = 0,
        latent_dim: Annotated[int, Range(ge=1)] = 16,
        width: Annotated[int, Range(ge=1)] = 256,
        depth: Annotated[int, Range(ge=1)] = 3,
        act: Activation = "relu",
        output_scale: Annotated[float, Range(gt=0)] = 1.0,
        channels: int = 0,
        resolution: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.shape = sample_shape(data_dim, channels, resolution)
        self.is_image = len(self.shape) == 3
        # Vectors: the network works in unit scale; outputs are multiplied up to the data's scale.
        # Images: tanh into [-1, 1], the range of every image data set.
        self.output_scale = output_scale
        self.net = _mlp([latent_dim] + [width] * depth + [math.prod(self.shape)], act)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        out = self.net(z)
        if self.is_image:
            return out.tanh().view(z.shape[0], *self.shape)
        return out * self.output_scale


@DISCRIMINATORS.register("mlp", tiny={"width": 8, "depth": 1})  # any data
class MLPDiscriminator(nn.Module):
    """Fully connected discriminator for vector data or flattened images."""

    def __init__(
        self,
        data_dim: int = 0,
        width: Annotated[int, Range(ge=1)] = 256,
        depth: Annotated[int, Range(ge=1)] = 3,
        act: Activation = "leaky_relu",
        input_scale: Annotated[float, Range(gt=0)] = 1.0,
        channels: int = 0,
        resolution: int = 0,
    ) -> None:
        super().__init__()
        shape = sample_shape(data_dim, channels, resolution)
        # Inputs are divided by the data's scale: with default initialisation the first layer's
        # kinks lie within about +-1, so data spread far wider would leave D nearly linear.
        self.input_scale = input_scale
        self.net = _mlp([math.prod(shape)] + [width] * depth + [1], act)

    def feature_blocks(self) -> list[list[nn.Module]]:
        """Each linear layer with its activation, from the input side (the logit's layer is the head)."""
        return layer_groups(self.net)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(x.flatten(1) / self.input_scale).squeeze(1)
