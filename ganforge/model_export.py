"""Writing a model folder (ganforge.model_folder reads it): the weights, config.json, the model
card and its sample grid, from a loaded checkpoint. Apart from the reader because it samples the
generator (ganforge.generation.drawing), which reads model folders itself."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.model_folder import CARD_FILE, CONFIG_FILE, FILES, FORMAT, FORMAT_VERSION, GRID_FILE, MODEL_FILE


def state_tensors(G: nn.Module) -> dict[str, torch.Tensor]:
    """G's state dict as safetensors stores it: contiguous CPU tensors that share no memory."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in G.state_dict().items()}


# Samples in the card's grid: seeds 0 to GRID_SEEDS - 1 (a row of GRID_COLUMNS per class when conditional).
GRID_SEEDS = 32
GRID_COLUMNS = 8


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or a folder that holds anything, unless `overwrite` (which
    replaces the export's own files and leaves any other file there alone)."""
    from ganforge.errors import GanforgeError

    if out.exists() and not out.is_dir():
        raise GanforgeError(f"--out {out} is a file; a safetensors export is a folder: give a folder's name")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GanforgeError(f"--out {out} is a folder that is not empty; choose a new folder, or --overwrite to "
                            f"replace the export's files there ({', '.join(FILES)})")


def export_model_folder(loaded: Any, out: Path, network: str, overwrite: bool = False) -> dict[str, Any]:
    """Write `loaded` (a sample.LoadedGenerator from a checkpoint) as a model folder: the weights,
    config.json, the card and its sample grid. Returns config.json's content."""
    from safetensors.torch import save

    from ganforge import __version__
    from ganforge.build import build_data
    from ganforge.checkpoint import atomic_write_bytes
    from ganforge.config import parse_config
    from ganforge.model_card import CardFacts, images_seen, latest_evaluation, render
    from ganforge.models import count_parameters
    from ganforge.run import RunDir, read_environment

    check_target(out, overwrite)
    run = RunDir.of_checkpoint(loaded.checkpoint).path
    in_w = bool(getattr(loaded.G, "supports_truncation", False))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network": network,
        "step": loaded.step,
        "generator": loaded.config["generator"],
        "latent_dim": int(loaded.G.latent_dim),
        "num_classes": loaded.num_classes,
        "output_shape": list(loaded.info.shape),
        "output_range": [-1.0, 1.0] if loaded.info.is_image else None,
        "noise": "standard normal",
        "truncation": "w" if in_w else "z",
        "data_info": loaded.info.to_dict(),
        "config": loaded.config,
        "ganforge_version": __version__,
        "torch_version": str(torch.__version__),
        "trained_with": loaded.trained_with,
    }
    try:
        count = build_data(parse_config(loaded.config)).count()
    except Exception:  # the data is not here (another machine's folder): the card says unknown
        count = None
    grid_image, caption = _grid(loaded)
    facts = CardFacts(
        name=run.name, network=network, step=loaded.step, config=loaded.config, data_info=loaded.info.to_dict(),
        parameters=count_parameters(loaded.G), latent_dim=int(loaded.G.latent_dim), num_classes=loaded.num_classes,
        truncation_space=meta["truncation"], data_count=count,
        images_seen=images_seen(run, loaded.step, loaded.config),
        evaluation=latest_evaluation(run, loaded.step, loaded.config),
        sessions=[s for s in read_environment(run) if s.get("step", 0) <= loaded.step],
        trained_with=loaded.trained_with,
        exported_with={"ganforge": __version__, "torch": str(torch.__version__)},
        grid_caption=caption,
    )
    weights = save(state_tensors(loaded.G), metadata={"format": "pt", "network": network, "step": str(loaded.step)})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / MODEL_FILE, weights)
    atomic_write_bytes(out / CONFIG_FILE, (json.dumps(meta, indent=1) + "\n").encode())
    buffer = io.BytesIO()
    grid_image.save(buffer, format="png")
    atomic_write_bytes(out / GRID_FILE, buffer.getvalue())
    atomic_write_bytes(out / CARD_FILE, render(facts).encode())
    return meta


def _grid(loaded: Any) -> tuple[Any, str]:
    """The card's picture and its caption: per-seed samples (a row per class), or a scatter plot of 2D points."""
    from ganforge.generation.drawing import draw, seed_batches
    from ganforge.imaging import enlarge, grid, scatter

    if not loaded.info.is_image:
        points = draw(loaded, 5000, seed=0)
        return scatter(points), "5,000 samples (`ganforge sample . --num 5000 --seed 0`)"
    classes = loaded.num_classes
    if classes:
        rows = [torch.cat(list(seed_batches(loaded, list(range(GRID_COLUMNS)), class_index=c)))
                for c in range(min(classes, 10))]
        images = torch.cat(rows)
        caption = (f"Seeds 0-{GRID_COLUMNS - 1}, a row per class (0 to {min(classes, 10) - 1}); "
                   f"`ganforge sample . --seeds 0-{GRID_COLUMNS - 1} --class N`")
    else:
        images = torch.cat(list(seed_batches(loaded, list(range(GRID_SEEDS)))))
        caption = f"Seeds 0-{GRID_SEEDS - 1}; `ganforge sample . --seeds 0-{GRID_SEEDS - 1}`"
    noise = " (constant per-pixel noise)" if getattr(loaded.G, "noise_modes", ()) else ""
    return enlarge(grid(images, nrow=GRID_COLUMNS), 64, images.shape[-1]), caption + noise
