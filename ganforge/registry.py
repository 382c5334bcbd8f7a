"""One small registry class: components are chosen in configs by short names."""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from ganforge.accepts import ANY, Accepts
from ganforge.errors import ConfigError

# How a loss reads D's logits, for the regularizers that only make sense with some of them (label
# smoothing changes a BCE target): sigmoid cross-entropy on raw logits, a hinge margin, an unbounded
# critic, least squares to targets, or cross-entropy on relative logits (real minus fake).
LossShape = Literal["bce", "margin", "critic", "least_squares", "relativistic"]


@dataclass(frozen=True)
class Entry:
    """A registered component: its short name, what builds it, a one-line description, and what it
    declares next to its code: the data it `accepts`, its `tiny` settings (the smallest valid
    ones, for tests and sweeps) and its `properties` (e.g. a loss's shape)."""

    name: str
    builder: Callable[..., Any]
    description: str
    accepts: Accepts = ANY
    tiny: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    properties: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class Registry:
    """Maps short names to builders (classes or functions with explicit keyword arguments)."""

    def __init__(self, what: str, injected: tuple[str, ...] = (), declares: tuple[str, ...] = ()) -> None:
        self.what = what
        # Arguments the factory fills in (from the data set, the step budget...), never the user.
        self.injected = injected
        # What every component of this kind must declare when it registers (`tiny` or a property).
        self.declares = declares
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, accepts: Accepts = ANY, tiny: Mapping[str, Any] | None = None,
                 **properties: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register `builder` under `name`; its docstring's first line describes it.
        `accepts`: the data it works with; `tiny`: its smallest valid settings (the tests build it
        with them); `properties`: what else the sweeps and checks read (see `declares`)."""
        missing = [d for d in self.declares if d not in properties and not (d == "tiny" and tiny is not None)]
        if missing:
            raise TypeError(f"{self.what} {name!r} must declare {', '.join(missing)} when it registers")
        shape = properties.get("shape")
        if shape is not None and shape not in get_args(LossShape):
            raise TypeError(f"{self.what} {name!r}: shape {shape!r} is not one of {get_args(LossShape)}")

        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise KeyError(f"{self.what} {name!r} is registered twice")
            doc = inspect.getdoc(builder) or ""
            self._entries[name] = Entry(name, builder, doc.splitlines()[0] if doc else "", accepts,
                                        MappingProxyType(dict(tiny or {})), MappingProxyType(properties))
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

    def tiny(self, name: str) -> dict[str, Any]:
        """The smallest valid settings `name` declares, as the params of a config section."""
        return dict(self.get(name).tiny)

    def __contains__(self, name: object) -> bool:
        load_builtin_components()
        return isinstance(name, str) and name in self._entries


DATASETS = Registry("data set")
_FROM_DATA = ("resolution", "channels", "data_dim", "num_classes")
# A generator's `output_range`: (low, high) its image samples stay in, or None where they are unbounded.
GENERATORS = Registry("generator", injected=_FROM_DATA, declares=("tiny", "output_range"))
DISCRIMINATORS = Registry("discriminator", injected=_FROM_DATA, declares=("tiny",))
LOSSES = Registry("loss", declares=("shape",))
# A regularizer may declare `loss_shapes`, the loss shapes it works with (none: any);
# `networks`, the generator and discriminator sections (kind and settings beyond their `tiny`) a
# run with it needs (none: any); `d_passes` and `g_passes`, what it puts through D beyond the
# loss's own passes in the D and the G step, as "D(real)", "D(interpolate)", "classify(fake)"
# (D's auxiliary classifier; none: it adds no pass); and `reports_reals`, when its own pass over
# the reals is reported to every regularizer's `observe` (R1's lazy pass, as StyleGAN2-ADA's ADA
# counts its signs). tests/test_what_d_sees.py checks each declaration against the loop's steps.
REGULARIZERS = Registry("regularizer")
OPTIMIZERS = Registry("optimizer", injected=("params",))
SCHEDULES = Registry("schedule", injected=("total_steps",))
EXTRACTORS = Registry("feature extractor")
# A metric declares its `figures` (each with the way it is better), `minimums` and feature `view`
# (see `ganforge.metrics.catalog.Declared` for these and the optional ones).
METRICS = Registry("metric", injected=("inputs",), declares=("figures", "minimums", "view"))

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

# A module that registers a component holds a line like `@LOSSES.register("hinge")`. Such modules
# are found in the package's source and imported on first lookup, not at import time, so that
# `ganforge --help` does not import torch.
_REGISTRATION = re.compile(rb"\b[A-Z][A-Z_]*\.register\(")


@functools.cache
def builtin_component_modules() -> tuple[str, ...]:
    """The modules of the ganforge package that register components, found without importing any."""
    package = Path(__file__).parent
    modules = []
    for path in sorted(package.rglob("*.py")):
        if path != Path(__file__) and _REGISTRATION.search(path.read_bytes()):
            parts = path.relative_to(package.parent).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return tuple(modules)


def load_builtin_components() -> None:
    """Import the modules that register ganforge's own components (idempotent)."""
    for module in builtin_component_modules():
        importlib.import_module(module)
