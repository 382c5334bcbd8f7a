"""Configs that checkpoints stored before a component gained a key whose default differs from
what those runs did.

A checkpoint stores its fully resolved config, so a key that it lacks came after it was written.
Where the new key's default builds a different network than such a run trained (DCGAN without
biases, the ResNet D without its output bias), the run's own setting is written in when the
checkpoint is read, so old checkpoints load, sample, export and resume as they trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AddedKey:
    """A component key added with a default other than what runs before it did."""

    section: str  # generator, discriminator or regularizers
    kind: str
    key: str
    before: Any  # what runs written before the key existed did


ADDED_KEYS: tuple[AddedKey, ...] = (
    AddedKey("generator", "dcgan", "bias", True),
    AddedKey("discriminator", "dcgan", "bias", True),
    AddedKey("generator", "resnet", "init", "default"),
    AddedKey("discriminator", "resnet", "init", "default"),
    AddedKey("discriminator", "resnet", "output_bias", True),
)


def upgrade_stored_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's stored config with the settings its run used written in for keys added later."""
    raw = dict(stored)
    for added in ADDED_KEYS:
        if added.section not in raw:
            continue
        section = raw[added.section]
        components = list(section) if isinstance(section, list) else [section]
        for i, component in enumerate(components):
            if isinstance(component, Mapping) and component.get("kind") == added.kind and added.key not in component:
                components[i] = {**component, added.key: added.before}
        raw[added.section] = components if isinstance(section, list) else components[0]
    return raw
