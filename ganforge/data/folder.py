"""Any folder of images as a data set; sub-folders become classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ganforge.data import DataInfo
from ganforge.data.decoded import DecodedImages, DecodingDataset
from ganforge.data.images import IMAGE_SUFFIXES, Channels, Crop, LabelSource, OnBadImage, Resolution
from ganforge.errors import DataError
from ganforge.params import Range
from ganforge.registry import DATASETS


class _FolderDataset(DecodingDataset):
    def __init__(self, files: list[Path], labels: list[int] | None, resolution: int, channels: int,
                 crop: str, on_bad_image: str) -> None:
        super().__init__(len(files), labels, resolution, channels, crop, on_bad_image)
        self.files = files

    def open(self, i: int) -> Path:
        return self.files[i]

    def describe(self, i: int) -> str:
        return str(self.files[i])


class ImageFolder(DecodedImages):
    def __init__(self, path: str, resolution: int, channels: int, crop: str, labels: str,
                 num_workers: int, in_memory: bool, on_bad_image: str) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DataError(f"data.path: no such folder: {root}")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"data.path: {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        # Class labels from sub-folders, as torchvision's ImageFolder: root/<class>/<image>.
        classes = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
        use_labels = labels == "auto" and len(classes) >= 2 and all(len(f.relative_to(root).parts) > 1 for f in files)
        self.classes = classes if use_labels else []
        label_list = [classes.index(f.relative_to(root).parts[0]) for f in files] if use_labels else None
        info = DataInfo("image_folder", (channels, resolution, resolution), num_classes=len(self.classes))
        super().__init__(info, _FolderDataset(files, label_list, resolution, channels, crop, on_bad_image),
                         num_workers, in_memory)


@DATASETS.register("image_folder")
def image_folder(
    path: str,
    resolution: Resolution = 64,
    channels: Channels = 3,
    crop: Crop = "center",
    labels: LabelSource = "auto",
    num_workers: Annotated[int, Range(ge=0)] = 2,
    in_memory: bool = False,
    on_bad_image: OnBadImage = "skip",
) -> ImageFolder:
    """Any folder of images (png, jpg, ...), resized and centre-cropped; sub-folders become classes."""
    return ImageFolder(path, resolution, channels, crop, labels, num_workers, in_memory, on_bad_image)
