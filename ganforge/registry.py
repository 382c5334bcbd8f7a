"""One small registry class: components are chosen in configs by short names."""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ganforge.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """A registered component: its short name, what builds it, and a one-line description."""

    name: str
    builder: Callable[..., Any]
    description: str


class Registry:
    """Maps short names to builders (classes or functions with explicit keyword arguments)."""

    def __init__(self, what: str, injected: tuple[str, ...] = ()) -> None:
        self.what = what
        # Arguments the factory fills in (from the data set, the step budget...), never the user.
        self.injected = injected
        self._entries: dict[str, Entry] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register `builder` under `name`; its docstring's first line describes it."""

        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise KeyError(f"{self.what} {name!r} is registered twice")
            doc = inspect.getdoc(builder) or ""
            self._entries[name] = Entry(name, builder, doc.splitlines()[0] if doc else "")
            return builder

        return add

    def get(self, name: str, where: str = "kind") -> Entry:
        """The entry for `name`; an unknown name is a ConfigError listing the valid ones."""
        load_builtin_components()
        if not isinstance(name, str) or name not in self._entries:
            close = difflib.get_close_matches(str(name), self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown {self.what} {name!r}{hint}; valid: {', '.join(sorted(self._entries))}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        load_builtin_components()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """All entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        load_builtin_components()
        return isinstance(name, str) and name in self._entries


DATASETS = Registry("data set")
_FROM_DATA = ("resolution", "channels", "data_dim", "num_classes")
GENERATORS = Registry("generator", injected=_FROM_DATA)
DISCRIMINATORS = Registry("discriminator", injected=_FROM_DATA)
LOSSES = Registry("loss")
REGULARIZERS = Registry("regularizer")
OPTIMIZERS = Registry("optimizer", injected=("params",))
SCHEDULES = Registry("schedule", injected=("total_steps",))
EXTRACTORS = Registry("feature extractor")
METRICS = Registry("metric", injected=("inputs",))

ALL_REGISTRIES = {
    "data": DATASETS,
    "generator": GENERATORS,
    "discriminator": DISCRIMINATORS,
    "loss": LOSSES,
    "regularizer": REGULARIZERS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "extractor": EXTRACTORS,
    "metric": METRICS,
}

# Importing these modules registers the built-in components. Done on first lookup so that
# `ganforge --help` does not import torch.
_BUILTIN_MODULES = (
    "ganforge.data.toy",
    "ganforge.data.images",
    "ganforge.models.mlp",
    "ganforge.models.dcgan",
    "ganforge.models.resnet",
    "ganforge.models.stylegan2",
    "ganforge.losses",
    "ganforge.regularizers",
    "ganforge.optim",
    "ganforge.schedules",
    "ganforge.metrics.evaluate",
)


def load_builtin_components() -> None:
    """Import the modules that register ganforge's own components (idempotent)."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
