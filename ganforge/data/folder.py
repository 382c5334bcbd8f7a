"""Any folder of images as a data set; sub-folders become classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ganforge.data import DataInfo
from ganforge.data.decode import WHITE, WIDE_ASPECT, Alpha, Aspect, Byte, Channels, Colour, Crop, ImageOptions, PadMode
from ganforge.data.decoded import DecodedImages, DecodingDataset
from ganforge.data.images import IMAGE_SUFFIXES, LabelSource, OnBadImage, Resolution
from ganforge.errors import DataError
from ganforge.params import Range
from ganforge.registry import DATASETS


class _FolderDataset(DecodingDataset):
    def __init__(self, files: list[Path], labels: list[int] | None, options: ImageOptions, on_bad_image: str,
                 where: str) -> None:
        super().__init__(len(files), labels, options, on_bad_image, where)
        self.files = files

    def open(self, i: int) -> Path:
        return self.files[i]

    def describe(self, i: int) -> str:
        return str(self.files[i])

    def name(self, i: int) -> str:
        return self.files[i].relative_to(self.where).as_posix()


class ImageFolder(DecodedImages):
    def __init__(self, path: str, options: ImageOptions, labels: str, num_workers: int, in_memory: bool,
                 on_bad_image: str, xflip: bool) -> None:
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
        side = options.resolution
        info = DataInfo("image_folder", (options.channels, side, side), num_classes=len(self.classes))
        super().__init__(info, _FolderDataset(files, label_list, options, on_bad_image, str(root)),
                         num_workers, in_memory, xflip)


@DATASETS.register("image_folder")
def image_folder(
    path: str,
    resolution: Resolution = 64,
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
) -> ImageFolder:
    """Any folder of images (png, jpg, ...), framed to squares (crop); sub-folders become classes."""
    options = ImageOptions(resolution, channels, crop, aspect, pad_mode, pad_value, alpha, background)
    return ImageFolder(path, options, labels, num_workers, in_memory, on_bad_image, xflip)
