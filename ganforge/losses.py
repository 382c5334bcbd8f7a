"""Adversarial losses on discriminator logits.

Each loss is a tiny class with `d_loss(real, fake)` and `g_loss(fake, real)`, both taking
the discriminator's raw outputs (one logit per sample) and returning a scalar mean. Each declares
its `shape` when it registers (ganforge.registry.LossShape), which regularizers that depend on how
the loss reads the logits (label smoothing) check.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ganforge.registry import LOSSES


class Loss:
    """Base class: subclasses define the two halves of the game."""

    # Whether g_loss needs D's logits on real data (relativistic losses do).
    g_needs_real = False

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        raise NotImplementedError


@LOSSES.register("non_saturating", shape="bce")
class NonSaturating(Loss):
    """Goodfellow et al. (2014) with G maximising log D(G(z)); the usual default."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        # -log sigmoid(r) - log(1 - sigmoid(f)) == softplus(-r) + softplus(f)
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return F.softplus(-fake).mean()


@LOSSES.register("minimax", shape="bce")
class Minimax(Loss):
    """The original minimax game: G minimises log(1 - D(G(z))) (weak gradients early on)."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        # log(1 - sigmoid(f)) == -softplus(f)
        return -F.softplus(fake).mean()


@LOSSES.register("hinge", shape="margin")
class Hinge(Loss):
    """Hinge loss (Lim & Ye 2017; SNGAN, BigGAN): D margins at +-1, G raises D's score."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return -fake.mean()


@LOSSES.register("wasserstein", shape="critic")
class Wasserstein(Loss):
    """Wasserstein critic loss (Arjovsky et al. 2017); pair with gradient_penalty."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return fake.mean() - real.mean()

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return -fake.mean()


@LOSSES.register("least_squares", shape="least_squares")
class LeastSquares(Loss):
    """LSGAN (Mao et al. 2017) with 0-1 targets: D pulls reals to 1 and fakes to 0."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return 0.5 * ((fake - 1.0) ** 2).mean()


@LOSSES.register("relativistic_average", shape="relativistic")
class RelativisticAverage(Loss):
    """RaGAN (Jolicoeur-Martineau 2018): D judges whether reals look more real than the average
    fake, and vice versa; G's loss needs D's outputs on reals too."""

    g_needs_real = True

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()

    def g_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        assert real is not None, "relativistic_average needs D's outputs on real data"
        return F.softplus(-(fake - real.mean())).mean() + F.softplus(real - fake.mean()).mean()
