"""DCGAN (Radford et al., 2015) for any power-of-two resolution from 16 to 128.

One family, sized by arguments: the generator upsamples a 4x4 map by strided transposed
convolutions, halving the width at each doubling; the discriminator mirrors it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from torch import Tensor, nn

from ganforge.accepts import Accepts
from ganforge.models import init_dcgan_weights, layer_groups, stages
from ganforge.params import Range
from ganforge.registry import DISCRIMINATORS, GENERATORS

Width = Annotated[int, Range(ge=1, le=4096)]
# 16, 32, 64 or 128 px (the constructors reject other sizes).
IMAGES = Accepts(images=True, vectors=False, min_resolution=16, max_resolution=128, powers_of_two=True)
TINY_WIDTHS = {"base_width": 4, "max_width": 8}


def _widths(stages: int, base_width: int, max_width: int) -> list[int]:
    """Widths from the 4x4 map down to the last hidden map: base * 2^(stages-1) ... base."""
    return [min(base_width * 2 ** (stages - 1 - i), max_width) for i in range(stages)]


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


@GENERATORS.register("dcgan", accepts=IMAGES, tiny={"latent_dim": 8, **TINY_WIDTHS}, output_range=(-1.0, 1.0))
class DCGANGenerator(nn.Module):
    """DCGAN generator: transposed convolutions from a 4x4 map, BatchNorm, ReLU, tanh output;
    no biases, as pytorch/examples (bias: true puts one on the output layer)."""

    def __init__(
        self,
        channels: int,
        resolution: int,
        latent_dim: Annotated[int, Range(ge=1)] = 100,
        base_width: Width = 64,
        max_width: Width = 512,
        norm: Literal["batch", "none"] = "batch",
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        widths = _widths(stages(resolution, IMAGES), base_width, max_width)
        inner_bias = norm == "none"  # a normalisation layer's shift makes a bias redundant
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=inner_bias),
            _norm2d(norm, widths[0]),
            nn.ReLU(inplace=True),
        ]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=inner_bias), _norm2d(norm, w_out),
                       nn.ReLU(inplace=True)]
        # pytorch/examples' DCGAN has no bias on its output layer; bias: true adds one.
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=bias), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


@DISCRIMINATORS.register("dcgan", accepts=IMAGES, tiny=TINY_WIDTHS)
class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: strided convolutions to a 4x4 map, LeakyReLU(0.2), one logit; no
    biases, as pytorch/examples (bias: true puts them on the first and last layers)."""

    def __init__(
        self,
        channels: int,
        resolution: int,
        base_width: Width = 64,
        max_width: Width = 512,
        norm: Literal["batch", "instance", "layer", "none"] = "batch",
        bias: bool = False,
    ) -> None:
        super().__init__()
        widths = list(reversed(_widths(stages(resolution, IMAGES), base_width, max_width)))
        # No normalisation on the first layer, as in the paper; pytorch/examples' DCGAN has no bias
        # on its first and last layers either (bias: true adds them).
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=bias),
                                   nn.LeakyReLU(0.2, inplace=True)]
        inner_bias = norm == "none"
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=inner_bias), _norm2d(norm, w_out),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=bias))
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def feature_blocks(self) -> list[list[nn.Module]]:
        """Each strided conv with its norm and activation, from the input side (the logit's conv is the head)."""
        return layer_groups(self.net)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(x).flatten()
