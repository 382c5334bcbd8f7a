"""Regularizers: everything a GAN recipe adds to the plain game.

Each regularizer is a small class that overrides only the hooks it needs; the training loop
calls every hook at one fixed place of the step:

- `setup(G, D)`: once, after the networks are built (spectral normalisation);
- `augment(x, gen, step)`: D's inputs, real and fake, in both steps (DiffAugment, ADA, noise);
- `d_outputs(real_logits, fake_logits)`: a term on D's outputs (label smoothing, LeCam);
- `d_penalty(D, real, fake, labels, gen)`: a term needing its own passes through D (gradient
  penalty, R1, R2, DRAGAN, consistency, the AC-GAN classifier);
- `g_logits(fake_logits, step, epoch)`: which fakes the G loss uses (top-k);
- `g_penalty(G, D, z, labels, fake, gen)`: a term on the generator (orthogonality, path
  length, the AC-GAN classifier);
- `after_d_step(D)`: after D's optimizer step (weight clipping);
- `observe(real_logits, step)`: D's outputs on reals, for adaptive schedules (ADA).

Those hooks return unweighted values. `d_term` and `g_term` turn them into what the step adds to
its loss: `weight` x the output term at every update; `weight` x `every` x the penalty at every
`every`-th update and nothing in between (lazy regularization, StyleGAN2: applied every k-th
update, a penalty counts k times). A regularizer whose weighting is not one factor overrides
`d_term`/`g_term` itself. The `D` that penalties see is D as the loop uses it: its inputs are the
images before augmentation, and the augmenting regularizers run inside the call (as
StyleGAN2-ADA's `run_D`), so input-gradient penalties include the augmentation's Jacobian.
State that changes during training (ADA's p, LeCam's anchors) is in `state_dict` and saved in
checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge import augment
from ganforge.accepts import Accepts
from ganforge.params import Range
from ganforge.registry import REGULARIZERS

Weight = Annotated[float, Range(ge=0.0)]
Every = Annotated[int, Range(ge=1)]
Policy = Literal["color", "translation", "cutout", "xflip"]


@dataclass(frozen=True)
class Term:
    """What a regularizer adds to a loss at one update: `loss` (weighted, with the lazy factor)
    goes into the backward pass, `value` (the unweighted figure) into the log."""

    loss: Tensor
    value: Tensor


class Regularizer:
    """Base class: every hook does nothing."""

    weight: float = 1.0
    every: int = 1
    # Other regularizer kinds (or losses, or architectures) this one cannot be combined with.
    incompatible: tuple[str, ...] = ()
    accepts = Accepts()  # the data it works with (ganforge.accepts)

    def d_term(self, update: int, D: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None,
               fake_labels: Tensor | None, real_logits: Tensor, fake_logits: Tensor,
               gen: torch.Generator | None) -> Term | None:
        """What this regularizer adds to D's loss at D update `update` (None: nothing)."""
        value = self.d_outputs(real_logits, fake_logits)
        if value is not None:
            return Term(self.weight * value, value)
        if update % self.every:
            return None
        value = self.d_penalty(D, real, fake, labels, fake_labels, gen)
        return None if value is None else Term(self.weight * self.every * value, value)

    def g_term(self, update: int, G: nn.Module, D: nn.Module, z: Tensor, labels: Tensor | None, fake: Tensor,
               gen: torch.Generator | None) -> Term | None:
        """What this regularizer adds to G's loss at G update `update` (None: nothing)."""
        if update % self.every:
            return None
        value = self.g_penalty(G, D, z, labels, fake, gen)
        return None if value is None else Term(self.weight * self.every * value, value)

    def setup(self, G: nn.Module, D: nn.Module) -> None:
        """Change the networks once, before the optimizers see them."""

    def augment(self, x: Tensor, gen: torch.Generator | None, step: int) -> Tensor:
        """D's input (real or fake) as D should see it."""
        return x

    def d_outputs(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor | None:
        """An unweighted term on D's outputs of this step."""
        return None

    def d_penalty(self, D: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None,
                  fake_labels: Tensor | None, gen: torch.Generator | None) -> Tensor | None:
        """An unweighted penalty that runs D itself (every `every` D updates)."""
        return None

    def g_logits(self, fake_logits: Tensor, step: int, epoch: int = 0) -> Tensor:
        """The fake logits the generator loss uses (`epoch`: the data stream's epoch)."""
        return fake_logits

    def g_penalty(self, G: nn.Module, D: nn.Module, z: Tensor, labels: Tensor | None, fake: Tensor,
                  gen: torch.Generator | None) -> Tensor | None:
        """An unweighted penalty on the generator (every `every` G updates)."""
        return None

    def after_d_step(self, D: nn.Module) -> None:
        """After D's optimizer step."""

    def observe(self, real_logits: Tensor, step: int) -> None:
        """D's outputs on this step's reals."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @property
    def has_d_terms(self) -> bool:
        """Whether it adds to D's loss too (its G-side figure is then logged as NAME_g)."""
        cls = type(self)
        hooks = ("d_penalty", "d_outputs", "d_term")
        return any(getattr(cls, hook) is not getattr(Regularizer, hook) for hook in hooks)


# --------------------------------------------------------------------------------------------
# Penalties through D's input gradients
# --------------------------------------------------------------------------------------------


def input_gradient_norms(D: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    """Per-sample L2 norms of dD(x)/dx, with the graph kept so the norm can be trained on."""
    x = x.detach().requires_grad_(True)
    out = D(x, labels)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1).norm(2, dim=1)


@REGULARIZERS.register("gradient_penalty")
class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on real/fake interpolates."""

    incompatible = ("weight_clipping",)

    def __init__(self, weight: Weight = 10.0, every: Every = 1, target: Annotated[float, Range(ge=0)] = 1.0):
        self.weight, self.every, self.target = weight, every, target

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        n = min(len(real), len(fake))
        real, fake = real[:n].detach(), fake[:n].detach()
        alpha = torch.rand([n] + [1] * (real.dim() - 1), device=real.device, dtype=real.dtype, generator=gen)
        norms = input_gradient_norms(D, torch.lerp(real, fake, alpha), labels[:n] if labels is not None else None)
        return ((norms - self.target) ** 2).mean()


@REGULARIZERS.register("r1")
class R1(Regularizer):
    """R1 (Mescheder et al. 2018): (gamma/2) ||grad D(x)||^2 on real data; lazy with `every`."""

    incompatible = ("weight_clipping",)

    def __init__(self, weight: Weight = 10.0, every: Every = 16) -> None:
        self.weight, self.every = weight, every  # weight is gamma; the penalty carries the 1/2

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        return 0.5 * (input_gradient_norms(D, real, labels) ** 2).mean()


@REGULARIZERS.register("r2")
class R2(Regularizer):
    """R2 (Mescheder et al. 2018): (gamma/2) ||grad D(x)||^2 on generated data; lazy with `every`."""

    incompatible = ("weight_clipping",)

    def __init__(self, weight: Weight = 10.0, every: Every = 16) -> None:
        self.weight, self.every = weight, every

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        return 0.5 * (input_gradient_norms(D, fake, fake_labels) ** 2).mean()


@REGULARIZERS.register("dragan")
class DRAGAN(Regularizer):
    """DRAGAN (Kodali et al. 2017): (||grad D|| - 1)^2 at points jittered around the real data."""

    incompatible = ("weight_clipping",)

    def __init__(self, weight: Weight = 10.0, every: Every = 1, noise: Annotated[float, Range(gt=0)] = 0.5) -> None:
        self.weight, self.every, self.noise = weight, every, noise

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        real = real.detach()
        jitter = self.noise * real.std() * torch.rand(real.shape, device=real.device, dtype=real.dtype, generator=gen)
        alpha = torch.rand([len(real)] + [1] * (real.dim() - 1), device=real.device, dtype=real.dtype, generator=gen)
        norms = input_gradient_norms(D, real + alpha * jitter, labels)
        return ((norms - 1.0) ** 2).mean()


# --------------------------------------------------------------------------------------------
# Terms on D's outputs
# --------------------------------------------------------------------------------------------


@REGULARIZERS.register("consistency")
class Consistency(Regularizer):
    """Balanced consistency regularization (bCR, Zhao et al. 2020): D's output should not change
    under flip-and-translate of reals and fakes."""

    accepts = Accepts(vectors=False)

    def __init__(self, weight: Weight = 10.0, every: Every = 1, fake_weight: Weight = 10.0) -> None:
        self.weight, self.every, self.fake_weight = weight, every, fake_weight

    def terms(self, D: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None, fake_labels: Tensor | None,
              gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The unweighted real and fake consistency terms."""
        def shaken(x: Tensor) -> Tensor:
            return augment.translation(augment.xflip(x, gen), gen)

        real, fake = real.detach(), fake.detach()
        real_term = (D(real, labels) - D(shaken(real), labels)).pow(2).mean()
        fake_term = (D(fake, fake_labels) - D(shaken(fake), fake_labels)).pow(2).mean()
        return real_term, fake_term

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        real_term, fake_term = self.terms(D, real, fake, labels, fake_labels, gen)
        return real_term + fake_term

    def d_term(self, update, D, real, fake, labels, fake_labels, real_logits, fake_logits, gen):
        # Two weights (lambda_real, lambda_fake), so the one-factor weighting of the base class does not fit.
        if update % self.every:
            return None
        real_term, fake_term = self.terms(D, real, fake, labels, fake_labels, gen)
        return Term(self.every * (self.weight * real_term + self.fake_weight * fake_term), real_term + fake_term)


@REGULARIZERS.register("label_smoothing")
class LabelSmoothing(Regularizer):
    """One-sided label smoothing (Salimans et al. 2016): D's real target is `real_target`, not 1."""

    incompatible = ("hinge", "wasserstein", "least_squares", "relativistic_average")  # BCE on raw logits only

    def __init__(self, real_target: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.9) -> None:
        self.real_target, self.weight = real_target, 1.0

    def d_outputs(self, real_logits, fake_logits):
        # BCE with target t adds (1 - t) * (softplus(r) - softplus(-r)) = (1 - t) * r to the loss.
        return (1.0 - self.real_target) * real_logits.float().mean()


@REGULARIZERS.register("lecam")
class LeCam(Regularizer):
    """LeCam (Tseng et al. 2021): pull D(real) towards the moving average of D(fake) and back."""

    def __init__(self, weight: Weight = 0.3, decay: Annotated[float, Range(ge=0, lt=1)] = 0.99) -> None:
        self.weight, self.decay = weight, decay
        self.anchor_real: Tensor | None = None
        self.anchor_fake: Tensor | None = None

    def d_outputs(self, real_logits, fake_logits):
        real_mean, fake_mean = real_logits.detach().float().mean(), fake_logits.detach().float().mean()
        if self.anchor_real is None:
            self.anchor_real, self.anchor_fake = real_mean, fake_mean
        else:
            self.anchor_real = torch.lerp(real_mean, self.anchor_real.to(real_mean.device), self.decay)
            self.anchor_fake = torch.lerp(fake_mean, self.anchor_fake.to(fake_mean.device), self.decay)
        return (F.relu(real_logits.float() - self.anchor_fake).pow(2).mean()
                + F.relu(self.anchor_real - fake_logits.float()).pow(2).mean())

    def state_dict(self) -> dict[str, Any]:
        return {"anchor_real": self.anchor_real, "anchor_fake": self.anchor_fake}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor_real, self.anchor_fake = state.get("anchor_real"), state.get("anchor_fake")


@REGULARIZERS.register("ac_gan")
class AuxiliaryClassifier(Regularizer):
    """AC-GAN (Odena et al. 2017): D's auxiliary head classifies reals and fakes, and G makes
    fakes of the asked class; needs a discriminator built with `auxiliary_classifier: true`.
    Both players' classifier terms see D's inputs as D does (augmented, if augmentation is on)."""

    accepts = Accepts(needs_labels=True)

    def __init__(self, weight: Weight = 1.0, fake_weight: Weight = 1.0) -> None:
        self.weight, self.fake_weight = weight, fake_weight

    def setup(self, G: nn.Module, D: nn.Module) -> None:
        if not hasattr(D, "classify"):
            raise ValueError("ac_gan needs a discriminator with an auxiliary classifier "
                             "(discriminator.auxiliary_classifier: true)")
        if not getattr(G, "num_classes", 0):
            raise ValueError("ac_gan needs a conditional generator (generator.conditional: true)")

    def d_penalty(self, D, real, fake, labels, fake_labels, gen):
        return (F.cross_entropy(D.classify(real).float(), labels)
                + self.fake_weight * F.cross_entropy(D.classify(fake.detach()).float(), fake_labels))

    def g_penalty(self, G, D, z, labels, fake, gen):
        return F.cross_entropy(D.classify(fake).float(), labels)


# --------------------------------------------------------------------------------------------
# Terms on the generator
# --------------------------------------------------------------------------------------------


@REGULARIZERS.register("orthogonal")
class Orthogonal(Regularizer):
    """BigGAN's orthogonal regularization of G: (1/2) ||W W^T * (1 - I)||_F^2 over its weight
    matrices, whose gradient is BigGAN-PyTorch's `ortho`: 2 (W W^T * (1 - I)) W, times `weight`."""

    def __init__(self, weight: Weight = 1e-4, every: Every = 1) -> None:
        self.weight, self.every = weight, every

    def g_penalty(self, G, D, z, labels, fake, gen):
        total = fake.new_zeros(())
        for name, p in G.named_parameters():
            # BigGAN leaves the shared class embedding out.
            if p.dim() < 2 or "embed" in name or "shared" in name or not p.requires_grad:
                continue
            w = p.flatten(1)
            gram = w @ w.T
            off_diagonal = gram * (1 - torch.eye(len(gram), device=w.device, dtype=w.dtype))
            # The 1/2 makes d/dW equal to the reference's 2 (W W^T * (1 - I)) W (without it, 4x).
            total = total + 0.5 * off_diagonal.pow(2).sum()
        return total


@REGULARIZERS.register("path_length")
class PathLength(Regularizer):
    """StyleGAN2's path-length regularization: |J^T y| stays near its running mean (stylegan2 only)."""

    def __init__(self, weight: Weight = 2.0, every: Every = 4, decay: Annotated[float, Range(ge=0, lt=1)] = 0.01,
                 batch_shrink: Annotated[int, Range(ge=1)] = 2) -> None:
        self.weight, self.every, self.decay, self.batch_shrink = weight, every, decay, batch_shrink
        self.mean = torch.zeros(())  # as StyleGAN2's pl_mean: starts at 0, moves by `decay` per update

    def setup(self, G: nn.Module, D: nn.Module) -> None:
        if not hasattr(G, "synthesis_with_styles"):
            raise ValueError("path_length works with the stylegan2 generator only")

    def g_penalty(self, G, D, z, labels, fake, gen):
        n = max(1, len(z) // self.batch_shrink)
        images, w = G.synthesis_with_styles(z[:n], labels[:n] if labels is not None else None)
        noise = torch.randn(images.shape, device=images.device, dtype=images.dtype, generator=gen)
        noise = noise / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), w, create_graph=True)
        lengths = grad.pow(2).sum(dim=2).mean(dim=1).sqrt()
        self.mean = torch.lerp(self.mean.to(lengths.device), lengths.mean().detach().float(), self.decay)
        return (lengths - self.mean).pow(2).mean()

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mean = state.get("mean")
        self.mean = torch.zeros(()) if mean is None else mean


@REGULARIZERS.register("top_k")
class TopK(Regularizer):
    """Top-k training of G (Sinha et al. 2020): G learns only from the fakes D rates highest;
    the kept fraction decays from 1 by `decay` per epoch of the data (as the paper and StudioGAN:
    k = max(k * gamma, nu * batch)), or per `interval` steps if given, down to `keep`."""

    def __init__(self, keep: Annotated[float, Range(gt=0, le=1)] = 0.5,
                 decay: Annotated[float, Range(gt=0, le=1)] = 0.99,
                 interval: Annotated[int, Range(ge=1)] | None = None) -> None:
        self.keep, self.decay, self.interval, self.weight = keep, decay, interval, 1.0

    def g_logits(self, fake_logits, step, epoch=0):
        periods = epoch if self.interval is None else step // self.interval
        fraction = max(self.keep, self.decay ** periods)
        k = max(1, int(round(fraction * len(fake_logits))))
        return fake_logits.topk(k).values if k < len(fake_logits) else fake_logits


# --------------------------------------------------------------------------------------------
# Changes to networks and inputs
# --------------------------------------------------------------------------------------------


def apply_spectral_norm(module: nn.Module) -> None:
    """Spectral normalisation (Miyato et al. 2018) on every conv, linear and embedding weight, in place.
    (Layers with equalized learning rate, as in stylegan2, keep their own scaling.)"""
    for child in list(module.modules()):
        if getattr(child, "spectral_norm_exempt", False):
            continue
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)) and \
                not torch.nn.utils.parametrize.is_parametrized(child, "weight"):
            dim = 1 if isinstance(child, nn.ConvTranspose2d) else 0
            torch.nn.utils.parametrizations.spectral_norm(child, dim=dim)


@REGULARIZERS.register("spectral_norm")
class SpectralNorm(Regularizer):
    """Spectral normalisation (SNGAN) of every conv/linear weight of D and/or G."""

    incompatible = ("weight_clipping",)

    def __init__(self, discriminator: bool = True, generator: bool = False) -> None:
        self.discriminator, self.generator, self.weight = discriminator, generator, 1.0

    def setup(self, G: nn.Module, D: nn.Module) -> None:
        if self.discriminator:
            apply_spectral_norm(D)
        if self.generator:
            apply_spectral_norm(G)


@REGULARIZERS.register("weight_clipping")
class WeightClipping(Regularizer):
    """The original WGAN's Lipschitz constraint: clamp D's weights to [-clip, clip] after each step."""

    incompatible = ("gradient_penalty", "r1", "r2", "dragan", "spectral_norm")

    def __init__(self, clip: Annotated[float, Range(gt=0)] = 0.01) -> None:
        self.clip, self.weight = clip, 1.0

    @torch.no_grad()
    def after_d_step(self, D: nn.Module) -> None:
        for p in D.parameters():
            if p.requires_grad:  # FreezeD's frozen layers keep their loaded weights
                p.clamp_(-self.clip, self.clip)


@REGULARIZERS.register("diffaugment")
class DiffAugment(Regularizer):
    """DiffAugment (Zhao et al. 2020): the same random color/translation/cutout on reals and fakes,
    in both D and G steps, differentiably."""

    incompatible = ("ada",)
    accepts = Accepts(vectors=False)

    def __init__(self, policy: list[Policy] = ("color", "translation", "cutout")) -> None:  # type: ignore[assignment]
        self.policy, self.weight = list(policy), 1.0

    def augment(self, x, gen, step):
        return augment.diff_augment(x, self.policy, gen) if x.dim() == 4 else x


@REGULARIZERS.register("ada")
class AdaptiveAugment(Regularizer):
    """ADA (Karras et al. 2020): StyleGAN2-ADA's augmentation pipeline (`bgc` by default), each
    operation applied with probability p; every `interval` D updates p rises if E[sign D(real)]
    over those updates' real images (all processes) exceeds `target` and falls otherwise, by
    (images seen) / `speed_images` (the reference: batch x interval / 500k). `pipeline:
    diffaugment` applies DiffAugment's `policy` operations with probability p instead. p and the
    running sums are saved in checkpoints."""

    incompatible = ("diffaugment",)
    accepts = Accepts(vectors=False, channels=(1, 3))  # the colour operations know grey and RGB

    def __init__(self, target: Annotated[float, Range(gt=0, lt=1)] = 0.6, interval: Annotated[int, Range(ge=1)] = 4,
                 speed_images: Annotated[int, Range(ge=1)] = 500_000,
                 pipeline: Literal["bgc", "bg", "blit", "geom", "color", "diffaugment"] = "bgc",
                 policy: list[Policy] = ("xflip", "translation", "color", "cutout"),  # type: ignore[assignment]
                 initial_p: Annotated[float, Range(ge=0, le=1)] = 0.0) -> None:
        self.target, self.interval, self.speed_images, self.policy = target, interval, speed_images, list(policy)
        self.pipeline = pipeline
        # Tensors on the training device: adjusting p needs no host sync.
        self.p = torch.tensor(initial_p)
        # Since the last adjustment: the sum of sign D(real) and the number of real images.
        self._sign_sum, self._seen = torch.zeros(()), torch.zeros(())
        self._updates = 0

    def augment(self, x, gen, step):
        if x.dim() != 4:
            return x
        self.p = self.p.to(x.device)
        if self.pipeline == "diffaugment":
            return augment.adaptive_augment(x, self.policy, self.p, gen)
        return augment.ada_augment(x, self.p, gen, self.pipeline)

    def observe(self, real_logits, step):
        self._sign_sum = self._sign_sum.to(real_logits.device) + real_logits.detach().float().sign().sum()
        self._seen = self._seen.to(real_logits.device) + real_logits.numel()

    def after_d_step(self, D):
        self._updates += 1
        if self._updates % self.interval:
            return
        signs = torch.stack([self._sign_sum, self._seen])  # on the device: no host sync
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(signs)  # every process adjusts p alike
        r_t = signs[0] / signs[1].clamp(min=1)
        self.p = (self.p.to(r_t.device) + torch.sign(r_t - self.target) * (signs[1] / self.speed_images)).clamp(0, 1)
        self._sign_sum, self._seen = torch.zeros_like(self._sign_sum), torch.zeros_like(self._seen)

    def state_dict(self) -> dict[str, Any]:
        return {"p": float(self.p), "sign_sum": float(self._sign_sum), "seen": int(self._seen),
                "updates": self._updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = torch.tensor(float(state.get("p", float(self.p))))
        self._sign_sum = torch.tensor(float(state.get("sign_sum", 0.0)))
        self._seen = torch.tensor(float(state.get("seen", 0)))
        self._updates = int(state.get("updates", 0))


@REGULARIZERS.register("instance_noise")
class InstanceNoise(Regularizer):
    """Annealed instance noise (Sonderby et al. 2016): Gaussian noise on D's inputs, its std
    falling linearly from `std` to 0 over `anneal_steps`."""

    def __init__(self, std: Annotated[float, Range(gt=0)] = 0.1, anneal_steps: Annotated[int, Range(ge=1)] = 10_000):
        self.std, self.anneal_steps, self.weight = std, anneal_steps, 1.0

    def augment(self, x, gen, step):
        return augment.instance_noise(x, self.std * max(0.0, 1.0 - step / self.anneal_steps), gen)
