"""Images in a zip archive, read in place: StyleGAN2-ADA's data set format.

The archive holds image files (any folder layout) and, optionally, `dataset.json` with
`{"labels": [["path/in/zip.png", label], ...]}` (or `"labels": null`). Nothing is extracted:
each DataLoader worker opens its own handle on the archive and decodes the images it is given.
`ganforge dataset` writes such archives; so does StyleGAN2-ADA's `dataset_tool.py`.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from ganforge.data import DataInfo
from ganforge.data.decode import WHITE, WIDE_ASPECT, Alpha, Aspect, Byte, Channels, Colour, Crop, ImageOptions, PadMode
from ganforge.data.decoded import DecodedImages, DecodingDataset
from ganforge.data.images import IMAGE_SUFFIXES, LabelSource, OnBadImage, Resolution
from ganforge.data.zipfiles import LABELS_FILE, image_names, read_labels_file
from ganforge.errors import DataError
from ganforge.params import Range
from ganforge.registry import DATASETS


class _ZipDataset(DecodingDataset):
    """Images read from a zip archive by name; every process opens its own handle."""

    def __init__(self, path: Path, names: list[str], labels: list[int] | None, options: ImageOptions,
                 on_bad_image: str) -> None:
        super().__init__(len(names), labels, options, on_bad_image, str(path))
        self.path, self.names = path, names
        self._archive: zipfile.ZipFile | None = None
        self._pid = -1

    def archive(self) -> zipfile.ZipFile:
        """This process's handle on the archive."""
        # A handle inherited through fork shares its file offset with the parent's: reopen.
        if self._archive is None or self._pid != os.getpid():
            self._archive, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._archive

    def open(self, i: int) -> io.BytesIO:
        return io.BytesIO(self.archive().read(self.names[i]))

    def describe(self, i: int) -> str:
        return f"{self.path}:{self.names[i]}"

    def name(self, i: int) -> str:
        return self.names[i]

    def __getstate__(self) -> dict[str, Any]:
        # Workers started by pickling (spawn) open their own handle too.
        return {**self.__dict__, "_archive": None, "_pid": -1}


def _open_archive(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise DataError(f"data.path: no such file: {path} (make one with: ganforge dataset IMAGES --out {path.name})")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"data.path: {path} is not a readable zip archive ({e})") from None


class ZipImages(DecodedImages):
    def __init__(self, path: str, options: ImageOptions, labels: str, num_workers: int, in_memory: bool,
                 on_bad_image: str, xflip: bool) -> None:
        """`options.resolution` 0: the side of the archive's (square) images."""
        zip_path = Path(path).expanduser()
        with _open_archive(zip_path) as archive:
            names = image_names(archive)
            if not names:
                raise DataError(f"data.path: {zip_path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            label_map, class_names = None, []
            if labels == "auto" and LABELS_FILE in archive.namelist():
                label_map, class_names = read_labels_file(archive.read(LABELS_FILE), f"{zip_path}:{LABELS_FILE}")
            if not options.resolution:
                options = replace(options, resolution=_first_resolution(archive, names[0], zip_path))
        label_list = None
        if label_map is not None:
            keys = [n.replace("\\", "/") for n in names]  # as read_labels_file normalises them
            missing = [n for n in keys if n not in label_map]
            if missing:
                raise DataError(f"{zip_path}:{LABELS_FILE} has no label for {missing[0]} ({len(missing)} images "
                                "without one); add them, or set data.labels=none")
            label_list = [label_map[n] for n in keys]
        num_classes = max(label_list) + 1 if label_list else 0
        self.classes = class_names if len(class_names) == num_classes else [str(k) for k in range(num_classes)]
        side = options.resolution
        info = DataInfo("zip", (options.channels, side, side), num_classes=num_classes)
        dataset = _ZipDataset(zip_path, names, label_list, options, on_bad_image)
        super().__init__(info, dataset, num_workers, in_memory, xflip)


def _first_resolution(archive: zipfile.ZipFile, name: str, path: Path) -> int:
    """The side of the archive's first image (square, as ganforge dataset writes them)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(archive.read(name))) as img:
            w, h = img.size
    except Exception as e:  # PIL raises many types for damaged files
        raise DataError(f"data.resolution: cannot read {path}:{name} to find the resolution ({type(e).__name__}); "
                        "set data.resolution") from None
    if w != h or not 4 <= w <= 1024:
        raise DataError(f"data.resolution: the images in {path} are {w}x{h}, not square between 4 and 1024 px; "
                        "set data.resolution (they are framed to squares as data.crop says)")
    return w


@DATASETS.register("zip")
def zip_archive(
    path: str,
    resolution: Resolution | None = None,
    channels: Channels = 3,
    crop: Crop = "center",
    aspect: Aspect = WIDE_ASPECT,
    pad_mode: PadMode = "constant",
    pad_value: Byte = 0,
    alpha: Alpha = "composite",
    background: Colour = WHITE,
    xflip: bool = False,
    labels: LabelSource = "auto",
    num_workers: Annotated[int, Range(ge=0)] = 2,
    in_memory: bool = False,
    on_bad_image: OnBadImage = "skip",
) -> ZipImages:
    """Images in a zip read in place, labels from its dataset.json (StyleGAN2-ADA's format; ganforge dataset)."""
    options = ImageOptions(resolution or 0, channels, crop, aspect, pad_mode, pad_value, alpha, background)
    return ZipImages(path, options, labels, num_workers, in_memory, on_bad_image, xflip)
