"""Generator and discriminator architectures, registered by short name.

Every generator has a `latent_dim` attribute and maps (z, labels=None) to samples; every
discriminator maps (x, labels=None) to one logit per sample, shape (N,). A conditional
generator also has `num_classes` > 0; one without it ignores labels.
"""

from __future__ import annotations

import math

from torch import nn

from ganforge.accepts import Accepts


def init_dcgan_weights(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.InstanceNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def conditioning_classes(G: nn.Module) -> int:
    """How many classes a generator is conditioned on (0: unconditional)."""
    return int(getattr(G, "num_classes", 0) or 0)


def reads_labels(D: nn.Module) -> bool:
    """Whether a discriminator needs the class of every sample it judges (a projection D)."""
    # `num_classes` says so; a class embedding (`embed`) says so for discriminators that do not set it.
    return bool(conditioning_classes(D)) or isinstance(getattr(D, "embed", None), nn.Module)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (frozen ones included)."""
    return sum(p.numel() for p in module.parameters())


def activation(name: str) -> nn.Module:
    """An activation layer by name."""
    return {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2), "silu": nn.SiLU(), "tanh": nn.Tanh()}[name]



def layer_groups(net: nn.Sequential) -> list[list[nn.Module]]:
    """A plain stack's layers grouped from each conv or linear layer to the next, the last one
    (the logit's) left out: the feature blocks of a DCGAN or MLP discriminator."""
    groups: list[list[nn.Module]] = []
    for m in net:
        if isinstance(m, (nn.Conv2d, nn.Linear)) or not groups:
            groups.append([m])
        else:
            groups[-1].append(m)
    return groups[:-1]


def stages(resolution: int, accepts: Accepts) -> int:
    """Number of doublings from a 4x4 map to `resolution` (2 at 16 px); a resolution the
    architecture's declaration `accepts` does not take is a ValueError naming what it takes."""
    if not accepts.takes_resolution(resolution):
        raise ValueError(f"resolution {resolution} is not supported; use {accepts.describe_resolutions()} "
                         "(data.resolution)")
    return int(math.log2(resolution)) - 2
