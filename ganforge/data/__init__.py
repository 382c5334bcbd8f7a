"""Data sets and resumable batch streams.

A data set builder (registered by short name) returns a `DataSource`: cheap to create (it
checks paths and knows the sample shape), heavy work deferred to `batches()`. A batch stream
is an endless iterator over shuffled epochs whose position (epoch, cursor) is part of every
checkpoint, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ganforge.errors import DataError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

# torch is imported where it is used, not here: `ganforge dataset` reads image files through this
# package (decode.py, zipfiles.py) without loading torch, which would cost it seconds and 500 MB.


@dataclass(frozen=True)
class DataInfo:
    """What models need to know about the data: sample shape and number of classes."""

    name: str
    shape: tuple[int, ...]  # (channels, height, width) for images, (dim,) for vectors
    num_classes: int = 0  # 0: unlabelled

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def model_args(self) -> dict[str, int]:
        """Keyword arguments the factory gives to generator and discriminator builders."""
        if self.is_image:
            return {"channels": self.shape[0], "resolution": self.shape[1], "num_classes": self.num_classes}
        return {"data_dim": self.shape[0], "num_classes": self.num_classes}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataInfo:
        return cls(str(d["name"]), tuple(int(s) for s in d["shape"]), int(d["num_classes"]))


Batch = tuple["Tensor", "Tensor | None"]


class Batches(Iterator[Batch]):
    """An endless, resumable stream of (samples, labels) batches on the training device."""

    skipped = 0  # unreadable samples passed over so far (image folders)
    position: Position
    mirrored = False  # data.xflip: the epoch holds every image twice, the second time mirrored

    @abstractmethod
    def __next__(self) -> Batch: ...

    def state_dict(self) -> dict[str, int]:
        """The position (epoch, cursor) and the epoch's length, for checkpoints."""
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a checkpoint's position."""
        self.position.load_state_dict(state)

    def stop_on(self, stop: threading.Event) -> None:
        """Give up a wait for data once `stop` is set (Ctrl+C, SIGTERM) and a batch came back with
        nothing usable in it: raise StopWaiting. A usable batch is returned even after a stop."""

    def describe(self, info: DataInfo) -> str:
        """`digits: 1,797 images, 3,594 an epoch with their mirror images (data.xflip)`, for the start-up line."""
        items = self.position.num_samples
        if self.mirrored:
            return f"{info.name}: {items // 2:,} images, {items:,} an epoch with their mirror images (data.xflip)"
        return f"{info.name}: {items:,} {'images' if info.is_image else 'samples'} an epoch"


class StopWaiting(KeyboardInterrupt):
    """A stop request (Ctrl+C, SIGTERM) arrived while the stream waited for data: there is no
    step to finish, so the run ends as on a second Ctrl+C (its last checkpoint intact)."""


class DataSource(ABC):
    """A data set chosen in the config; `info` is known without loading the data."""

    info: DataInfo

    @abstractmethod
    def batches(self, batch_size: int, seed: int, device: torch.device, rank: int = 0, world_size: int = 1
                ) -> Batches:
        """Load the data (if not yet) and return a stream of shuffled batches: each global batch
        of `batch_size` samples, of which this rank gets its 1/world_size share."""

    def require_samples(self) -> None:
        """Raise a DataError saying what to do when the source has no samples (kind: shape)."""
        return None

    def prepare(self) -> None:
        """Fetch what is missing (data sets with `download: true`). Training calls it on one
        process while the others wait, so that they never download into one folder at once."""
        return None

    def count(self) -> int | None:
        """How many samples an epoch holds (with `xflip`, every image twice), found without
        fetching or decoding them (None: known only once `prepare` has fetched them).
        `train --dry-run` checks the batch with it."""
        return None

    def reference_points(self, num: int) -> Tensor | None:
        """Up to `num` real samples for plots of vector data (None for images)."""
        return None


# --------------------------------------------------------------------------------------------
# Epoch order shared by every stream
# --------------------------------------------------------------------------------------------


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order of one epoch: a function of (seed, epoch) alone, so it can be replayed."""
    import torch

    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g)


class Position:
    """Where an epoch-shuffled stream stands; the last incomplete batch of an epoch is dropped."""

    def __init__(self, num_samples: int, batch_size: int) -> None:
        if batch_size > num_samples:
            raise DataError(
                f"train.batch_size={batch_size} is larger than the data set ({num_samples} samples); "
                "lower the batch size"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.epoch = 0
        self.cursor = 0

    def advance(self) -> tuple[int, int]:
        """Move one batch on; returns the (epoch, start) of that batch."""
        if self.cursor + self.batch_size > self.num_samples:
            self.epoch += 1
            self.cursor = 0
        start = self.cursor
        self.cursor += self.batch_size
        return self.epoch, start

    def state_dict(self) -> dict[str, int]:
        # `items` (the epoch's length) is a record for `ganforge info`; resuming reads epoch and cursor.
        return {"epoch": self.epoch, "cursor": self.cursor, "items": self.num_samples}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])


def to_unit_range(x: Tensor) -> Tensor:
    """uint8 pixels [0, 255] -> float [-1, 1]; float data passes through."""
    import torch

    if x.dtype == torch.uint8:
        return x.float().div_(127.5).sub_(1.0)
    return x


def dequantized(x: Tensor, gen: torch.Generator) -> Tensor:
    """uint8 pixels -> x/128 - 1 + U(0, 1/128), in [-1, 1): each 8-bit level spread uniformly over
    its bin, as SNGAN's and WGAN-GP's CIFAR-10 code feed D (`data.dequantize: true`)."""
    import torch

    noise = torch.rand(x.shape, device=x.device, generator=gen)
    return x.float().div_(128.0).sub_(1.0).add_(noise.div_(128.0))


def local_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """This rank's part of a global batch (the global batch divides evenly)."""
    part = batch_size // world_size
    return slice(rank * part, (rank + 1) * part)


class TensorBatches(Batches):
    """Batches from a data set held whole in memory, on the training device. Every rank walks
    the same global order (the position is global) and takes its own slice of each batch.
    `mirrored`: the epoch has 2N items, item N + i being image i flipped left to right."""

    def __init__(self, x: Tensor, y: Tensor | None, batch_size: int, seed: int, device: torch.device,
                 rank: int = 0, world_size: int = 1, mirrored: bool = False, dequantize: bool = False) -> None:
        import torch

        self.mirrored = mirrored
        self.position = Position(len(x) * (2 if mirrored else 1), batch_size)
        self.dequantize = dequantize and x.dtype == torch.uint8
        self.noise = torch.Generator(device)
        self.local = local_slice(batch_size, rank, world_size)
        self.seed = seed
        # Small data sets live on the device: a batch is an index into them, no host copies.
        self.x = x.to(device)
        self.y = y.to(device) if y is not None else None
        self.device = device
        self._order: Tensor | None = None
        self._order_epoch = -1

    def __next__(self) -> Batch:
        import torch

        epoch, start = self.position.advance()
        if epoch != self._order_epoch:
            self._order = epoch_permutation(self.position.num_samples, self.seed, epoch).to(self.device)
            self._order_epoch = epoch
        assert self._order is not None
        order = self._order[start : start + self.position.batch_size]
        # Dequantization noise is drawn for the whole global batch (below), so its rows stay until then.
        idx = order if self.dequantize else order[self.local]
        n = len(self.x)
        x = self.x[idx % n]
        if self.mirrored:
            flip = (idx >= n).view(-1, *[1] * (x.dim() - 1))
            x = torch.where(flip, x.flip(-1), x)
        labels = self.y[idx % n] if self.y is not None else None
        if not self.dequantize:
            return to_unit_range(x), labels
        # Noise from (seed, epoch, start): the same on every rank split and after a resume; this
        # rank takes its slice.
        self.noise.manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + start)
        return dequantized(x, self.noise)[self.local], (labels[self.local] if labels is not None else None)


class TensorSource(DataSource):
    """A DataSource whose samples are loaded once into a tensor (uint8 images or float vectors)."""

    dequantize = False  # uint8 images as x/128 - 1 + U(0, 1/128) (`data.dequantize`), else x/127.5 - 1

    def __init__(self, info: DataInfo, xflip: bool = False) -> None:
        self.info = info
        self.xflip = xflip  # StyleGAN2-ADA's --mirror: each image also mirrored, 2N an epoch
        self._cache: tuple[Tensor, Tensor | None] | None = None

    def with_dequantize(self, dequantize: bool) -> TensorSource:
        """This source with `data.dequantize` set; returns it."""
        self.dequantize = dequantize
        return self

    @abstractmethod
    def load(self) -> tuple[Tensor, Tensor | None]:
        """All samples (N, *shape) and labels (N,) or None."""

    def tensors(self) -> tuple[Tensor, Tensor | None]:
        """The loaded samples, read once and cached."""
        if self._cache is None:
            x, y = self.load()
            if tuple(x.shape[1:]) != self.info.shape:
                raise DataError(f"{self.info.name}: loaded samples of shape {tuple(x.shape[1:])}, "
                                f"expected {self.info.shape}")
            self._cache = (x, y)
        return self._cache

    def fetched(self) -> bool:
        """Whether the files are here to load (False: `prepare` would download them first)."""
        return True

    def count(self) -> int | None:
        return len(self.tensors()[0]) * (2 if self.xflip else 1) if self.fetched() else None

    def batches(self, batch_size: int, seed: int, device: torch.device, rank: int = 0, world_size: int = 1
                ) -> Batches:
        x, y = self.tensors()
        return TensorBatches(x, y, batch_size, seed, device, rank, world_size, mirrored=self.xflip,
                             dequantize=self.dequantize)

    def reference_points(self, num: int) -> Tensor | None:
        if self.info.is_image:
            return None
        x, _ = self.tensors()
        return to_unit_range(x[:num])
