"""The regularizer contract: the hooks a regularizer overrides and how its terms are weighted.

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
- `observe(real_logits, step, main)`: D's outputs on reals, for adaptive schedules (ADA): those
  of the step's loss (`main`) and those of a lazy penalty's own pass on reals (R1's);
- `after_step(step)`: after each training step (its D and G updates), with the number of steps
  done: schedules counted in steps (ADA's adjustment, LeCam's start).

Those hooks return unweighted values. `d_term` and `g_term` turn them into what the step adds to
its loss: `weight` x the output term at every update; `weight` x `every` x the penalty at every
`every`-th update and nothing in between (lazy regularization, StyleGAN2: applied every k-th
update, a penalty counts k times). A regularizer whose weighting is not one factor overrides
`d_term`/`g_term` itself. With `train.lazy: separate` a regularizer whose `every` is above 1
runs in a phase of its own after the regular update (StyleGAN2-ADA's Dreg/Greg phases): its
`d_term` then gets no logits of the regular pass (None) and its `g_term` no fakes (None).
The `D` that penalties see is D as the loop uses it: its inputs are the images before
augmentation, and the augmenting regularizers run inside the call (as StyleGAN2-ADA's `run_D`),
so input-gradient penalties include the augmentation's Jacobian.
State that changes during training (ADA's p, LeCam's anchors) is in `state_dict` and saved in
checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor, nn

from ganforge.params import Range

Weight = Annotated[float, Range(ge=0.0)]
Every = Annotated[int, Range(ge=1)]


@dataclass(frozen=True)
class Term:
    """What a regularizer adds to a loss at one update: `loss` (weighted, with the lazy factor)
    goes into the backward pass, `value` (the unweighted figure) into the log."""

    loss: Tensor
    value: Tensor
    # D's outputs on real images from the term's own pass (R1's, when lazy): adaptive schedules
    # count them, as StyleGAN2-ADA's ADA counts the signs of its R1 phase.
    real_logits: Tensor | None = None


class Regularizer:
    """Base class: every hook does nothing."""

    weight: float = 1.0
    every: int = 1
    # Other regularizer kinds (or losses, or architectures) this one cannot be combined with.
    incompatible: tuple[str, ...] = ()

    def d_term(self, update: int, D: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None,
               fake_labels: Tensor | None, real_logits: Tensor | None, fake_logits: Tensor | None,
               gen: torch.Generator | None) -> Term | None:
        """What this regularizer adds to D's loss at D update `update` (None: nothing)."""
        value = self.d_outputs(real_logits, fake_logits) if real_logits is not None else None
        if value is not None:
            return Term(self.weight * value, value)
        if update % self.every:
            return None
        value = self.d_penalty(D, real, fake, labels, fake_labels, gen)
        return None if value is None else Term(self.weight * self.every * value, value)

    def g_term(self, update: int, G: nn.Module, D: nn.Module, z: Tensor, labels: Tensor | None,
               fake: Tensor | None, gen: torch.Generator | None) -> Term | None:
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

    def g_penalty(self, G: nn.Module, D: nn.Module, z: Tensor, labels: Tensor | None, fake: Tensor | None,
                  gen: torch.Generator | None) -> Tensor | None:
        """An unweighted penalty on the generator (every `every` G updates; `fake` is G(z, labels),
        or None in a separate lazy phase)."""
        return None

    def after_d_step(self, D: nn.Module) -> None:
        """After D's optimizer step."""

    def observe(self, real_logits: Tensor, step: int, main: bool = True) -> None:
        """D's outputs on this step's reals: of the loss's pass (`main`) or of a lazy penalty's own."""

    def after_step(self, step: int) -> None:
        """After a training step; `step` steps are done."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @property
    def has_d_terms(self) -> bool:
        """Whether it adds to D's loss too (its G-side figure is then logged as NAME_g)."""
        return self._overrides("d_penalty", "d_outputs", "d_term")

    @property
    def has_g_terms(self) -> bool:
        """Whether it adds to G's loss."""
        return self._overrides("g_penalty", "g_term")

    def _overrides(self, *hooks: str) -> bool:
        cls = type(self)
        return any(getattr(cls, hook) is not getattr(Regularizer, hook) for hook in hooks)


def lazy_intervals(regularizers: list[tuple[str, Regularizer]]) -> tuple[int, int]:
    """(G's, D's) interval of lazy regularization: the `every` (above 1) of the regularizers that
    add to each player's loss, 1 when none does. `train.lazy: separate` runs them in a phase of
    their own every k updates, so each player has one k (a ValueError names two that differ)."""
    found = []
    for player, terms in (("G", "has_g_terms"), ("D", "has_d_terms")):
        lazy = {name: reg.every for name, reg in regularizers if reg.every > 1 and getattr(reg, terms)}
        if len(set(lazy.values())) > 1:
            listed = ", ".join(f"{name} every {k}" for name, k in lazy.items())
            raise ValueError(f"train.lazy: separate runs {player}'s lazy regularizers in one phase, so they need one "
                             f"interval, not {listed}; give them the same `every` or use train.lazy: folded")
        found.append(next(iter(lazy.values()), 1))
    return found[0], found[1]
