"""Checkpoint files: atomic writes, checksums, a per-run index, and safe loading.

A checkpoint is one `torch.save` file holding plain data and tensors only (so it loads with
`weights_only=True`): the complete training state, the resolved config and versions. The index
in a run's checkpoint folder (INDEX_NAME) records each file's step, size and SHA-256 and which one
is latest; it is replaced atomically after the checkpoint itself, so it never points at a partial
file. Where a run folder keeps its checkpoints, and finding one there, is run.py's to say.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from ganforge.about import __version__
from ganforge.config.upgrade import upgrade_stored_config
from ganforge.errors import CheckpointError, read_problem

FORMAT = "ganforge-checkpoint"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# The temporary files of atomic_write_bytes, which a crash can leave behind.
TMP_GLOB = ".*.tmp-*"


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it. On failure the
    temporary file is removed and `path` is untouched."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # matches TMP_GLOB
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def serialize(payload: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint's `to_dict()` (torch's zip format)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


@dataclass(kw_only=True)
class Checkpoint:
    """What a checkpoint file holds; the one place that knows its top-level keys (the field names)."""

    # The header that `load_checkpoint` checks; a new checkpoint gets this ganforge's.
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    ganforge_version: str = __version__
    torch_version: str = str(torch.__version__)
    # The training state.
    step: int  # generator updates done
    config: dict[str, Any]  # the resolved config (config_to_dict): `sample` rebuilds the networks from it
    data_info: dict[str, Any]  # DataInfo.to_dict() of the data the networks were built for
    state: dict[str, Any]  # TrainState.state_dict(): networks, EMA, optimizers, schedules, scalers
    data: dict[str, Any]  # the batch stream's position
    rng: dict[str, Any]  # capture_rng(): every random generator

    def to_dict(self) -> dict[str, Any]:
        """Plain data and tensors for torch.save, in field order (the header first)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Checkpoint:
        """The inverse of `to_dict`; a missing key raises KeyError naming it."""
        return cls(**{f.name: payload[f.name] for f in fields(cls)})



def not_a_zip(path: Path) -> str:
    """Why `path`, which is not a complete zip file, cannot be a checkpoint: a zip that was cut
    short or damaged (it starts as one), or a file of another kind."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head == b"PK\x03\x04":
        return f"{path} is damaged or truncated (a zip file without its end: an interrupted copy or download?)"
    return f"{path} is not a ganforge checkpoint (not a torch zip file)"

def load_checkpoint(path: Path, expected_sha256: str | None = None) -> Checkpoint:
    """Load and check a checkpoint; every failure is a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if expected_sha256 is not None:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise CheckpointError(f"{path} is corrupted: its SHA-256 does not match the one recorded in {INDEX_NAME}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(not_a_zip(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses anything but tensors and plain data: code never runs.
        detail = next((ln.split("GLOBAL", 1)[1].split()[0] for ln in str(e).splitlines() if "GLOBAL" in ln), None)
        what = f" ({detail})" if detail else ""
        raise CheckpointError(f"{path} was refused: it holds objects other than tensors and plain data{what}, "
                              "which could run code when loaded; ganforge loads only checkpoints it wrote") from None
    except Exception as e:  # zip and storage errors of a damaged file come in many types
        raise CheckpointError(
            f"{path} could not be read ({type(e).__name__}): the file is damaged or truncated"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a ganforge checkpoint "
                              "(expected a file written by `ganforge train`)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by ganforge {payload.get('ganforge_version', '?')} (checkpoint format {version}); "
            f"this ganforge {__version__} reads format {FORMAT_VERSION} or older: upgrade ganforge"
        )
    try:
        ckpt = Checkpoint.from_dict(payload)
    except KeyError as e:
        raise CheckpointError(f"{path} is an incomplete ganforge checkpoint (it has no {e.args[0]!r})") from None
    check_layout(path, ckpt)
    # Keys added since it was written, with a default other than what its run did, get its setting.
    return replace(ckpt, config=upgrade_stored_config(ckpt.config))


# Network layouts that earlier ganforge versions wrote and this one no longer builds: the
# generator kind, a state-dict key that only the retired layout has, and what it was.
RETIRED_LAYOUTS = (
    ("stylegan2", "convs.0.weight", "its stylegan2 is ganforge's earlier variant (bilinear resampling), not "
                                    "StyleGAN2-ADA's network that stylegan2 is now"),
)


class RetiredLayoutError(CheckpointError):
    """A checkpoint of a network layout this ganforge no longer builds (so are the run's others)."""


def check_layout(path: Path, ckpt: Checkpoint) -> None:
    """Refuse, in one line, a checkpoint whose networks have a layout this ganforge no longer builds."""
    generator = ckpt.config.get("generator") if isinstance(ckpt.config, dict) else None
    kind = generator.get("kind") if isinstance(generator, dict) else None
    weights = ckpt.state.get("G") if isinstance(ckpt.state, dict) else None
    for retired_kind, key, what in RETIRED_LAYOUTS:
        if kind == retired_kind and isinstance(weights, dict) and key in weights:
            raise RetiredLayoutError(f"{path} was written by an earlier ganforge and cannot be loaded: {what}; "
                                  "train it again with this ganforge (or keep the earlier ganforge to use it)")


@dataclass(frozen=True, kw_only=True)
class IndexEntry:
    """A checkpoint file as the index records it; the one place that knows an entry's keys (the
    field names)."""

    file: str  # the name in the checkpoint folder
    step: int
    figure: str | None = None  # best.pt only: the evaluation figure that picked it, and its value
    value: float | None = None
    sha256: str | None = None  # none recorded: the file is loaded unchecked
    bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON data in field order, leaving out what has no value."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexEntry:
        """The inverse of `to_dict`; TypeError or ValueError when it is not an entry."""
        entry = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        return replace(entry, file=str(entry.file), step=int(entry.step))


class CheckpointIndex:
    """The index of a run's checkpoint folder: files, steps, checksums, latest, best."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / INDEX_NAME
        self.entries: list[IndexEntry] = []
        self.latest: str | None = None
        self.best: IndexEntry | None = None  # best.pt, with the figure that picked it
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_bytes().decode("utf-8"))
                self.entries = [IndexEntry.from_dict(e) for e in data["checkpoints"]]
                self.latest = data.get("latest")
                best = data.get("best")
                self.best = None if best is None else IndexEntry.from_dict(best)
                if not isinstance(self.latest, (str, type(None))):
                    raise TypeError("latest of the wrong type")
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
                _, problem = read_problem(e) or ("", "not the index ganforge writes")
                raise CheckpointError(
                    f"{self.path} is damaged ({problem}); delete it to fall back to the checkpoint files"
                ) from None

    def entry(self, name: str) -> IndexEntry | None:
        """The entry of the file `name`: a regular checkpoint, or best.pt."""
        regular = next((e for e in self.entries if e.file == name), None)
        return regular or (self.best if self.best is not None and self.best.file == name else None)

    def add(self, name: str, step: int, sha256: str, nbytes: int) -> None:
        self.entries = [e for e in self.entries if e.file != name]
        self.entries.append(IndexEntry(file=name, step=step, sha256=sha256, bytes=nbytes))
        self.entries.sort(key=lambda e: e.step)
        self.latest = name

    def remove(self, name: str) -> None:
        self.entries = [e for e in self.entries if e.file != name]

    def save(self) -> None:
        data = {"format": "ganforge-checkpoint-index", "latest": self.latest,
                "checkpoints": [e.to_dict() for e in self.entries],
                "best": None if self.best is None else self.best.to_dict()}
        atomic_write_bytes(self.path, (json.dumps(data, indent=1) + "\n").encode())

    def newest_first(self) -> list[IndexEntry]:
        """Entries from the latest step back."""
        return sorted(self.entries, key=lambda e: e.step, reverse=True)
