"""Networks from other tools' files (StyleGAN2-ADA pickles, rosinality checkpoints,
BigGAN-PyTorch weights), read without running their code and turned into ganforge's layout.

Each reader module exposes `detect(path) -> bool` (cheap: looks at names and magic bytes) and
`read(path) -> Imported`; `ganforge import` picks the first reader whose `detect` says yes and
writes an ordinary run folder from what `read` returns (`to_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import importlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor

from ganforge.errors import CheckpointError

# The readers, tried in this order. Imported by name: a reader that is not there is skipped.
READERS = ("ganforge.interop.stylegan2_ada", "ganforge.interop.rosinality", "ganforge.interop.biggan_pytorch")
ZIP_MAGIC = b"PK\x03\x04"
FORMATS = "StyleGAN2-ADA/StyleGAN3 network pickles, rosinality stylegan2-pytorch checkpoints, BigGAN-PyTorch weights"


@dataclass
class Imported:
    """What a reader found, already in ganforge's parameter names and shapes."""

    source: str  # what was read, for messages and the run's records ("StyleGAN2-ADA network pickle")
    data_shape: dict[str, int]  # channels, resolution, num_classes (0: unconditional)
    generator: dict[str, Any]  # the ganforge `generator` config section ({"kind": ..., **params})
    discriminator: dict[str, Any] | None  # the `discriminator` section, or None when the source has no D
    G: dict[str, Tensor] | None  # state dicts that load with strict=True into the built networks
    D: dict[str, Tensor] | None
    G_ema: dict[str, Tensor] | None
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. {"ada_p": 0.23, "augment": {...}}


def file_problem(error: OSError) -> str:
    """What went wrong opening a file, in words."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not a file"
    return f"cannot read it ({error.strerror or type(error).__name__})"


def readers() -> list[ModuleType]:
    """The reader modules that are installed, in READERS order."""
    found = []
    for name in READERS:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:
                raise  # the reader is there but something it needs is not: a real error
    return found


def read(path: str | Path) -> Imported:
    """The networks in a file (or folder) of another tool; one CheckpointError line when no reader
    knows it or the reader refuses it."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    for reader in readers():
        if reader.detect(path):
            try:
                return complete(reader.read(path))
            except (KeyError, AttributeError, TypeError, ValueError, IndexError) as e:
                # A file of the detected kind whose contents are not laid out as that kind's are.
                detail = " ".join(str(e).split())[:120]
                raise CheckpointError(f"{path}: not laid out as a {reader.FORMAT} ({type(e).__name__}: {detail}); "
                                      "ganforge cannot import it") from None
    if _truncated_zip(path):
        raise CheckpointError(f"{path}: a PyTorch (zip) file without the directory at its end: damaged or "
                              "truncated (an interrupted copy or download?); ganforge cannot import it")
    kind = "folder" if path.is_dir() else "file"
    raise CheckpointError(f"{path} is not a {kind} ganforge can import; it reads {FORMATS}")


def _truncated_zip(path: Path) -> bool:
    """A file that starts as a zip archive (torch.save's format) but cannot be opened as one."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == ZIP_MAGIC and not zipfile.is_zipfile(path)


# --------------------------------------------------------------------------------------------
# From what a reader found to a ganforge checkpoint
# --------------------------------------------------------------------------------------------


def complete(imported: Imported) -> Imported:
    """The networks a ganforge run holds (G and G_ema), one filled from the other where the file has
    only one, with a note saying so. BigGAN-PyTorch writes G_ema.pth only with --ema (off by
    default), and samples from G then; a file with only an averaged G gives it to training as G."""
    if (imported.G is None) == (imported.G_ema is None):
        return imported
    missing, present = ("G_ema", "G") if imported.G_ema is None else ("G", "G_ema")
    note = (f"the file has no {missing}; ganforge's {missing} starts as a copy of its {present}"
            + (" (samples, eval and export use it: the file's model was trained without a moving average)"
               if missing == "G_ema" else " (fine-tuning trains it)"))
    weights = imported.G if imported.G is not None else imported.G_ema
    extras = {**imported.extras, "notes": [*imported.extras.get("notes", []), note]}
    return dataclasses.replace(imported, G=weights, G_ema=weights, extras=extras)


def import_config(imported: Imported, origin: str) -> dict[str, Any]:
    """The raw config of an imported run: the networks, a shape-only data section, and ADA with
    the file's p where it had one."""
    shape = imported.data_shape
    discriminator = imported.discriminator or default_discriminator(imported.generator)
    config: dict[str, Any] = {
        "data": {"kind": "shape", "channels": shape["channels"], "resolution": shape["resolution"],
                 "num_classes": shape["num_classes"], "source": origin},
        "generator": dict(imported.generator),
        "discriminator": dict(discriminator),
    }
    if imported.extras.get("ada_p") is not None:
        config["regularizers"] = [{"kind": "ada", **imported.extras.get("augment", {})}]
    return config


def default_discriminator(generator: dict[str, Any]) -> dict[str, Any]:
    """The D section of a file without a discriminator: the generator's kind with its defaults,
    conditional where G is (its weights stay fresh; fine-tuning trains it)."""
    import inspect

    from ganforge.registry import DISCRIMINATORS

    section: dict[str, Any] = {"kind": generator["kind"]}
    accepted = inspect.signature(DISCRIMINATORS.get(generator["kind"], "discriminator").builder).parameters
    if "conditional" in accepted:
        section["conditional"] = bool(generator.get("conditional", False))
    return section


def to_checkpoint(imported: Imported, origin: str) -> Any:
    """A ganforge Checkpoint (step 0, no optimizer state) holding the imported networks, their
    resolved config and ADA's p; every network is rebuilt and checked against the file's tensors."""
    import torch

    from ganforge.build import build_networks, load_weights
    from ganforge.checkpoint import Checkpoint
    from ganforge.config import config_to_dict, parse_config
    from ganforge.data import DataInfo
    from ganforge.errors import ConfigError

    imported = complete(imported)
    try:
        cfg = parse_config(import_config(imported, origin), default_source=origin)
        shape = imported.data_shape
        info = DataInfo("shape", (shape["channels"], shape["resolution"], shape["resolution"]), shape["num_classes"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the fresh D of a file without one is the same every time
            G, D, regularizers = build_networks(cfg, info)
    except ConfigError as e:
        raise CheckpointError(f"{origin}: its settings do not make a ganforge network ({e})") from None
    state: dict[str, Any] = {"step": 0}
    for name, module, weights in (("G", G, imported.G), ("G_ema", G, imported.G_ema), ("D", D, imported.D)):
        if weights is None:
            continue
        load_weights(module, weights, name, origin, described_by="its settings")
        state[name] = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    for kind, reg in regularizers:
        if kind == "ada":
            reg.p = torch.tensor(float(imported.extras["ada_p"]))
    state["regularizers"] = [reg.state_dict() for _, reg in regularizers]
    return Checkpoint(step=0, config=config_to_dict(cfg), data_info=info.to_dict(), state=state, data={}, rng={})
