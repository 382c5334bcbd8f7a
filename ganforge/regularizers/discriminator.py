"""Terms on D's outputs and on its other passes: consistency (bCR), label smoothing, LeCam, the AC-GAN classifier."""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge import augment
from ganforge.accepts import Accepts
from ganforge.params import Range
from ganforge.registry import REGULARIZERS
from ganforge.regularizers.base import Every, Regularizer, Term, Weight


# bCR compares the step's own D(real), D(fake) with D's outputs on flipped and shifted copies, as
# StudioGAN reuses its pass: only the copies go through D again.
@REGULARIZERS.register("consistency", accepts=Accepts(vectors=False),
                       d_passes=("D(translation(xflip(real)))", "D(translation(xflip(fake)))"))
class Consistency(Regularizer):
    """Balanced consistency regularization (bCR, Zhao et al. 2020): D's output should not change
    under flip-and-translate of reals and fakes. As StudioGAN's: a random horizontal flip, then a
    shift by up to 1/8 of the size with reflection padding, compared with D's outputs of the
    step's own pass."""

    def __init__(self, weight: Weight = 10.0, every: Every = 1, fake_weight: Weight = 10.0) -> None:
        self.weight, self.every, self.fake_weight = weight, every, fake_weight

    def terms(self, D: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None, fake_labels: Tensor | None,
              gen: torch.Generator | None, real_logits: Tensor | None = None, fake_logits: Tensor | None = None
              ) -> tuple[Tensor, Tensor]:
        """The unweighted real and fake consistency terms. D's outputs on the images themselves
        are the step's own (`real_logits`, `fake_logits`) where given, as StudioGAN reuses them."""
        def shaken(x: Tensor) -> Tensor:
            return augment.translation(augment.xflip(x, gen), gen, padding="reflect")

        real, fake = real.detach(), fake.detach()
        real_out = D(real, labels) if real_logits is None else real_logits
        fake_out = D(fake, fake_labels) if fake_logits is None else fake_logits
        real_term = (real_out - D(shaken(real), labels)).pow(2).mean()
        fake_term = (fake_out - D(shaken(fake), fake_labels)).pow(2).mean()
        return real_term, fake_term

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        real_term, fake_term = self.terms(D, real, fake, labels, fake_labels, gen)
        return real_term + fake_term

    def d_term(self, update, D, real, fake, labels, fake_labels, real_logits, fake_logits, gen):
        # Two weights (lambda_real, lambda_fake), so the one-factor weighting of the base class does not fit.
        if update % self.every:
            return None
        real_term, fake_term = self.terms(D, real, fake, labels, fake_labels, gen, real_logits, fake_logits)
        return Term(self.every * (self.weight * real_term + self.fake_weight * fake_term), real_term + fake_term)


# BCE with target t on raw logits only (the loss's declared shape).
@REGULARIZERS.register("label_smoothing", loss_shapes=("bce",))
class LabelSmoothing(Regularizer):
    """One-sided label smoothing (Salimans et al. 2016): D's real target is `real_target`, not 1."""

    def __init__(self, real_target: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.9) -> None:
        self.real_target, self.weight = real_target, 1.0

    def d_outputs(self, real_logits, fake_logits):
        # BCE with target t adds (1 - t) * (softplus(r) - softplus(-r)) = (1 - t) * r to the loss.
        return (1.0 - self.real_target) * real_logits.float().mean()


@REGULARIZERS.register("lecam")
class LeCam(Regularizer):
    """LeCam (Tseng et al. 2021): pull D(real) towards the moving average of D(fake) and back.
    As google/lecam-gan (its BigGAN-CIFAR setup, `ema_losses(start_itr=1000)`, decay 0.9): for
    the first `start` steps the anchors copy D's mean outputs, then they average them with
    `decay`, updated before the term; the term is added once more than `start` steps are done."""

    def __init__(self, weight: Weight = 0.3, decay: Annotated[float, Range(ge=0, lt=1)] = 0.9,
                 start: Annotated[int, Range(ge=0)] = 1000) -> None:
        self.weight, self.decay, self.start = weight, decay, start
        self.anchor_real: Tensor | None = None
        self.anchor_fake: Tensor | None = None
        self.steps = 0  # training steps done (the reference's `itr`)

    def d_outputs(self, real_logits, fake_logits):
        real_mean, fake_mean = real_logits.detach().float().mean(), fake_logits.detach().float().mean()
        decay = self.decay if self.steps >= self.start else 0.0
        if self.anchor_real is None:  # the reference's initial value, overwritten at once when start > 0
            self.anchor_real, self.anchor_fake = real_mean, fake_mean
        else:
            self.anchor_real = torch.lerp(real_mean, self.anchor_real.to(real_mean.device), decay)
            self.anchor_fake = torch.lerp(fake_mean, self.anchor_fake.to(fake_mean.device), decay)
        if self.steps <= self.start:
            return None
        return (F.relu(real_logits.float() - self.anchor_fake).pow(2).mean()
                + F.relu(self.anchor_real - fake_logits.float()).pow(2).mean())

    def after_step(self, step: int) -> None:
        self.steps = step

    def state_dict(self) -> dict[str, Any]:
        return {"anchor_real": self.anchor_real, "anchor_fake": self.anchor_fake, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor_real, self.anchor_fake = state.get("anchor_real"), state.get("anchor_fake")
        self.steps = int(state.get("steps", 0))


# Its tiny networks: a conditional generator and a discriminator with an auxiliary classifier.
# D's classifier learns on reals only (`fake_weight: 0`), G's on its fakes.
@REGULARIZERS.register("ac_gan", accepts=Accepts(needs_labels=True),
                       d_passes=("classify(real)",), g_passes=("classify(fake)",),
                       networks={"generator": {"kind": "resnet", "conditional": True},
                                 "discriminator": {"kind": "resnet", "auxiliary_classifier": True}})
class AuxiliaryClassifier(Regularizer):
    """AC-GAN (Odena et al. 2017): D's auxiliary head classifies real images and G makes fakes of
    the asked class; needs a discriminator built with `auxiliary_classifier: true`. D's classifier
    trains on reals only, as StudioGAN's AC-GAN; `fake_weight` > 0 adds its cross-entropy on the
    fakes too (the paper's L_C: 1.0). Both players' classifier terms see D's inputs as D does
    (augmented, if augmentation is on)."""

    def __init__(self, weight: Weight = 1.0, fake_weight: Weight = 0.0) -> None:
        self.weight, self.fake_weight = weight, fake_weight

    def setup(self, G: nn.Module, D: nn.Module) -> None:
        if not hasattr(D, "classify"):
            raise ValueError("ac_gan needs a discriminator with an auxiliary classifier "
                             "(discriminator.auxiliary_classifier: true)")
        if not getattr(G, "num_classes", 0):
            raise ValueError("ac_gan needs a conditional generator (generator.conditional: true)")

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        loss = F.cross_entropy(D.classify(real).float(), labels)
        if self.fake_weight:
            loss = loss + self.fake_weight * F.cross_entropy(D.classify(fake.detach()).float(), fake_labels)
        return loss

    def g_penalty(self, G, D, z, labels, fake, gen):
        fake = G(z, labels) if fake is None else fake
        return F.cross_entropy(D.classify(fake).float(), labels)
