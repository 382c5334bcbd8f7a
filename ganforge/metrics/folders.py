"""Metrics on folders of image files: generated images against a reference folder or a data set.

Images are read as pytorch-fid reads them: every file at its own size, converted to RGB, pixel
values / 255, then the same extractor and formulas as `ganforge eval` (the FID Inception
resizes to 299x299 itself). With one sub-folder per class on both sides, `ifid` compares the
classes of the same name (against a data set: its class names, or the indices 0, 1, ...).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge.build import build, build_extractor
from ganforge.config import Component
from ganforge.data import DataSource, epoch_permutation
from ganforge.data.images import IMAGE_SUFFIXES
from ganforge.errors import ConfigError, DataError
from ganforge.metrics.catalog import (
    EvalOptions,
    check_counts,
    check_metrics,
    declared,
    default_metrics,
    minimums,
    views_of,
)
from ganforge.metrics.evaluate import EvalResult, Evaluator, check_evaluable, run_metrics
from ganforge.metrics.features import Features, LabelledBatches, extract_features
from ganforge.metrics.views import build_views
from ganforge.registry import DATASETS, METRICS


@dataclass
class ImageFiles:
    """The image files of a folder (a subset of them, in a fixed random order) and their classes."""

    root: Path
    files: list[Path]
    class_names: list[str]  # one sub-folder per class; empty when the folder is not laid out so
    classes: list[str] | None  # each file's sub-folder


def list_images(root: Path, option: str, num: int | None = None) -> ImageFiles:
    """The images under `root` (all, or `num` of them drawn with seed 0); `option` names the flag in errors."""
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"{option}: no such folder: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{option}: {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if num is not None and num < len(files):
        files = [files[i] for i in epoch_permutation(len(files), 0, 0)[:num].tolist()]
    parts = [f.relative_to(root).parts for f in files]
    classes = [p[0] for p in parts] if all(len(p) > 1 for p in parts) else None
    names = sorted(set(classes)) if classes and len(set(classes)) >= 2 else []
    return ImageFiles(root, files, names, classes if names else None)


class _NativeImages(torch.utils.data.Dataset):
    """Image files at their own size, RGB uint8 (C, H, W), or the reason one cannot be read."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor | str:
        from PIL import Image

        try:
            with Image.open(self.files[i]) as img:
                arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except Exception as e:  # PIL raises many types for damaged files
            return f"{self.files[i]} ({type(e).__name__})"
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def folder_batches(images: ImageFiles, labels: list[int] | None, batch_size: int, num_workers: int
                   ) -> LabelledBatches:
    """(uint8 images, labels) batches of a folder; images of one batch share a size (runs of equal sizes)."""
    loader = torch.utils.data.DataLoader(_NativeImages(images.files), batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=list)
    skipped: list[str] = []
    position = 0
    for items in loader:
        run: list[tuple[Tensor, int]] = []
        for item in items:
            label = labels[position] if labels is not None else -1
            position += 1
            if isinstance(item, str):
                skipped.append(item)
                continue
            if run and run[0][0].shape != item.shape:
                yield _stack(run, labels is not None)
                run = []
            run.append((item, label))
        if run:
            yield _stack(run, labels is not None)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {images.root}: {skipped[0]}", stacklevel=2)


def _stack(run: list[tuple[Tensor, int]], labelled: bool) -> tuple[Tensor, Tensor | None]:
    return torch.stack([x for x, _ in run]), (torch.tensor([y for _, y in run]) if labelled else None)


def _class_indices(images: ImageFiles, class_names: list[str], option: str, reference: str) -> list[int]:
    """Each image's class index in the reference's list of class names (or as an integer name)."""
    assert images.classes is not None
    index = {name: k for k, name in enumerate(class_names)}
    out = []
    for name in images.classes:
        if name in index:
            out.append(index[name])
        elif name.isdigit() and int(name) < len(class_names):
            out.append(int(name))
        else:
            raise DataError(f"{option}: sub-folder {name!r} is not a class of {reference} "
                            f"({', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''})")
    return out


def evaluate_folders(images: Path, reference: Path | None = None, data_cfg: Component | None = None,
                     metrics: Sequence[str] = ("fid",), extractor_cfg: Component | None = None,
                     device: torch.device | None = None, num: int | None = None, real_num: int | None = None,
                     batch_size: int = 50, num_workers: int = 2, cache_dir: str | None = None,
                     progress: bool = True, options: EvalOptions | None = None,
                     dinov2_weights: str | None = None) -> EvalResult:
    """Score the images in a folder against a reference folder or a data set (`data_cfg`), as `ganforge eval`.
    Every count, name and weights file is checked before any image is read."""
    start = time.perf_counter()
    device = device or torch.device("cpu")
    options = options or EvalOptions()
    extractor_cfg = extractor_cfg or Component("inception", {"weights": None, "download": True})
    metrics = default_metrics(list(metrics), True)
    fake_files = list_images(images, "--images", num)
    check_metrics(metrics, True, num_samples=len(fake_files.files),
                  num_where=f"--images {images} ({len(fake_files.files)} images)")
    for name in metrics:
        if "generator" in declared(name).needs:
            raise ConfigError(f"--metrics {name}: {name} needs the generator and its run, not a folder of images: "
                              f"ganforge eval RUN --metrics {name}")
    real_views = views_of(metrics, options, real=True)
    if reference is not None and data_cfg is not None:
        raise ConfigError("give --reference DIR or --data CONFIG, not both")
    if real_views and reference is None and data_cfg is None:
        raise ConfigError(f"{', '.join(m for m in metrics if minimums(m, options)[1])} compare with real images: "
                          "give --reference DIR (a folder of real images) or --data CONFIG (a data set)")
    check_counts(metrics, options, len(fake_files.files), f"--images {images} ({len(fake_files.files)} images)")
    by_class = [m for m in metrics if METRICS.get(m).accepts.needs_labels]  # ifid: compares class by class
    wants_classes = bool(by_class)
    if wants_classes and fake_files.classes is None:
        raise ConfigError(f"--metrics {by_class[0]}: put the images of {images} in one sub-folder per class "
                          "(named as the reference's classes)")
    real: dict[str, Features] = {}
    source: DataSource | None = None
    ref_record: dict[str, Any] = {}
    fake_labels: list[int] | None = None
    real_files: ImageFiles | None = None
    if data_cfg is not None:
        source = _build_source(data_cfg)
        # The metrics are checked against the data before the extractor loads (or downloads) its weights.
        check_evaluable(metrics, source.info, len(fake_files.files))
    elif reference is not None and real_views:
        real_files = list_images(reference, "--reference", real_num)
        check_counts(metrics, options, real=len(real_files.files),
                     real_where=f"--reference {reference} ({len(real_files.files)} images)")
    needs_main = bool({"main", "torch-fidelity"} & set(views_of(metrics, options)))
    main = build_extractor(extractor_cfg, device) if needs_main else None
    if source is not None:
        evaluator = Evaluator(data_cfg, source, metrics, len(fake_files.files), main, device,
                              real_samples=real_num or len(fake_files.files), batch_size=batch_size,
                              cache_dir=cache_dir, progress=progress, options=options, dinov2_weights=dinov2_weights)
        extractors = evaluator.extractors
        if real_views:
            real = evaluator.real_views()
            ref_record = evaluator.reference
        if wants_classes:
            names = list(getattr(source, "classes", []) or [str(k) for k in range(source.info.num_classes)])
            fake_labels = _class_indices(fake_files, names, "--images", f"data.kind {source.info.name}")
    else:
        extractors = build_views(views_of(metrics, options), main, options.resize, dinov2_weights, device)
        if real_files is not None:
            real_labels = None
            if wants_classes:
                if real_files.classes is None:
                    raise ConfigError(f"--metrics {by_class[0]}: put the images of {reference} in one sub-folder "
                                      "per class")
                real_labels = _class_indices(real_files, real_files.class_names, "--reference", str(reference))
                fake_labels = _class_indices(fake_files, real_files.class_names, "--images", str(reference))
            real = extract_features({v: extractors[v] for v in real_views},
                                    folder_batches(real_files, real_labels, batch_size, num_workers),
                                    len(real_files.files), f"images of {reference}", device, progress)
            ref_record = {"folder": str(reference), "num_samples": len(next(iter(real.values())).values)}
    fake = extract_features(extractors, folder_batches(fake_files, fake_labels, batch_size, num_workers),
                            len(fake_files.files), f"images of {images}", device, progress)
    figures, settings = run_metrics(metrics, fake, real, source, options)
    names = ", ".join(e.name for e in extractors.values() if e is not None)
    return EvalResult(figures, len(next(iter(fake.values())).values), names, ref_record,
                      time.perf_counter() - start, settings)


def _build_source(data_cfg: Component) -> DataSource:
    source = build(DATASETS, data_cfg, "data")
    if not source.info.is_image:
        raise ConfigError(f"--data: data.kind {data_cfg.kind} holds 2D points, not images; name an image data set")
    return source
