"""2D mixtures of Gaussians, the standard test bed for mode collapse."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor

from ganforge.data import DataInfo, TensorSource
from ganforge.params import Range
from ganforge.registry import DATASETS


class GaussianMixture(TensorSource):
    """Equal-weight isotropic Gaussians around fixed centres, drawn once from a fixed seed."""

    def __init__(self, name: str, centres: Tensor, std: float, num_samples: int, seed: int) -> None:
        super().__init__(DataInfo(name=name, shape=(2,)))
        self.centres = centres
        self.std = std
        self.num_samples = num_samples
        self.seed = seed

    def load(self) -> tuple[Tensor, None]:
        g = torch.Generator().manual_seed(self.seed)
        which = torch.randint(len(self.centres), (self.num_samples,), generator=g)
        noise = torch.randn(self.num_samples, 2, generator=g) * self.std
        return self.centres[which] + noise, None


@DATASETS.register("gaussian_grid")
def gaussian_grid(
    num_samples: Annotated[int, Range(ge=1)] = 100_000,
    std: Annotated[float, Range(gt=0)] = 0.05,
    seed: int = 0,
) -> GaussianMixture:
    """25 Gaussians at {-4,-2,0,2,4}^2 with std 0.05 (2D vectors)."""
    ticks = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    centres = torch.cartesian_prod(ticks, ticks)
    return GaussianMixture("gaussian_grid", centres, std, num_samples, seed)


@DATASETS.register("gaussian_ring")
def gaussian_ring(
    num_samples: Annotated[int, Range(ge=1)] = 100_000,
    radius: Annotated[float, Range(gt=0)] = 1.0,
    std: Annotated[float, Range(gt=0)] = 0.01,  # PacGAN's 2D-ring setting
    modes: Annotated[int, Range(ge=1)] = 8,
    seed: int = 0,
) -> GaussianMixture:
    """8 Gaussians evenly spaced on a circle of radius 1, std 0.01 (2D vectors)."""
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    centres = (torch.stack([angles.cos(), angles.sin()], dim=1) * radius).float()
    return GaussianMixture("gaussian_ring", centres, std, num_samples, seed)
