"""A generator shared as a folder, as model hubs expect: `model.safetensors` (the weights, no
pickled code), `config.json` (everything needed to rebuild the network), `README.md` (the model
card) and `samples.png` (the grid the card shows).

`ganforge export RUN --format safetensors --out DIR` writes it (ganforge.model_export);
`ganforge sample DIR` and `read_model_folder` read it back. The weights load with the safetensors
library alone: the tensors are the generator's state dict under its own names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ganforge.errors import CheckpointError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
GRID_FILE = "samples.png"
FILES = (MODEL_FILE, CONFIG_FILE, CARD_FILE, GRID_FILE)
FORMAT = "ganforge-generator"
FORMAT_VERSION = 1


def is_model_folder(path: Path) -> bool:
    """Whether `path` is a folder holding an exported generator (model.safetensors and config.json)."""
    path = Path(path)
    return path.is_dir() and (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file()


@dataclass
class SharedGenerator:
    """A generator read from a model folder: the network (eval mode, no gradients), the data
    it makes, the run's resolved config and config.json itself."""

    G: nn.Module
    info: Any  # DataInfo
    step: int
    config: dict[str, Any]
    meta: dict[str, Any]
    folder: Path


def read_model_folder(path: str | Path, device: str = "cpu") -> SharedGenerator:
    """Rebuild the generator of a model folder from config.json and load model.safetensors into
    it; every failure is one CheckpointError naming the file."""
    from ganforge.build import build_stored_networks, load_weights, resolve_device

    folder = Path(path)
    config_file, model_file = folder / CONFIG_FILE, folder / MODEL_FILE
    try:
        meta = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_file}: not readable as JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{config_file}: not a ganforge generator's config (no \"format\": \"{FORMAT}\")")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{config_file}: written by a newer ganforge (format {meta['format_version']}); "
                              "upgrade ganforge to read it")
    G, _, info = build_stored_networks(meta.get("config"), meta.get("data_info"), config_file)
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(model_file))
    except Exception as e:  # the library's errors for a damaged or foreign file
        raise CheckpointError(f"{model_file}: not readable as safetensors ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]})") from None
    load_weights(G, tensors, str(meta.get("network", "G_ema")), model_file, described_by=CONFIG_FILE)
    G = G.to(resolve_device(device)).eval().requires_grad_(False)
    return SharedGenerator(G, info, int(meta.get("step", 0)), meta["config"], meta, folder)
