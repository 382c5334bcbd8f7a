"""Learning-rate schedules: a factor of the configured learning rate at each training step.

Every schedule takes the step budget (`total_steps`, filled in from train.steps) and an
optional linear warm-up; the factor multiplies the optimizer's lr through LambdaLR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from ganforge.params import Range
from ganforge.registry import SCHEDULES

Factor = Callable[[int], float]
Steps = Annotated[int, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0.0, le=1.0)]


def _with_warmup(factor: Factor, warmup_steps: int) -> Factor:
    """Ramp linearly from 1/warmup_steps to the schedule's value over the first steps."""
    if warmup_steps <= 0:
        return factor
    return lambda step: factor(step) * min(1.0, (step + 1) / warmup_steps)


@SCHEDULES.register("constant")
def constant(total_steps: int, warmup_steps: Steps = 0) -> Factor:
    """The configured learning rate throughout (after the optional warm-up)."""
    return _with_warmup(lambda step: 1.0, warmup_steps)


@SCHEDULES.register("linear_decay")
def linear_decay(total_steps: int, warmup_steps: Steps = 0, start: Fraction = 0.0, final: Fraction = 0.0) -> Factor:
    """Constant until `start` (a fraction of the run), then linearly down to `final` x lr at the end."""
    begin = start * total_steps

    def factor(step: int) -> float:
        if step <= begin:
            return 1.0
        t = min(1.0, (step - begin) / max(1.0, total_steps - begin))
        return 1.0 - (1.0 - final) * t

    return _with_warmup(factor, warmup_steps)


@SCHEDULES.register("cosine")
def cosine(total_steps: int, warmup_steps: Steps = 0, final: Fraction = 0.0) -> Factor:
    """Half a cosine from lr down to `final` x lr over the steps after the warm-up."""

    def factor(step: int) -> float:
        t = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))

    return _with_warmup(factor, warmup_steps)


@SCHEDULES.register("step")
def step(total_steps: int, warmup_steps: Steps = 0, every: Annotated[int, Range(ge=1)] = 10_000,
         gamma: Annotated[float, Range(gt=0.0, le=1.0)] = 0.5) -> Factor:
    """Multiply the learning rate by `gamma` every `every` steps."""
    return _with_warmup(lambda s: gamma ** (s // every), warmup_steps)


@SCHEDULES.register("exponential")
def exponential(total_steps: int, warmup_steps: Steps = 0, final: Annotated[float, Range(gt=0.0, le=1.0)] = 0.1
                ) -> Factor:
    """Decay smoothly by a constant factor per step, reaching `final` x lr at the end."""
    return _with_warmup(lambda s: final ** (min(s, total_steps) / max(1, total_steps)), warmup_steps)
