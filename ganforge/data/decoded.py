"""Data sets of image files decoded on demand (a folder, a zip, a Hugging Face data set): one item
at a time in DataLoader workers, batched in the epoch order of `epoch_permutation` so that a
resumed run continues the same stream.

Files that cannot be decoded are skipped (or stop the run, `on_bad_image: error`). A stream in
which no file decodes stops with one line once every file has failed since the last good one, at
most two epochs of attempts, instead of drawing batches forever; and a stop request (Ctrl+C,
SIGTERM) ends a wait in which a batch of files failed to decode (a batch that decodes is always
returned: the stop finishes its step).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ganforge.data import (
    Batch,
    Batches,
    DataInfo,
    DataSource,
    Position,
    StopWaiting,
    TensorBatches,
    epoch_permutation,
    local_slice,
    to_unit_range,
)
from ganforge.data.decode import BadImage, ImageOptions, RefusedImage, decode
from ganforge.errors import DataError


@dataclass(frozen=True)
class Failure:
    """Why image `index` could not be used; `refused`: by the options (`alpha: refuse`), never skipped."""

    index: int
    file: str  # the full name, e.g. the path
    name: str  # the name within the data set's folder, archive or table
    reason: str
    refused: bool = False

    def __str__(self) -> str:
        return f"{self.file} ({self.reason})"


# A decoded item: (uint8 image (C, H, W), label or -1, notes for the user naming the file).
Item = tuple[Tensor, int, tuple[str, ...]]


class DecodingDataset(torch.utils.data.Dataset):
    """Images decoded on demand, in DataLoader workers: an Item, or the Failure saying why not."""

    def __init__(self, num: int, labels: list[int] | None, options: ImageOptions, on_bad_image: str,
                 where: str) -> None:
        self.num, self.labels, self.options = num, labels, options
        self.on_bad_image = on_bad_image
        self.where = where  # the folder, archive or data set, for error lines

    def __len__(self) -> int:
        return self.num

    def open(self, i: int) -> Any:
        """Image i as something PIL can read: a path, a binary file object or a PIL image."""
        raise NotImplementedError

    def describe(self, i: int) -> str:
        """Image i's full name for error lines (a path, archive:member)."""
        return f"{self.where}: {self.name(i)}"

    def name(self, i: int) -> str:
        """Image i's name within `where`."""
        return f"#{i}"

    def __getitem__(self, i: int) -> Item | Failure:
        try:
            image = decode(self.open(i), self.options)
        except RefusedImage as e:
            return Failure(i, self.describe(i), self.name(i), str(e), refused=True)
        except BadImage as e:
            return Failure(i, self.describe(i), self.name(i), str(e))
        except Exception as e:  # archive readers raise many types for damaged members
            reason = f"cannot read ({type(e).__name__}: {' '.join(str(e).split())[:160]})"
            return Failure(i, self.describe(i), self.name(i), reason)
        pixels = torch.from_numpy(image.pixels).permute(2, 0, 1).contiguous()
        notes = tuple(f"{self.describe(i)}: {note}" for note in image.notes)
        return pixels, (self.labels[i] if self.labels is not None else -1), notes


class Mirrored(torch.utils.data.Dataset):
    """StyleGAN2-ADA's x-flip: 2N items, item N + i being item i flipped left to right."""

    def __init__(self, images: DecodingDataset) -> None:
        self.images = images

    def __len__(self) -> int:
        return 2 * len(self.images)

    def __getitem__(self, i: int) -> Item | Failure:
        n = len(self.images)
        item = self.images[i % n]
        if i < n or isinstance(item, Failure):
            return item
        return item[0].flip(-1), item[1], item[2]


@dataclass
class Collated:
    """A batch of decoded items, and what went wrong or deserves a note on the way."""

    x: Tensor
    y: Tensor
    failures: list[Failure]
    notes: list[str]


def _collate(items: list[Item | Failure]) -> Collated:
    good = [it for it in items if not isinstance(it, Failure)]
    failures = [it for it in items if isinstance(it, Failure)]
    if not good:
        return Collated(torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), failures, [])
    notes = [note for _, _, item_notes in good for note in item_notes]
    return Collated(torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), failures, notes)


class Problems:
    """What the main process does with failures and notes: stop on a refused file (or on any bad
    one with `on_bad_image: error`), count skipped ones, warn once about each note, and stop once
    every one of the data set's files has failed since the last image that decoded."""

    def __init__(self, dataset: DecodingDataset) -> None:
        self.dataset = dataset
        self.skipped = 0
        self._failing: set[int] = set()  # the files that failed since the last image that decoded
        self._examples: list[Failure] = []  # the first few of them, for the error line
        self._noted: set[str] = set()

    def take(self, failures: list[Failure], notes: list[str], decoded: int) -> None:
        """Account for one batch (or one image): its failures, its notes and how many decoded."""
        for note in notes:
            if note not in self._noted:
                self._noted.add(note)
                warnings.warn(note, stacklevel=2)
        for failure in failures:
            if failure.refused:
                raise DataError(f"data.alpha=refuse: {failure.file} {failure.reason}; remove it, or set "
                                "data.alpha=composite (on data.background)")
            if self.dataset.on_bad_image == "error":
                raise DataError(f"cannot read image {failure.file} ({failure.reason}); fix or remove it, or set "
                                "data.on_bad_image=skip")
        self.skipped += len(failures)
        if decoded:
            self._failing.clear()
            self._examples.clear()
            return
        self._failing.update(f.index for f in failures)
        self._examples.extend(failures[: max(0, 3 - len(self._examples))])
        if len(self._failing) >= len(self.dataset):
            raise unreadable(self.dataset, self._examples)


def unreadable(dataset: DecodingDataset, failures: list[Failure]) -> DataError:
    """The one-line error for a data set none of whose images can be decoded, with examples."""
    examples = "; ".join(f"{f.name} ({f.reason})" for f in sorted(failures, key=lambda f: f.index))
    more = "; ..." if len(dataset) > len(failures) else ""
    return DataError(f"data.path: none of the {len(dataset):,} images in {dataset.where} could be read: "
                     f"{examples}{more}")


class _EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Endless batches of indices in the epoch order of `epoch_permutation`, from a position."""

    def __init__(self, position: Position, seed: int, local: slice) -> None:
        self.start = dict(position.state_dict())
        self.n, self.batch_size, self.seed, self.local = position.num_samples, position.batch_size, seed, local

    def __iter__(self):  # type: ignore[override]
        pos = Position(self.n, self.batch_size)
        pos.load_state_dict(self.start)
        order, order_epoch = None, -1
        while True:
            epoch, start = pos.advance()
            if epoch != order_epoch:
                order, order_epoch = epoch_permutation(self.n, self.seed, epoch), epoch
            yield order[start : start + self.batch_size][self.local].tolist()


class FolderBatches(Batches):
    """Batches decoded by DataLoader workers; position counts the batches the loop consumed."""

    def __init__(self, dataset: DecodingDataset, batch_size: int, seed: int, device: torch.device,
                 num_workers: int, has_labels: bool, rank: int = 0, world_size: int = 1,
                 mirrored: bool = False) -> None:
        self.dataset, self.seed, self.device = dataset, seed, device
        self.items: torch.utils.data.Dataset = Mirrored(dataset) if mirrored else dataset
        self.num_workers, self.has_labels, self.mirrored = num_workers, has_labels, mirrored
        self.position = Position(len(self.items), batch_size)  # type: ignore[arg-type]
        # Each rank decodes only its own slice of every global batch.
        self.local = local_slice(batch_size, rank, world_size)
        self.problems = Problems(dataset)
        self._stop: threading.Event | None = None
        self._it = None

    @property
    def skipped(self) -> int:  # type: ignore[override]
        return self.problems.skipped

    def stop_on(self, stop: threading.Event) -> None:
        self._stop = stop

    def _start(self) -> None:
        loader = torch.utils.data.DataLoader(
            self.items,
            batch_sampler=_EpochBatchSampler(self.position, self.seed, self.local),
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
        self._it = iter(loader)

    def __next__(self) -> Batch:
        if self._it is None:
            self._start()
        while True:
            batch: Collated = next(self._it)  # type: ignore[call-overload]
            self.position.advance()
            self.problems.take(batch.failures, batch.notes, len(batch.x))
            if len(batch.x):
                break
            # Nothing decoded: only now does a stop request end the wait. A batch that did decode
            # is the step under way (or the next one), which the stop lets finish and checkpoint,
            # and every process of a multi-process run reads the same batches up to it.
            if self._stop is not None and self._stop.is_set():
                raise StopWaiting
        x = to_unit_range(batch.x.to(self.device, non_blocking=True))
        return x, (batch.y.to(self.device, non_blocking=True) if self.has_labels else None)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position.load_state_dict(state)
        self._it = None


class DecodedImages(DataSource):
    """A data set of image files decoded on demand (a folder, a zip, a Hugging Face data set):
    decoded by DataLoader workers into resumable batches, or all at once with `in_memory`."""

    def __init__(self, info: DataInfo, dataset: DecodingDataset, num_workers: int, in_memory: bool,
                 xflip: bool = False) -> None:
        self.info, self.dataset = info, dataset
        self.num_workers, self.in_memory, self.xflip = num_workers, in_memory, xflip

    def _load_all(self) -> tuple[Tensor, Tensor | None, int]:
        problems = Problems(self.dataset)
        images, labels = [], []
        for i in range(len(self.dataset)):
            item = self.dataset[i]
            if isinstance(item, Failure):
                problems.take([item], [], 0)
                continue
            problems.take([], list(item[2]), 1)
            images.append(item[0])
            labels.append(item[1])
        y = torch.tensor(labels) if self.dataset.labels is not None else None
        return torch.stack(images), y, problems.skipped

    def count(self) -> int | None:
        # The files (those that fail to decode are skipped later), twice with xflip.
        return len(self.dataset) * (2 if self.xflip else 1)

    def batches(self, batch_size: int, seed: int, device: torch.device, rank: int = 0, world_size: int = 1
                ) -> Batches:
        if self.in_memory:
            x, y, skipped = self._load_all()
            stream = TensorBatches(x, y, batch_size, seed, device, rank, world_size, mirrored=self.xflip)
            stream.skipped = skipped
            return stream
        return FolderBatches(self.dataset, batch_size, seed, device, self.num_workers,
                             self.dataset.labels is not None, rank, world_size, mirrored=self.xflip)
