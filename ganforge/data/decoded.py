"""Data sets of image files decoded on demand (a folder, a zip, a Hugging Face data set): one item
at a time in DataLoader workers, batched in the epoch order of `epoch_permutation` so that a
resumed run continues the same stream."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ganforge.data import (
    Batch,
    Batches,
    DataInfo,
    DataSource,
    Position,
    TensorBatches,
    epoch_permutation,
    local_slice,
    to_unit_range,
)
from ganforge.data.images import decode_image
from ganforge.errors import DataError


class DecodingDataset(torch.utils.data.Dataset):
    """Images decoded on demand, in DataLoader workers: (uint8 image, label), or a one-line
    reason why an image could not be read (skipped or fatal, as `on_bad_image` says)."""

    def __init__(self, num: int, labels: list[int] | None, resolution: int, channels: int, crop: str,
                 on_bad_image: str) -> None:
        self.num, self.labels = num, labels
        self.resolution, self.channels, self.crop = resolution, channels, crop
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return self.num

    def open(self, i: int) -> Any:
        """Image i as something PIL can read: a path, a binary file object or a PIL image."""
        raise NotImplementedError

    def describe(self, i: int) -> str:
        """Image i's name for error lines."""
        return f"#{i}"

    def __getitem__(self, i: int) -> tuple[Tensor, int] | str:
        """(image, label), or a one-line description of why the image could not be read."""
        try:
            x = decode_image(self.open(i), self.resolution, self.channels, self.crop)
        except Exception as e:  # PIL (and archive readers) raise many types for damaged files
            return f"cannot read image {self.describe(i)} ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        return x, (self.labels[i] if self.labels is not None else -1)


def _collate(items: list[tuple[Tensor, int] | str]) -> tuple[Tensor, Tensor, list[str]]:
    good = [it for it in items if not isinstance(it, str)]
    errors = [it for it in items if isinstance(it, str)]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), errors
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), errors


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
                 num_workers: int, has_labels: bool, rank: int = 0, world_size: int = 1) -> None:
        self.dataset, self.seed, self.device = dataset, seed, device
        self.num_workers, self.has_labels = num_workers, has_labels
        self.position = Position(len(dataset), batch_size)
        # Each rank decodes only its own slice of every global batch.
        self.local = local_slice(batch_size, rank, world_size)
        self.skipped = 0
        self._it = None

    def _start(self) -> None:
        loader = torch.utils.data.DataLoader(
            self.dataset,
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
            x, y, errors = next(self._it)  # type: ignore[call-overload]
            self.position.advance()
            if errors and self.dataset.on_bad_image == "error":
                raise DataError(f"{errors[0]}; fix or remove it, or set data.on_bad_image=skip")
            self.skipped += len(errors)
            if len(x):
                break
        x = to_unit_range(x.to(self.device, non_blocking=True))
        return x, (y.to(self.device, non_blocking=True) if self.has_labels else None)

    def state_dict(self) -> dict[str, int]:
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position.load_state_dict(state)
        self._it = None


class DecodedImages(DataSource):
    """A data set of image files decoded on demand (a folder, a zip, a Hugging Face data set):
    decoded by DataLoader workers into resumable batches, or all at once with `in_memory`."""

    def __init__(self, info: DataInfo, dataset: DecodingDataset, num_workers: int, in_memory: bool) -> None:
        self.info, self.dataset = info, dataset
        self.num_workers, self.in_memory = num_workers, in_memory

    def _load_all(self) -> tuple[Tensor, Tensor | None, int]:
        items = [self.dataset[i] for i in range(len(self.dataset))]
        x, y, errors = _collate(items)
        if errors and self.dataset.on_bad_image == "error":
            raise DataError(f"{errors[0]}; fix or remove it, or set data.on_bad_image=skip")
        if not len(x):
            raise DataError(f"data.path: none of the {len(items)} images could be read")
        return x, (y if self.dataset.labels is not None else None), len(errors)

    def count(self) -> int | None:
        return len(self.dataset)  # the files; those that fail to decode are skipped later

    def batches(self, batch_size: int, seed: int, device: torch.device, rank: int = 0, world_size: int = 1
                ) -> Batches:
        if self.in_memory:
            x, y, skipped = self._load_all()
            stream = TensorBatches(x, y, batch_size, seed, device, rank, world_size)
            stream.skipped = skipped
            return stream
        return FolderBatches(self.dataset, batch_size, seed, device, self.num_workers,
                             self.dataset.labels is not None, rank, world_size)
