"""`ganforge dataset`: a folder of images (or a zip) -> one zip of square PNGs with dataset.json.

The output is StyleGAN2-ADA's data set format, which `data: {kind: zip}` reads in place:
images named `00000/img00000000.png` (1,000 to a folder), `dataset.json` holding
`{"labels": [[name, class], ...] | null, "class_names": [...]}`. Every image is decoded and
checked once here, centre-cropped to a square and resized to the resolution as StyleGAN2-ADA's
`dataset_tool.py --transform=center-crop` does (the central min(w, h) square, then Lanczos), so
training decodes small PNGs and never meets a broken file. The zip is written to a temporary
file and renamed, so a failed or interrupted run leaves no half-written archive.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge.data.archive import LABELS_FILE, image_names, read_labels_file
from ganforge.data.images import IMAGE_SUFFIXES
from ganforge.errors import ConfigError, DataError

LABEL_MODES = ("auto", "folders", "json", "none")
# PIL modes whose pixels are not 8-bit: converting them to RGB clips rather than scales.
_WIDE_MODES = ("I", "F")


@dataclass
class DatasetSummary:
    """What `make_dataset` wrote and what it left out."""

    out: Path
    written: int
    resolution: int
    channels: int
    labels_from: str  # folders, json or none
    class_names: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    upscaled: int = 0
    seconds: float = 0.0

    def describe(self, max_listed: int = 10) -> str:
        """One paragraph for the user."""
        kind = "RGB" if self.channels == 3 else "greyscale"
        text = (f"wrote {self.written:,} images ({self.resolution}x{self.resolution} {kind} PNG) to {self.out} "
                f"in {self.seconds:.1f} s; ")
        if self.class_names:
            counts = ", ".join(f"{n} {c:,}" for n, c in zip(self.class_names, self.class_counts))
            text += f"{len(self.class_names)} classes from {self.labels_from} ({counts}); "
        else:
            text += "no labels; "
        total = self.written + len(self.skipped)
        if self.skipped:
            listed = "; ".join(f"{name} ({reason})" for name, reason in self.skipped[:max_listed])
            more = f"; and {len(self.skipped) - max_listed:,} more" if len(self.skipped) > max_listed else ""
            text += f"skipped {len(self.skipped):,} of {total:,} image files: {listed}{more}"
        else:
            text += f"skipped none of {total:,} image files"
        if self.upscaled:
            text += f"; {self.upscaled:,} images had a side under {self.resolution} px and were upscaled"
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {"out": str(self.out), "written": self.written, "resolution": self.resolution,
                "channels": self.channels, "labels_from": self.labels_from, "class_names": self.class_names,
                "class_counts": self.class_counts, "upscaled": self.upscaled, "seconds": round(self.seconds, 2),
                "skipped": [{"file": n, "reason": r} for n, r in self.skipped]}


class _Skip(Exception):
    """An image file that cannot go into the data set; the message says why."""


def center_crop_resize(img: Any, resolution: int) -> Any:
    """The central min(w, h) square of a PIL image, resized to resolution (Lanczos), as StyleGAN2-ADA."""
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = img.crop((left, top, left + side, top + side))
    if side == resolution:
        return square
    return square.resize((resolution, resolution), Image.Resampling.LANCZOS)


def prepare_image(source: Any, resolution: int, channels: int) -> tuple[bytes, bool]:
    """Decode, check, crop and resize one image file (path or bytes) -> (PNG bytes, was upscaled)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            if img.mode.split(";")[0] in _WIDE_MODES:
                raise _Skip(f"{img.mode} pixels (16-bit or float); convert it to 8-bit first")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP, multi-page TIFF: the first frame
            img = img.convert("RGB" if channels == 3 else "L")
    except _Skip:
        raise
    except Exception as e:  # PIL raises many types for damaged or foreign files
        raise _Skip(f"cannot decode: {' '.join(str(e).split())[:120] or type(e).__name__}") from None
    upscaled = min(img.size) < resolution
    out = io.BytesIO()
    center_crop_resize(img, resolution).save(out, format="png", compress_level=1)
    return out.getvalue(), upscaled


def _prepare_or_reason(task: tuple[Any, int, int]) -> tuple[bytes | None, bool, str]:
    try:
        data, upscaled = prepare_image(*task)
        return data, upscaled, ""
    except _Skip as e:
        return None, False, str(e)


# --------------------------------------------------------------------------------------------
# Sources: a folder or a zip, as (name, reader) pairs
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    names: list[str]  # image files, relative posix paths, sorted
    read: Callable[[str], Any]  # name -> a path (folder) or bytes (zip)
    labels_json: bytes | None  # dataset.json's bytes, if there is one
    where: str


def _open_source(src: Path) -> tuple[_Source, zipfile.ZipFile | None]:
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        labels_file = src / LABELS_FILE
        source = _Source([p.relative_to(src).as_posix() for p in files], lambda name: str(src / name),
                         labels_file.read_bytes() if labels_file.is_file() else None, str(src))
        return source, None
    if src.is_file() and zipfile.is_zipfile(src):
        archive = zipfile.ZipFile(src)
        raw = archive.read(LABELS_FILE) if LABELS_FILE in archive.namelist() else None
        return _Source(image_names(archive), archive.read, raw, str(src)), archive
    if src.exists():
        raise DataError(f"SRC: {src} is neither a folder of images nor a zip archive")
    raise DataError(f"SRC: no such folder or zip: {src}")


def _class_of(name: str) -> str | None:
    parts = name.split("/")
    return parts[0] if len(parts) > 1 else None


def _resolve_labels(source: _Source, mode: str) -> tuple[str, dict[str, int] | None, list[str]]:
    """(labels_from, {image: class} or None, class names) for a label mode."""
    json_labels, json_names = (None, [])
    if source.labels_json is not None:
        json_labels, json_names = read_labels_file(source.labels_json, f"{source.where}/{LABELS_FILE}")
    if mode == "auto":
        classes = {_class_of(n) for n in source.names}
        if json_labels is not None:
            mode = "json"
        elif None not in classes and len(classes) >= 2:
            mode = "folders"
        else:
            mode = "none"
    if mode == "none":
        return "none", None, []
    if mode == "json":
        if json_labels is None:
            state = "has \"labels\": null" if source.labels_json is not None else f"has no {LABELS_FILE}"
            raise DataError(f"--labels json: {source.where} {state}; use --labels folders or --labels none")
        num = max(json_labels.values(), default=-1) + 1
        names = json_names if len(json_names) == num else [str(k) for k in range(num)]
        return "json", json_labels, names
    classes = sorted({c for c in (_class_of(n) for n in source.names) if c is not None})
    if not classes:
        raise DataError(f"--labels folders: {source.where} has no sub-folders of images (one per class); "
                        "use --labels none")
    index = {c: k for k, c in enumerate(classes)}
    return "folders", {n: index[c] for n in source.names if (c := _class_of(n)) is not None}, classes


# --------------------------------------------------------------------------------------------
# The tool
# --------------------------------------------------------------------------------------------


def _tasks(source: _Source, names: list[str], resolution: int, channels: int) -> Iterator[tuple[Any, int, int]]:
    for name in names:
        yield source.read(name), resolution, channels


def _prepared(tasks: Iterator[tuple[Any, int, int]], workers: int, window: int = 512
              ) -> Iterator[tuple[bytes | None, bool, str]]:
    """prepare_image over the tasks in order, in `workers` processes (0: this one)."""
    if workers <= 0:
        yield from map(_prepare_or_reason, tasks)
        return
    with ProcessPoolExecutor(workers) as pool:
        while True:
            # A window at a time, so that a large zip is never read into memory whole.
            chunk = [t for _, t in zip(range(window), tasks)]
            if not chunk:
                return
            yield from pool.map(_prepare_or_reason, chunk, chunksize=16)


def make_dataset(src: Path, out: Path, resolution: int, labels: str = "auto", channels: int = 3,
                 overwrite: bool = False, workers: int = 0, progress: bool = True) -> DatasetSummary:
    """Check, crop and resize every image of `src` (folder or zip) into the zip `out`, with dataset.json."""
    from tqdm import tqdm

    if labels not in LABEL_MODES:
        raise ConfigError(f"--labels {labels}: use one of {', '.join(LABEL_MODES)}")
    if channels not in (1, 3):
        raise ConfigError(f"--channels {channels}: use 1 (greyscale) or 3 (RGB)")
    if not 4 <= resolution <= 1024:
        raise ConfigError(f"--resolution {resolution}: use a side between 4 and 1024 px")
    if out.suffix.lower() != ".zip":
        raise ConfigError(f"--out {out}: end the name in .zip")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise ConfigError(f"--out {out}: is the source; write the data set to another file")
    if out.exists() and not overwrite:
        raise DataError(f"--out {out} exists; pass --overwrite to replace it")
    start = time.perf_counter()
    source, archive = _open_source(src)
    try:
        if not source.names:
            raise DataError(f"SRC: {src} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        labels_from, label_map, class_names = _resolve_labels(source, labels)
        summary = DatasetSummary(out, 0, resolution, channels, labels_from, class_names, [0] * len(class_names))
        names = []
        for name in source.names:
            if label_map is not None and name not in label_map:
                why = "not in a class sub-folder" if labels_from == "folders" else f"no label in {LABELS_FILE}"
                summary.skipped.append((name, why))
            else:
                names.append(name)
        if not names:
            raise DataError(f"SRC: none of the {len(source.names)} images has a label ({summary.skipped[0][1]}); "
                            "use --labels none")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            entries = _write_zip(tmp, source, names, label_map, summary, workers, progress, tqdm)
            if not entries:
                reasons = "; ".join(f"{n} ({r})" for n, r in summary.skipped[:3])
                raise DataError(f"SRC: none of the {len(source.names)} images could be used: {reasons}")
            os.replace(tmp, out)
        except OSError as e:
            raise DataError(f"--out {out}: cannot write ({e.strerror or e}); check the folder and the free space"
                            ) from None
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        if archive is not None:
            archive.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _write_zip(tmp: Path, source: _Source, names: list[str], label_map: dict[str, int] | None,
               summary: DatasetSummary, workers: int, progress: bool, tqdm: Any) -> int:
    """Write the prepared images and dataset.json into `tmp` (fsynced); returns the images written."""
    labelled: list[list[Any]] = []
    with open(tmp, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
        results = _prepared(_tasks(source, names, summary.resolution, summary.channels), workers)
        for name, (data, upscaled, reason) in tqdm(zip(names, results), total=len(names), desc="images",
                                                   unit="img", disable=not progress, leave=False):
            if data is None:
                summary.skipped.append((name, reason))
                continue
            idx = f"{summary.written:08d}"
            entry = f"{idx[:5]}/img{idx}.png"  # StyleGAN2-ADA's layout: 1,000 images to a folder
            archive.writestr(entry, data)
            summary.written += 1
            summary.upscaled += upscaled
            if label_map is not None:
                label = label_map[name]
                labelled.append([entry, label])
                summary.class_counts[label] += 1
        meta = {"labels": labelled if label_map is not None else None, "class_names": summary.class_names}
        archive.writestr(LABELS_FILE, json.dumps(meta))
        archive.close()
        raw.flush()
        os.fsync(raw.fileno())
    return summary.written
