"""Hugging Face `datasets`: a `save_to_disk` folder, parquet files, or (online) a data set on the Hub.

`datasets` is an optional extra (`pip install 'ganforge[hf]'`), imported only when a config
uses `data: {kind: hf}`. Images are decoded by ganforge, from the column's encoded bytes (or
file paths), in DataLoader workers, with the same resizing and bad-image handling as folders.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

from ganforge.data import DataInfo
from ganforge.data.decode import WHITE, WIDE_ASPECT, Alpha, Aspect, Byte, Channels, Colour, Crop, ImageOptions, PadMode
from ganforge.data.decoded import DecodedImages, DecodingDataset
from ganforge.data.images import OnBadImage, Resolution
from ganforge.errors import DataError
from ganforge.params import Range
from ganforge.registry import DATASETS


def import_datasets() -> Any:
    """The `datasets` package, or a one-line DataError saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise DataError("data.kind hf needs the Hugging Face datasets package: pip install 'ganforge[hf]'") from None
    return datasets


def load_hf(path: str, split: str, cache_dir: str | None) -> Any:
    """One split of a data set: a save_to_disk folder, parquet file(s), a local data folder or a Hub name."""
    datasets = import_datasets()
    local = Path(path).expanduser()
    try:
        if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DataError(f"data.split: {local} has no split {split!r}; its splits: {', '.join(loaded)}")
                return loaded[split]
            return loaded
        if local.suffix == ".parquet" or "*" in path:
            if "*" not in path and not local.is_file():
                raise DataError(f"data.path: no such file: {local}")
            return datasets.load_dataset("parquet", data_files={split: str(local)}, split=split, cache_dir=cache_dir)
        return datasets.load_dataset(str(local) if local.exists() else path, split=split, cache_dir=cache_dir)
    except DataError:
        raise
    except Exception as e:  # datasets raises many types: missing files, no network, unknown splits
        where = "folder" if local.exists() else "name"
        message = " ".join(str(e).split())[:300]
        raise DataError(f"data.path: cannot load the Hugging Face data set {path!r} ({type(e).__name__}: {message}); "
                        f"check the {where} and data.split, or offline use a save_to_disk folder or parquet files"
                        ) from None


class _HFDataset(DecodingDataset):
    """Rows of one column of a Hugging Face data set, decoded as images."""

    def __init__(self, table: Any, column: str, where: str, labels: list[int] | None, options: ImageOptions,
                 on_bad_image: str) -> None:
        super().__init__(len(table), labels, options, on_bad_image, where)
        self.table, self.column = table, column

    def open(self, i: int) -> Any:
        value = self.table[i][self.column]
        if isinstance(value, dict):  # an Image feature read undecoded: {"bytes": ..., "path": ...}
            if value.get("bytes"):
                return io.BytesIO(value["bytes"])
            if value.get("path"):
                return value["path"]
            raise ValueError("the image has neither bytes nor a path")
        if isinstance(value, (bytes, bytearray)):
            return io.BytesIO(value)
        if isinstance(value, str):
            return value
        from PIL import Image

        if isinstance(value, Image.Image):
            return value
        import numpy as np

        return Image.fromarray(np.asarray(value, dtype=np.uint8))

    def describe(self, i: int) -> str:
        return f"row {i} of {self.where}"

    def name(self, i: int) -> str:
        return f"row {i}"


class HFImages(DecodedImages):
    def __init__(self, path: str, split: str, image_column: str, label_column: str | None, options: ImageOptions,
                 num_workers: int, in_memory: bool, on_bad_image: str, xflip: bool, cache_dir: str | None) -> None:
        datasets = import_datasets()
        table = load_hf(path, split, cache_dir)
        where = f"{path} ({split})"
        columns = list(table.column_names)
        if image_column not in columns:
            raise DataError(f"data.image_column: {where} has no column {image_column!r}; its columns: "
                            f"{', '.join(columns)}")
        if label_column == "auto":
            label_column = "label" if "label" in columns else None
        if label_column is not None and label_column not in columns:
            raise DataError(f"data.label_column: {where} has no column {label_column!r}; its columns: "
                            f"{', '.join(columns)} (or set data.label_column=null for no labels)")
        labels, self.classes = None, []
        if label_column is not None:
            labels, self.classes = _class_labels(table, label_column, where, datasets)
        if isinstance(table.features[image_column], datasets.Image):
            # Keep the encoded bytes: ganforge decodes (and skips damaged images) in the workers.
            table = table.cast_column(image_column, datasets.Image(decode=False))
        table = table.select_columns([image_column])
        side = options.resolution
        info = DataInfo("hf", (options.channels, side, side), num_classes=len(self.classes))
        dataset = _HFDataset(table, image_column, where, labels, options, on_bad_image)
        super().__init__(info, dataset, num_workers, in_memory, xflip)


def _class_labels(table: Any, column: str, where: str, datasets: Any) -> tuple[list[int], list[str]]:
    """(label of each row, class names) from a ClassLabel or integer column."""
    feature = table.features[column]
    values = list(table[column])
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise DataError(f"data.label_column: {where} column {column!r} is {feature}, not integer class ids; "
                        "name a ClassLabel or integer column, or set data.label_column=null")
    bad = [v for v in values if v < 0]
    if bad:
        raise DataError(f"data.label_column: {where} has rows labelled {bad[0]} (no label, as in many test "
                        "splits); use a labelled split or set data.label_column=null")
    if isinstance(feature, datasets.ClassLabel):
        names = [str(n) for n in feature.names]
    else:
        names = [str(k) for k in range(max(values) + 1)] if values else []
    return values, names


@DATASETS.register("hf")
def hugging_face(
    path: str,
    split: str = "train",
    image_column: str = "image",
    label_column: str | None = "auto",
    resolution: Resolution = 64,
    channels: Channels = 3,
    crop: Crop = "center",
    aspect: Aspect = WIDE_ASPECT,
    pad_mode: PadMode = "constant",
    pad_value: Byte = 0,
    alpha: Alpha = "composite",
    background: Colour = WHITE,
    xflip: bool = False,
    num_workers: Annotated[int, Range(ge=0)] = 2,
    in_memory: bool = False,
    on_bad_image: OnBadImage = "skip",
    cache_dir: str | None = None,
) -> HFImages:
    """Hugging Face datasets: a save_to_disk folder, parquet files or the Hub (pip install 'ganforge[hf]')."""
    options = ImageOptions(resolution, channels, crop, aspect, pad_mode, pad_value, alpha, background)
    return HFImages(path, split, image_column, label_column, options, num_workers, in_memory, on_bad_image, xflip,
                    cache_dir)
