"""What data a component works with, declared on the component and checked at config time.

Every registered generator, discriminator, regularizer and metric may declare
`accepts=Accepts(...)` in its registry's `register` call; one without it works with any data.
`check_accepts` compares the declaration with the data's description (`DataInfo`) and raises a
one-line `ConfigError` that names both config keys, so an image architecture on vector data (or
a labelled-only regularizer on unlabelled data) is refused before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ganforge.errors import ConfigError

if TYPE_CHECKING:
    from ganforge.data import DataInfo
    from ganforge.registry import Entry


@dataclass(frozen=True)
class Accepts:
    """The data a component works with."""

    images: bool = True  # (channels, height, width) samples
    vectors: bool = True  # (dim,) samples, e.g. the 2D toy data sets
    needs_labels: bool = False  # True: only labelled data (a class count > 0)
    channels: tuple[int, ...] | None = None  # image channel counts it supports (None: any)
    min_resolution: int = 1  # smallest image side it supports
    max_resolution: int | None = None  # largest image side it supports (None: no limit)
    powers_of_two: bool = False  # True: only sides that are powers of two

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
        if info.is_image and not all(self.takes_resolution(side) for side in info.shape[1:]):
            return f"needs images of {self.describe_resolutions()}, but the data are {info.shape[1]}x{info.shape[2]}"
        return None

    def takes_resolution(self, side: int) -> bool:
        """Whether an image side of `side` pixels is one it supports."""
        return (self.min_resolution <= side and (self.max_resolution is None or side <= self.max_resolution)
                and (not self.powers_of_two or side & (side - 1) == 0))

    def describe_resolutions(self) -> str:
        """`at least 8x8`, `16 to 128 px (powers of two)`, for error lines."""
        if self.max_resolution is None and not self.powers_of_two:
            return f"at least {self.min_resolution}x{self.min_resolution}"
        top = f"to {self.max_resolution} px" if self.max_resolution is not None else "px and up"
        kind = " (powers of two)" if self.powers_of_two else ""
        return f"{self.min_resolution} {top}{kind}"

    def summary(self) -> str:
        """`images, 16 to 128 px (powers of two), 1 or 3 channels`, for `ganforge list`; '' for any data."""
        parts = []
        if self.images != self.vectors:
            parts.append("images" if self.images else "vectors")
        if self.images and (self.min_resolution > 1 or self.max_resolution is not None or self.powers_of_two):
            parts.append(self.describe_resolutions())
        if self.images and self.channels is not None:
            parts.append(" or ".join(str(c) for c in self.channels) + " channels")
        if self.needs_labels:
            parts.append("labelled")
        return ", ".join(parts)

    def resolutions(self, up_to: int) -> list[int]:
        """The image sides it supports, from its smallest to `up_to`."""
        return [side for side in range(self.min_resolution, up_to + 1) if self.takes_resolution(side)]


ANY = Accepts()


def describe(info: DataInfo) -> str:
    """`3x32x32 images` or `2-dimensional vectors`, for error lines."""
    if info.is_image:
        c, h, w = info.shape
        return f"{c}x{h}x{w} images"
    return f"{info.shape[0]}-dimensional vectors"


def check_accepts(component: Entry, info: DataInfo, where: str, kind: str, data_where: str = "data") -> None:
    """Raise a one-line ConfigError naming `where` and `data_where` if the declared data of the
    registry entry `component` do not match `info`."""
    problem = component.accepts.problem(info)
    if problem is not None:
        raise ConfigError(f"{where}: {kind} {problem} ({data_where}.kind: {info.name}); "
                          f"change {where}.kind or {data_where}.kind")
