"""Shipping the generator: TorchScript or ONNX files that run without ganforge.

The exported module maps noise z (N, latent_dim) -- and class labels (N,) for conditional
models -- to images in [-1, 1] (N, C, H, W) or vectors (N, D). Its metadata travels inside the
file: the TorchScript archive carries `ganforge.json`, the ONNX model the same keys in its
metadata_props.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.about import __version__
from ganforge.checkpoint import atomic_write_bytes
from ganforge.errors import GanforgeError
from ganforge.generation.drawing import LoadedGenerator

METADATA_FILE = "ganforge.json"


class _Unconditional(nn.Module):
    def __init__(self, G: nn.Module, extra: dict[str, Any]) -> None:
        super().__init__()
        self.G, self.extra = G, extra

    def forward(self, z: Tensor) -> Tensor:
        return self.G(z, None, **self.extra)


class _Conditional(nn.Module):
    def __init__(self, G: nn.Module, extra: dict[str, Any]) -> None:
        super().__init__()
        self.G, self.extra = G, extra

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.G(z, labels, **self.extra)


def metadata(loaded: LoadedGenerator, fmt: str, truncation: float | None) -> dict[str, Any]:
    """What a user of the file needs to call it and read its output."""
    info = loaded.info
    return {
        "format": fmt,
        "inputs": ["z", "labels"] if loaded.num_classes else ["z"],
        "latent_dim": int(loaded.G.latent_dim),
        "num_classes": loaded.num_classes,
        "output_shape": list(info.shape),
        "resolution": info.shape[1] if info.is_image else None,
        "channels": info.shape[0] if info.is_image else None,
        "output_range": [-1.0, 1.0] if info.is_image else None,
        "noise": "standard normal",
        "truncation": truncation,
        "pixel_noise": "const" if "const" in getattr(loaded.G, "noise_modes", ()) else None,
        "data": info.name,
        "step": loaded.step,
        "ganforge_version": __version__,
        "torch_version": str(torch.__version__),
    }


def _example(loaded: LoadedGenerator, batch: int = 2) -> tuple[Tensor, ...]:
    device = next(loaded.G.parameters()).device
    z = torch.randn(batch, loaded.G.latent_dim, generator=torch.Generator().manual_seed(0)).to(device)
    if loaded.num_classes:
        return z, torch.arange(batch, device=device) % loaded.num_classes
    return (z,)


def export(loaded: LoadedGenerator, fmt: str, out: Path, truncation: float | None = None) -> dict[str, Any]:
    """Write the generator to `out` as `fmt` (torchscript or onnx); returns its metadata."""
    from ganforge.generation import truncation_for

    trunc = truncation_for(loaded.G, truncation)
    if truncation is not None and not trunc.in_w:
        raise GanforgeError(f"--truncation: the {type(loaded.G).__name__} is truncated in z, which the file takes as "
                            "input: export without --truncation and draw z from the truncated normal")
    extra = dict(trunc.g_kwargs)
    if "const" in getattr(loaded.G, "noise_modes", ()):
        # An exported stylegan2 uses its constant noise: the same z gives the same image, and the
        # graph holds no random-number operator (ONNX's differ between runtimes).
        extra["noise_mode"] = "const"
    module = (_Conditional if loaded.num_classes else _Unconditional)(loaded.G, extra).eval()
    meta = metadata(loaded, fmt, truncation)
    example = _example(loaded)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notices
            traced = torch.jit.trace(module, example, check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(meta)})
        atomic_write_bytes(out, buffer.getbuffer())
    elif fmt == "onnx":
        _export_onnx(module, example, out, meta)
    else:
        raise GanforgeError(f"--format {fmt}: use torchscript or onnx")
    return meta


def _export_onnx(module: nn.Module, example: tuple[Tensor, ...], out: Path, meta: dict[str, Any]) -> None:
    try:
        import onnx
    except ImportError:
        raise GanforgeError("ONNX export needs the onnx packages: pip install 'ganforge[onnx]'") from None
    names = ["z", "labels"][: len(example)]
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(module, example, input_names=names, output_names=["samples"],
                                        dynamic_shapes={n: {0: batch} for n in names}, dynamo=True,
                                        verbose=False)
        except Exception as e:  # the exporter reports unsupported operators in many ways
            raise GanforgeError(f"ONNX export failed ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    model = program.model_proto
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(model)
    atomic_write_bytes(out, model.SerializeToString())


def read_torchscript_metadata(path: Path) -> dict[str, Any]:
    """The metadata of an exported TorchScript file (for `ganforge info` and tests)."""
    extra = {METADATA_FILE: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])
