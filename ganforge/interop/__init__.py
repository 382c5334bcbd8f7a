"""Networks from other tools' files (StyleGAN2-ADA pickles, rosinality checkpoints,
BigGAN-PyTorch weights), read without running their code and turned into ganforge's layout.

Each reader module exposes `detect(path) -> bool` (cheap: looks at names and magic bytes) and
`read(path) -> Imported`; `ganforge import` picks the first reader whose `detect` says yes and
writes an ordinary run folder from what `read` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Imported:
    """What a reader found, already in ganforge's parameter names and shapes."""

    source: str  # what was read, for messages and the run's records ("StyleGAN2-ADA network pickle")
    data_shape: dict[str, int]  # channels, resolution, num_classes (0: unconditional)
    generator: dict[str, Any]  # the ganforge `generator` config section ({"kind": ..., **params})
    discriminator: dict[str, Any] | None  # the `discriminator` section, or None when the source has no D
    G: dict[str, Tensor] | None  # state dicts that load with strict=True into the built networks
    D: dict[str, Tensor] | None
    G_ema: dict[str, Tensor] | None
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. {"ada_p": 0.23, "augment": {...}}
