"""What data a component works with, declared on the component and checked at config time.

Every registered generator, discriminator, regularizer and metric may carry a class attribute
`accepts = Accepts(...)`; one without it works with any data. `check_accepts` compares the
declaration with the data's description (`DataInfo`) and raises a one-line `ConfigError` that
names both config keys, so an image architecture on vector data (or a labelled-only regularizer
on unlabelled data) is refused before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ganforge.errors import ConfigError

if TYPE_CHECKING:
    from ganforge.data import DataInfo


@dataclass(frozen=True)
class Accepts:
    """The data a component works with."""

    images: bool = True  # (channels, height, width) samples
    vectors: bool = True  # (dim,) samples, e.g. the 2D toy data sets
    needs_labels: bool = False  # True: only labelled data (a class count > 0)
    channels: tuple[int, ...] | None = None  # image channel counts it supports (None: any)
    min_resolution: int = 1  # smallest image side it supports

    def problem(self, info: DataInfo) -> str | None:
        """Why data described by `info` does not fit, or None when it does."""
        if info.is_image and not self.images:
            return f"needs vector data, but the data are {describe(info)}"
        if not info.is_image and not self.vectors:
            return f"needs image data, but the data are {describe(info)}"
        if self.needs_labels and not info.num_classes:
            return f"needs labelled data, but the data ({info.name}) have no labels"
        if info.is_image and self.channels is not None and info.shape[0] not in self.channels:
            allowed = " or ".join(str(c) for c in self.channels)
            return f"needs images with {allowed} channels, but the data have {info.shape[0]}"
        if info.is_image and min(info.shape[1:]) < self.min_resolution:
            return f"needs images of at least {self.min_resolution}x{self.min_resolution}, but the data are " \
                   f"{info.shape[1]}x{info.shape[2]}"
        return None


ANY = Accepts()


def describe(info: DataInfo) -> str:
    """`3x32x32 images` or `2-dimensional vectors`, for error lines."""
    if info.is_image:
        c, h, w = info.shape
        return f"{c}x{h}x{w} images"
    return f"{info.shape[0]}-dimensional vectors"


def accepts_of(component: Any) -> Accepts:
    """The declaration of a component class, builder or instance (ANY when it declares none)."""
    declared = getattr(component, "accepts", None)
    return declared if isinstance(declared, Accepts) else ANY


def check_accepts(component: Any, info: DataInfo, where: str, kind: str, data_where: str = "data") -> None:
    """Raise a one-line ConfigError naming `where` and `data_where` if the component's declared
    data does not match `info`."""
    problem = accepts_of(component).problem(info)
    if problem is not None:
        raise ConfigError(f"{where}: {kind} {problem} ({data_where}.kind: {info.name}); "
                          f"change {where}.kind or {data_where}.kind")
