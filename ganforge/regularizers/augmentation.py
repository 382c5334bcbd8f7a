"""Changes to D's inputs, real and fake, in both steps: DiffAugment, ADA, instance noise."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch

from ganforge import augment
from ganforge.accepts import Accepts
from ganforge.params import Range
from ganforge.registry import REGULARIZERS
from ganforge.regularizers.base import Regularizer

Policy = Literal["color", "translation", "cutout", "xflip"]



@REGULARIZERS.register("diffaugment", accepts=Accepts(vectors=False))
class DiffAugment(Regularizer):
    """DiffAugment (Zhao et al. 2020): the same random color/translation/cutout on reals and fakes,
    in both D and G steps, differentiably."""

    incompatible = ("ada",)

    def __init__(self, policy: list[Policy] = ("color", "translation", "cutout")) -> None:  # type: ignore[assignment]
        self.policy, self.weight = list(policy), 1.0

    def augment(self, x, gen, step):
        return augment.diff_augment(x, self.policy, gen) if x.dim() == 4 else x


# The colour operations know grey and RGB.
@REGULARIZERS.register("ada", accepts=Accepts(vectors=False, channels=(1, 3)))
class AdaptiveAugment(Regularizer):
    """ADA (Karras et al. 2020): StyleGAN2-ADA's augmentation pipeline (`bgc` by default), each
    operation applied with probability p. After every `interval` training steps, p rises if the
    mean of sign D(real) since the last adjustment (over all processes) exceeds `target` and
    falls otherwise, by the real images D trained on in those steps / `speed_images` (the
    reference: batch x interval / 500k), and never below 0. The signs are those of D's loss
    passes and of a lazy R1's own passes, as the reference counts both. `pipeline: diffaugment`
    applies DiffAugment's `policy` operations with probability p instead. p and the running sums
    are saved in checkpoints."""

    incompatible = ("diffaugment",)

    def __init__(self, target: Annotated[float, Range(gt=0, lt=1)] = 0.6, interval: Annotated[int, Range(ge=1)] = 4,
                 speed_images: Annotated[int, Range(ge=1)] = 500_000,
                 pipeline: Literal["bgc", "bg", "blit", "geom", "color", "diffaugment"] = "bgc",
                 policy: list[Policy] = ("xflip", "translation", "color", "cutout"),  # type: ignore[assignment]
                 initial_p: Annotated[float, Range(ge=0)] = 0.0) -> None:
        self.target, self.interval, self.speed_images, self.policy = target, interval, speed_images, list(policy)
        self.pipeline = pipeline
        # Tensors on the training device: adjusting p needs no host sync.
        self.p = torch.tensor(initial_p)
        # Since the last adjustment: the sum and number of signs of D(real), and the real images
        # D trained on (the loss passes': a lazy R1's pass adds signs, not images).
        self._sign_sum, self._signs, self._seen = torch.zeros(()), torch.zeros(()), torch.zeros(())

    def augment(self, x, gen, step):
        if x.dim() != 4:
            return x
        self.p = self.p.to(x.device)
        if self.pipeline == "diffaugment":
            return augment.adaptive_augment(x, self.policy, self.p, gen)
        return augment.ada_augment(x, self.p, gen, self.pipeline)

    def observe(self, real_logits, step, main=True):
        device = real_logits.device
        self._sign_sum = self._sign_sum.to(device) + real_logits.detach().float().sign().sum()
        self._signs = self._signs.to(device) + real_logits.numel()
        self._seen = self._seen.to(device) + (real_logits.numel() if main else 0)

    def after_step(self, step):
        # As StyleGAN2-ADA: after the step that completes each `interval` (batch_idx % ada_interval == 0).
        if step % self.interval:
            return
        sums = torch.stack([self._sign_sum, self._signs, self._seen])  # on the device: no host sync
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)  # every process adjusts p alike
        r_t = sums[0] / sums[1].clamp(min=1)
        self.p = (self.p.to(r_t.device) + torch.sign(r_t - self.target) * (sums[2] / self.speed_images)).clamp(min=0)
        self._sign_sum, self._signs, self._seen = (torch.zeros_like(self._sign_sum) for _ in range(3))

    def state_dict(self) -> dict[str, Any]:
        return {"p": float(self.p), "sign_sum": float(self._sign_sum), "signs": float(self._signs),
                "seen": int(self._seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = torch.tensor(float(state.get("p", float(self.p))))
        self._sign_sum = torch.tensor(float(state.get("sign_sum", 0.0)))
        self._seen = torch.tensor(float(state.get("seen", 0)))
        # Checkpoints from before the R1 pass's signs counted: every sign came with an image.
        self._signs = torch.tensor(float(state.get("signs", state.get("seen", 0))))


@REGULARIZERS.register("instance_noise")
class InstanceNoise(Regularizer):
    """Annealed instance noise (Sonderby et al. 2016): Gaussian noise on D's inputs, its std
    falling linearly from `std` to 0 over `anneal_steps`."""

    def __init__(self, std: Annotated[float, Range(gt=0)] = 0.1, anneal_steps: Annotated[int, Range(ge=1)] = 10_000):
        self.std, self.anneal_steps, self.weight = std, anneal_steps, 1.0

    def augment(self, x, gen, step):
        return augment.instance_noise(x, self.std * max(0.0, 1.0 - step / self.anneal_steps), gen)
