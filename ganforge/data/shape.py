"""The data section of a run that has networks but no data set (one made by `ganforge import`):
the shape of the samples and the classes, which is all that rebuilding the networks needs.
What needs real samples (training, FID against real images) says so in one line."""

from __future__ import annotations

from typing import Annotated

from torch import Tensor

from ganforge.data import DataInfo, TensorSource
from ganforge.errors import DataError
from ganforge.params import Range
from ganforge.registry import DATASETS


class ShapeOnly(TensorSource):
    """Knows its samples' shape and classes, holds no samples."""

    def __init__(self, channels: int, resolution: int, num_classes: int, source: str | None) -> None:
        super().__init__(DataInfo("shape", (channels, resolution, resolution), num_classes))
        self.source = source

    def load(self) -> tuple[Tensor, Tensor | None]:
        self.require_samples()
        raise AssertionError("unreachable")

    def require_samples(self) -> None:
        c, h, w = self.info.shape
        origin = f", {self.source}" if self.source else ""
        raise DataError(f"data (kind: shape): this run has no data set, only the shape of its samples ({c}x{h}x{w}"
                        f"{origin}); give real data: `ganforge eval RUN --data CONFIG` to score it, "
                        "`ganforge train CONFIG --init RUN` to fine-tune it")


@DATASETS.register("shape")
def shape(
    channels: Annotated[int, Range(ge=1)] = 3,
    resolution: Annotated[int, Range(ge=4, le=8192)] = 32,
    num_classes: Annotated[int, Range(ge=0)] = 0,
    source: str | None = None,  # where the networks came from, for messages
) -> ShapeOnly:
    """No samples, only their shape and classes (runs written by `ganforge import`)."""
    return ShapeOnly(channels, resolution, num_classes, source)
