"""`ganforge dataset`: a folder of images (or a zip) -> one zip of square PNGs with dataset.json.

The output is StyleGAN2-ADA's data set format, which `data: {kind: zip}` reads in place:
images named `00000/img00000000.png` (1,000 to a folder), `dataset.json` holding
`{"labels": [[name, class], ...] | null, "class_names": [...]}`. Every image goes once through
the loaders' own decoding (`ganforge.data.decode`: the first frame, EXIF orientation, 16-bit
scaling, transparency, then `--crop` to a square; `center` is StyleGAN2-ADA's
`--transform=center-crop`, `center-wide` its `center-crop-wide`), so training decodes small PNGs
and never meets a broken file. Mirroring is not done here: it is the loader's `data.xflip`, as
in the reference.

At scale: images are decoded in worker processes, a bounded number of chunks in flight, and
streamed into the archive in source order; neither the file list, the labels nor the archive's
directory is held whole in memory. The zip is written to a temporary file beside `--out` and
renamed when complete, so a failed or interrupted run leaves no partial archive; `--out` may not
lie inside the source.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge.data.decode import ALPHAS, CROPS, IMAGE_SUFFIXES, PAD_MODES, BadImage, ImageOptions, RefusedImage, decode
from ganforge.data.zipfiles import LABELS_FILE, StoredZipWriter, image_names, read_labels_file
from ganforge.errors import ConfigError, DataError

LABEL_MODES = ("auto", "folders", "json", "none")
CHUNK = 16  # images per task sent to a worker process


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
    crop: str = "center"

    def describe(self, max_listed: int = 10) -> str:
        """One paragraph for the user."""
        kind = "RGB" if self.channels == 3 else "greyscale"
        text = (f"wrote {self.written:,} images ({self.resolution}x{self.resolution} {kind} PNG, crop {self.crop}) "
                f"to {self.out} in {self.seconds:.1f} s; ")
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
            text += f"; {self.upscaled:,} images were enlarged to reach {self.resolution} px"
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {"out": str(self.out), "written": self.written, "resolution": self.resolution,
                "channels": self.channels, "crop": self.crop, "labels_from": self.labels_from,
                "class_names": self.class_names, "class_counts": self.class_counts, "upscaled": self.upscaled,
                "seconds": round(self.seconds, 2), "skipped": [{"file": n, "reason": r} for n, r in self.skipped]}


# --------------------------------------------------------------------------------------------
# Sources: a folder or a zip, walked in sorted order without listing it whole
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """Where the images are: ("folder", root) or ("zip", path), read by name in any process."""

    kind: str
    root: str
    labels_json: bytes | None  # dataset.json's bytes, if there is one
    zip_names: list[str] | None = None  # a zip's directory is in memory anyway (zipfile reads it whole)

    @property
    def where(self) -> str:
        return self.root

    def names(self) -> Iterator[str]:
        """The image files, relative posix paths, in the order of sorted(Path.rglob('*'))."""
        if self.zip_names is not None:
            yield from self.zip_names
            return
        yield from _walk(Path(self.root), "")


def _walk(folder: Path, prefix: str) -> Iterator[str]:
    """Image files below `folder`, depth first, each folder's entries sorted by name (as sorted
    Paths compare: by parts)."""
    with os.scandir(folder) as entries:
        ordered = sorted(entries, key=lambda e: e.name)
    for entry in ordered:
        name = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), f"{name}/")
        elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
            yield name


def _open_source(src: Path) -> _Source:
    if src.is_dir():
        labels_file = src / LABELS_FILE
        return _Source("folder", str(src), labels_file.read_bytes() if labels_file.is_file() else None)
    if src.is_file() and zipfile.is_zipfile(src):
        try:
            with zipfile.ZipFile(src) as archive:
                raw = archive.read(LABELS_FILE) if LABELS_FILE in archive.namelist() else None
                return _Source("zip", str(src), raw, image_names(archive))
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
            raise DataError(f"SRC: {src} is a damaged zip archive ({' '.join(str(e).split())[:160]})") from None
    if src.exists():
        raise DataError(f"SRC: {src} is neither a folder of images nor a zip archive")
    raise DataError(f"SRC: no such folder or zip: {src}")


@functools.lru_cache(maxsize=4)
def _archive(path: str) -> zipfile.ZipFile:
    """This process's handle on a source archive (each worker process opens its own)."""
    return zipfile.ZipFile(path)


def _read(kind: str, root: str, name: str) -> Any:
    """An image as decode() takes it: a path in a folder, the bytes of a zip member."""
    if kind == "folder":
        return os.path.join(root, name)
    try:
        return io.BytesIO(_archive(root).read(name))
    except Exception as e:  # a damaged member: bad CRC, an unknown compression, encrypted, cut short
        raise BadImage(f"damaged in the archive ({' '.join(str(e).split())[:160] or type(e).__name__})") from None


def _class_of(name: str) -> str | None:
    parts = name.split("/")
    return parts[0] if len(parts) > 1 else None


@dataclass
class _Plan:
    """What one pass over the names found: how many, and how they are labelled."""

    total: int
    labels_from: str
    label_map: dict[str, int] | None
    class_names: list[str]
    folder_classes: dict[str, int] | None  # labels by sub-folder, looked up per name


def _plan(source: _Source, mode: str) -> _Plan:
    """Count the images and resolve the label mode (one pass over the names, nothing kept per image)."""
    total, classes, flat = 0, set(), False
    for name in source.names():
        total += 1
        c = _class_of(name)
        flat |= c is None
        if c is not None:
            classes.add(c)
    if not total:
        raise DataError(f"SRC: {source.where} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    json_labels, json_names = None, []
    if source.labels_json is not None:
        json_labels, json_names = read_labels_file(source.labels_json, f"{source.where}/{LABELS_FILE}")
    if mode == "auto":
        mode = "json" if json_labels is not None else "folders" if not flat and len(classes) >= 2 else "none"
    if mode == "none":
        return _Plan(total, "none", None, [], None)
    if mode == "json":
        if json_labels is None:
            state = "has \"labels\": null" if source.labels_json is not None else f"has no {LABELS_FILE}"
            raise DataError(f"--labels json: {source.where} {state}; use --labels folders or --labels none")
        num = max(json_labels.values(), default=-1) + 1
        names = json_names if len(json_names) == num else [str(k) for k in range(num)]
        return _Plan(total, "json", json_labels, names, None)
    if not classes:
        raise DataError(f"--labels folders: {source.where} has no sub-folders of images (one per class); "
                        "use --labels none")
    ordered = sorted(classes)
    return _Plan(total, "folders", None, ordered, {c: k for k, c in enumerate(ordered)})


def _label(plan: _Plan, name: str) -> int | None:
    """The class of an image, or None where it has none (such images are skipped)."""
    if plan.label_map is not None:
        return plan.label_map.get(name)
    if plan.folder_classes is not None:
        c = _class_of(name)
        return plan.folder_classes.get(c) if c is not None else None
    return -1  # unlabelled data: every image is used


# --------------------------------------------------------------------------------------------
# Decoding, in worker processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """One image's outcome: PNG bytes, or why not (`refused`: an error for the whole run)."""

    png: bytes | None
    upscaled: bool = False
    reason: str = ""
    notes: tuple[str, ...] = ()
    refused: bool = False


def prepare_image(source: Any, options: ImageOptions) -> tuple[bytes, bool, tuple[str, ...]]:
    """Decode and frame one image (a path or binary file) -> (PNG bytes, was enlarged, notes)."""
    from PIL import Image

    image = decode(source, options)
    pixels = image.pixels[:, :, 0] if image.pixels.shape[2] == 1 else image.pixels
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="png", compress_level=1)
    return out.getvalue(), image.upscaled, image.notes


def _prepare_chunk(kind: str, root: str, names: list[str], options: ImageOptions) -> list[_Prepared]:
    """Each named image of a source ("folder" or "zip", at `root`) prepared: in a worker process."""
    results = []
    for name in names:
        try:
            png, upscaled, notes = prepare_image(_read(kind, root, name), options)
            results.append(_Prepared(png, upscaled, notes=notes))
        except RefusedImage as e:
            results.append(_Prepared(None, reason=str(e), refused=True))
        except BadImage as e:
            results.append(_Prepared(None, reason=str(e)))
    return results


def _serve(work: Callable[[list[str]], list[_Prepared]], tasks: Any, results: Any) -> None:
    """A worker process: (index, chunk) from `tasks` -> (index, work(chunk)) into `results`, until
    None, or until the process that started it is gone. Ctrl+C is left to that process, which ends
    the workers with SIGTERM: they die quietly."""
    import multiprocessing
    import queue
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the handler a fork of `ganforge` inherits
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # blocked while forked
    # Exiting never waits to flush `results`: when the main process is gone, nothing reads them (and a
    # sibling's copy of the pipe would keep a blocked write waiting forever); at a normal end all are read.
    results.cancel_join_thread()
    parent = multiprocessing.parent_process()
    while parent is None or parent.is_alive():  # a worker never outlives `ganforge dataset`, however it ends
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            continue
        if task is None:
            return
        index, chunk = task
        results.put((index, work(chunk)))


def _in_order(work: Callable[[list[str]], list[_Prepared]], chunks: Iterable[list[str]], workers: int
              ) -> Iterator[list[_Prepared]]:
    """work(chunk) for each chunk, in order, in `workers` processes (0: this one), with at most
    two chunks per worker in flight: memory stays flat however many images there are. On an
    error, Ctrl+C or SIGTERM the workers are ended at once, mid-chunk."""
    if workers <= 0:
        yield from map(work, chunks)
        return
    import multiprocessing
    import queue

    tasks, results = multiprocessing.Queue(), multiprocessing.Queue()
    processes = [multiprocessing.Process(target=_serve, args=(work, tasks, results), daemon=True)
                 for _ in range(workers)]
    sent, done, waiting = 0, 0, {}  # chunks sent, chunks yielded, results that came early
    finished = False
    try:
        # Ctrl+C or SIGTERM waits until every worker is started (and known, to be ended).
        with _signals_held():
            for process in processes:
                process.start()
        source = iter(chunks)
        while True:
            while sent - done < 2 * workers and (chunk := next(source, None)) is not None:
                # Ctrl+C inside put can leave the queue's lock taken, and the queue's finalizer then
                # waits for it forever at exit: signals wait until put returns. The first put starts
                # the queue's feeder thread, which so inherits the held mask and never takes them.
                with _signals_held():
                    tasks.put((sent, chunk))
                sent += 1
            if done == sent:
                break
            while done not in waiting:
                try:
                    index, result = results.get(timeout=1.0)
                    waiting[index] = result
                except queue.Empty:
                    ended = [p.exitcode for p in processes if p.exitcode is not None]
                    if ended:
                        raise DataError(f"a worker process ended unexpectedly (exit code {ended[0]}; out of "
                                        "memory?); try fewer --workers") from None
            yield waiting.pop(done)
            done += 1
        finished = True
    finally:
        if finished:
            with _signals_held():
                for _ in processes:
                    tasks.put(None)
            for process in processes:
                process.join()
        else:
            tasks.cancel_join_thread()  # nothing will read what is still queued
            started = [p for p in processes if p.pid is not None]
            for process in started:
                process.terminate()
            for process in started:
                process.join()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back in this block (delivered at its end), where the platform can."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _chunks(names: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for name in names:
        chunk.append(name)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------------------------
# The tool
# --------------------------------------------------------------------------------------------


def check_out(src: Path, out: Path, overwrite: bool) -> None:
    """Refuse an --out that is not a zip name, lies in (or is) the source, or exists without --overwrite."""
    if out.suffix.lower() != ".zip":
        raise ConfigError(f"--out {out}: end the name in .zip")
    if src.exists():
        source, target = src.resolve(), out.resolve()
        if target == source:
            raise ConfigError(f"--out {out}: is the source; write the data set to another file")
        if src.is_dir() and source in target.parents:
            raise ConfigError(f"--out {out}: lies inside the source folder {src}; write the data set outside it")
    if out.exists() and not overwrite:
        raise DataError(f"--out {out} exists; pass --overwrite to replace it")


def make_dataset(src: Path, out: Path, options: ImageOptions, labels: str = "auto", overwrite: bool = False,
                 workers: int = 0, progress: bool = True, report: Callable[[str], None] | None = None
                 ) -> DatasetSummary:
    """Decode, check and frame every image of `src` (folder or zip) into the zip `out`, with
    dataset.json. `report` receives a line for each skipped file and each note as it happens
    (default: the progress display's stream)."""
    from ganforge.progress import Progress

    if labels not in LABEL_MODES:
        raise ConfigError(f"--labels {labels}: use one of {', '.join(LABEL_MODES)}")
    if options.channels not in (1, 3):
        raise ConfigError(f"--channels {options.channels}: use 1 (greyscale) or 3 (RGB)")
    if not 4 <= options.resolution <= 1024:
        raise ConfigError(f"--resolution {options.resolution}: use a side between 4 and 1024 px")
    for flag, value, choices in (("--crop", options.crop, CROPS), ("--pad-mode", options.pad_mode, PAD_MODES),
                                 ("--alpha", options.alpha, ALPHAS)):
        if value not in choices:
            raise ConfigError(f"{flag} {value}: use one of {', '.join(choices)}")
    check_out(src, out, overwrite)
    start = time.perf_counter()
    source = _open_source(src)
    plan = _plan(source, labels)
    summary = DatasetSummary(out, 0, options.resolution, options.channels, plan.labels_from, plan.class_names,
                             [0] * len(plan.class_names), crop=options.crop)
    bar = Progress(plan.total, enabled=progress, unit="images")
    say = report or bar.write
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            _write(raw, source, plan, options, summary, workers, bar, say)
            raw.flush()
            os.fsync(raw.fileno())
        if not summary.written:
            reasons = "; ".join(f"{n} ({r})" for n, r in summary.skipped[:3])
            raise DataError(f"SRC: none of the {plan.total:,} images could be used: {reasons}")
        os.replace(tmp, out)
    except OSError as e:
        raise DataError(f"--out {out}: cannot write ({e.strerror or e}); check the folder and the free space"
                        ) from None
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _write(raw: Any, source: _Source, plan: _Plan, options: ImageOptions, summary: DatasetSummary, workers: int,
           bar: Any, say: Callable[[str], None]) -> None:
    """Stream the prepared images, then dataset.json, into the open file `raw`."""
    from ganforge.logrecord import IMG_PER_S, SKIPPED_IMAGES, STEP

    folder = Path(raw.name).parent
    archive = StoredZipWriter(raw, spool_dir=folder)
    in_flight: deque[tuple[str, int]] = deque()  # (name, label) of the images sent to be decoded, in order

    def skip(name: str, reason: str) -> None:
        summary.skipped.append((name, reason))
        say(f"skipped {name}: {reason}")

    def to_decode() -> Iterator[str]:
        for name in source.names():
            label = _label(plan, name)
            if label is None:
                why = "not in a class sub-folder" if plan.labels_from == "folders" else f"no label in {LABELS_FILE}"
                skip(name, why)
                bar.update(1)
                continue
            in_flight.append((name, label))
            yield name

    started, shown = time.perf_counter(), 0
    # The labels are spooled to disk as they come (no list of the whole data set), then copied into dataset.json.
    with tempfile.TemporaryFile(dir=folder) as labels:
        labels.write(b'{"labels": ' + (b"null" if plan.labels_from == "none" else b"["))
        work = functools.partial(_prepare_chunk, source.kind, source.root, options=options)  # small to send
        for results in _in_order(work, _chunks(to_decode(), CHUNK), workers):
            for result in results:
                name, label = in_flight.popleft()
                if result.refused:
                    raise DataError(f"--alpha refuse: {name} {result.reason}; remove it, or use --alpha composite "
                                    "(on --background)")
                if result.png is None:
                    skip(name, result.reason)
                    continue
                for note in result.notes:
                    say(f"warning: {name}: {note}")
                index = f"{summary.written:08d}"
                entry = f"{index[:5]}/img{index}.png"  # StyleGAN2-ADA's layout: 1,000 images to a folder
                archive.add(entry, result.png)
                if plan.labels_from != "none":
                    labels.write((b", " if summary.written else b"") + json.dumps([entry, label]).encode())
                    summary.class_counts[label] += 1
                summary.written += 1
                summary.upscaled += result.upscaled
            bar.update(len(results))
            if bar.n * 10 // plan.total > shown or bar.n == plan.total:  # off a terminal: a line per 10 %
                shown = bar.n * 10 // plan.total
                rate = bar.n / max(time.perf_counter() - started, 1e-9)
                bar.show({STEP: bar.n, IMG_PER_S: rate, SKIPPED_IMAGES: len(summary.skipped)})
        labels.write((b"" if plan.labels_from == "none" else b"]") + b', "class_names": '
                     + json.dumps(summary.class_names).encode() + b"}")
        labels.seek(0)
        archive.add_file(LABELS_FILE, labels)
    archive.close()
