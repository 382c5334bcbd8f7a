"""rosinality/stylegan2-pytorch checkpoints (`checkpoint/NNNNNN.pt` of its train.py, or what its
convert_weight.py writes), read with torch.load(weights_only=True).

Such a file is a dict of state dicts: `g_ema` always, `g` and `d` from training (with `args`, an
argparse.Namespace, and `ada_aug_p`), `latent_avg` from converted official weights. Its networks
are StyleGAN2 config F (skip G, residual D, [1, 3, 3, 1] blur, minibatch std over groups of 4)
with another module layout; they are renamed onto ganforge's `stylegan2`, which computes the same
function. rosinality's G has no running average of w: the truncation centre is `latent_avg` where
the file has it, otherwise the mean w of 10,000 z drawn from a fixed seed (its generate.py uses
the mean of 4,096).
"""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganforge.errors import CheckpointError
from ganforge.interop import Imported, file_problem
from ganforge.interop.stylegan2_ada import TORCH_LEGACY_MAGIC

FORMAT = "rosinality stylegan2-pytorch checkpoint"
W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0
MARKERS = (b"g_ema", b"to_rgb1")  # names every such checkpoint holds, in the pickle's first bytes


def _pickle_head(path: Path, size: int = 1 << 20) -> bytes:
    """The start of the pickle inside a torch.save file (zip: its data.pkl; legacy: the file)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                return b""
            with archive.open(name) as f:
                return f.read(size)
    with open(path, "rb") as f:
        head = f.read(size)
    return head if TORCH_LEGACY_MAGIC in head[:16] else b""


def detect(path: Path) -> bool:
    """A torch.save file whose pickle names rosinality's `g_ema` and `to_rgb1`."""
    try:
        head = _pickle_head(Path(path))
    except (OSError, zipfile.BadZipFile):
        return False
    return all(marker in head for marker in MARKERS)


def load(path: Path) -> dict[str, Any]:
    """The checkpoint's dict, loaded with weights_only (argparse.Namespace allowed for `args`)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((ln.split("GLOBAL", 1)[1].split()[0] for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        raise CheckpointError(f"{path} was refused: it holds objects other than tensors and plain data {detail}, "
                              "which could run code when loaded; nothing in it was run") from None
    except OSError as e:
        raise CheckpointError(f"{path}: {file_problem(e)}") from None
    except Exception as e:  # zip and storage errors of a damaged file come in many types
        raise CheckpointError(f"{path} could not be read ({type(e).__name__}): the file is damaged or "
                              "truncated") from None
    if not isinstance(data, dict) or not isinstance(data.get("g_ema"), dict):
        raise CheckpointError(f"{path} is a PyTorch file but not a rosinality stylegan2-pytorch checkpoint "
                              "(no g_ema state dict)")
    return data


# --------------------------------------------------------------------------------------------
# rosinality's names -> ganforge's stylegan2 names
# --------------------------------------------------------------------------------------------

# Modulated convolution (StyledConv / ToRGB) parameters, relative to the layer.
STYLED = {"conv.weight": "weight", "conv.modulation.weight": "affine.weight", "conv.modulation.bias": "affine.bias",
          "noise.weight": "noise_strength", "activate.bias": "bias"}
TO_RGB = {"conv.weight": "weight", "conv.modulation.weight": "affine.weight", "conv.modulation.bias": "affine.bias",
          "bias": "bias"}
# Blur and upsampling kernels: the fixed [1, 3, 3, 1] filter, which ganforge's layers hold themselves.
KERNEL = re.compile(r"kernel$")


def _count(sd: dict[str, Tensor], pattern: str) -> int:
    return len({m.group(1) for k in sd if (m := re.match(pattern, k))})


def generator_names(n_mlp: int, n_up: int) -> dict[str, str]:
    """rosinality's G state-dict names -> ganforge's, for `n_mlp` mapping layers and `n_up` doublings."""
    table = {f"style.{i + 1}.{p}": f"mapping.fc{i}.{p}" for i in range(n_mlp) for p in ("weight", "bias")}
    table["input.input"] = "synthesis.b4.const"
    layers = [("conv1", "synthesis.b4.conv1", STYLED), ("to_rgb1", "synthesis.b4.torgb", TO_RGB)]
    for k in range(n_up):
        block = f"synthesis.b{8 * 2**k}"
        layers += [(f"convs.{2 * k}", f"{block}.conv0", STYLED), (f"convs.{2 * k + 1}", f"{block}.conv1", STYLED),
                   (f"to_rgbs.{k}", f"{block}.torgb", TO_RGB)]
    for old, new, names in layers:
        table.update({f"{old}.{a}": f"{new}.{b}" for a, b in names.items()})
    for i in range(2 * n_up + 1):  # noise_0 at 4x4, then two per resolution
        layer = "synthesis.b4.conv1" if i == 0 else f"synthesis.b{4 * 2 ** ((i + 1) // 2)}.conv{(i + 1) % 2}"
        table[f"noises.noise_{i}"] = f"{layer}.noise_const"
    return table


def discriminator_names(n_blocks: int) -> dict[str, str]:
    """rosinality's D state-dict names -> ganforge's, for `n_blocks` residual blocks."""
    resolution = 4 * 2**n_blocks
    table = {"convs.0.0.weight": f"b{resolution}.fromrgb.weight", "convs.0.1.bias": f"b{resolution}.fromrgb.bias",
             "final_conv.0.weight": "b4.conv.weight", "final_conv.1.bias": "b4.conv.bias",
             "final_linear.0.weight": "b4.fc.weight", "final_linear.0.bias": "b4.fc.bias",
             "final_linear.1.weight": "b4.out.weight", "final_linear.1.bias": "b4.out.bias"}
    for j in range(1, n_blocks + 1):
        b = f"b{resolution // 2 ** (j - 1)}"
        table.update({f"convs.{j}.conv1.0.weight": f"{b}.conv0.weight", f"convs.{j}.conv1.1.bias": f"{b}.conv0.bias",
                      f"convs.{j}.conv2.1.weight": f"{b}.conv1.weight", f"convs.{j}.conv2.2.bias": f"{b}.conv1.bias",
                      f"convs.{j}.skip.1.weight": f"{b}.skip.weight"})
    return table


def _as_ganforge(name: str, value: Tensor) -> Tensor:
    """A tensor in ganforge's shape: rosinality keeps some with extra leading dimensions of 1."""
    if name.endswith("noise_const"):
        return value.reshape(value.shape[-2:])
    if name.endswith("noise_strength"):
        return value.reshape(())
    if name.endswith(".const") or (name.endswith(".weight") and value.dim() == 5):
        return value.squeeze(0)
    if name.endswith(".bias"):
        return value.reshape(-1)
    return value


def rename(sd: dict[str, Tensor], table: dict[str, str], where: str) -> dict[str, Tensor]:
    """The file's tensors under ganforge's names; a name not in `table` is refused, and a blur
    kernel must be the [1, 3, 3, 1] filter that ganforge's layers use."""
    from ganforge.models.resample import fir_filter

    out = {}
    for key, value in sd.items():
        if key in table:
            out[table[key]] = _as_ganforge(table[key], value)
        elif KERNEL.search(key):
            if tuple(value.shape) != (4, 4) or not torch.allclose(value / value.sum(), fir_filter([1, 3, 3, 1]),
                                                                  atol=1e-6):
                raise CheckpointError(f"{where}: {key} is not the [1, 3, 3, 1] filter; ganforge cannot rebuild this "
                                      "network")
        else:
            raise CheckpointError(f"{where}: {key} is not part of rosinality's StyleGAN2 (another architecture?); "
                                  "ganforge cannot import this network")
    return out


def generator_state(sd: dict[str, Tensor], where: str) -> tuple[dict[str, Tensor], dict[str, Any], int]:
    """ganforge's stylegan2 G state (without w_avg), its config and its resolution."""
    n_mlp, n_up = _count(sd, r"style\.(\d+)\.weight$"), _count(sd, r"to_rgbs\.(\d+)\.conv\.weight$")
    out = rename(sd, generator_names(n_mlp, n_up), where)
    widths = {int(k.split(".")[1][1:]): int(v.shape[0]) for k, v in out.items()
              if re.match(r"synthesis\.b\d+\.conv1\.weight$", k)}
    style_dim = int(out["mapping.fc0.weight"].shape[1]) if "mapping.fc0.weight" in out else 0
    config = {"kind": "stylegan2", "latent_dim": style_dim, "w_dim": style_dim, "mapping_layers": max(n_mlp, 1),
              **_channels(widths, where), "architecture": "skip", "resample_filter": [1, 3, 3, 1],
              "conv_clamp": None, "num_fp16_res": 0, "conditional": False}
    return out, config, 4 * 2**n_up


def discriminator_state(sd: dict[str, Tensor], where: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """ganforge's stylegan2 D state and its config."""
    out = rename(sd, discriminator_names(_count(sd, r"convs\.(\d+)\.conv1\.0\.weight$")), where)
    widths = {int(k.split(".")[0][1:]): int(v.shape[0]) for k, v in out.items()
              if re.match(r"b\d+\.(conv0|conv)\.weight$", k)}
    config = {"kind": "stylegan2", **_channels(widths, where), "architecture": "resnet",
              "resample_filter": [1, 3, 3, 1], "conv_clamp": None, "num_fp16_res": 0, "mbstd_group": 4,
              "mbstd_channels": 1, "conditional": False}
    return out, config


def _channels(widths: dict[int, int], where: str) -> dict[str, int]:
    from ganforge.interop.stylegan2_ada import _channel_settings

    base, top = _channel_settings(widths, where)
    return {"channel_base": base, "channel_max": top}


def with_filters(state: dict[str, Tensor], config: dict[str, Any], resolution: int, builder: Any) -> dict[str, Tensor]:
    """`state` plus the [1, 3, 3, 1] resampling filters that ganforge's layers keep as buffers
    (rosinality's keep theirs in other places, checked by `rename`)."""
    params = {k: v for k, v in config.items() if k != "kind"}
    with torch.random.fork_rng(devices=[]):
        built = builder(channels=3, resolution=resolution, **params)
    return {**{k: v for k, v in built.state_dict().items() if k.endswith("resample_filter")}, **state}


def mean_w(G_state: dict[str, Tensor], config: dict[str, Any]) -> Tensor:
    """The mean w of W_AVG_SAMPLES z drawn from W_AVG_SEED: the truncation centre."""
    from ganforge.models.stylegan2 import MappingNetwork

    mapping = MappingNetwork(config["latent_dim"], 0, config["w_dim"], config["mapping_layers"], w_avg_beta=None)
    mapping.load_state_dict({k.removeprefix("mapping."): v for k, v in G_state.items() if k.startswith("mapping.")})
    z = torch.randn(W_AVG_SAMPLES, config["latent_dim"], generator=torch.Generator().manual_seed(W_AVG_SEED))
    with torch.no_grad():
        return mapping(z, None).mean(0)


def read(path: Path) -> Imported:
    """g, d, g_ema, ADA's p and the training args of a rosinality checkpoint, as ganforge's stylegan2."""
    path = Path(path)
    data = load(path)
    args = data.get("args")
    arch = getattr(args, "arch", "stylegan2")
    if arch != "stylegan2":
        raise CheckpointError(f"{path}: its args.arch is {arch!r}; ganforge imports rosinality's stylegan2 only")
    networks: dict[str, dict[str, Tensor] | None] = {}
    config: dict[str, Any] = {}
    resolution = 0
    for name, key in (("G_ema", "g_ema"), ("G", "g")):
        sd = data.get(key)
        if sd is None:
            networks[name] = None
            continue
        networks[name], config, resolution = generator_state(sd, f"{path}: {key}")
    D_config = None
    networks["D"] = None
    if isinstance(data.get("d"), dict):
        networks["D"], D_config = discriminator_state(data["d"], f"{path}: d")
    from ganforge.models.stylegan2 import stylegan2_discriminator, stylegan2_generator

    for name in ("G", "G_ema"):
        if networks[name] is not None:
            networks[name] = with_filters(networks[name], config, resolution, stylegan2_generator)
    if networks["D"] is not None:
        networks["D"] = with_filters(networks["D"], D_config, resolution, stylegan2_discriminator)
    latent_avg = data.get("latent_avg")
    for name in ("G", "G_ema"):
        state = networks[name]
        if state is not None:
            state["mapping.w_avg"] = latent_avg.reshape(-1).float() if isinstance(latent_avg, Tensor) \
                else mean_w(state, config)
    mixing = getattr(args, "mixing", None)
    if isinstance(mixing, (int, float)):
        config["style_mixing"] = float(mixing)
    extras: dict[str, Any] = {"notes": [] if isinstance(latent_avg, Tensor) else
                              [f"w_avg: the mean w of {W_AVG_SAMPLES:,} z (seed {W_AVG_SEED}); the file has none"]}
    p = data.get("ada_aug_p")
    if getattr(args, "augment", False) and isinstance(p, (int, float)):
        extras.update(ada_p=float(p), augment={"pipeline": "bgc"})  # rosinality's non_leaking.augment: bgc
    return Imported(source=FORMAT, data_shape={"channels": 3, "resolution": resolution, "num_classes": 0},
                    generator=config, discriminator=D_config, G=networks["G"], D=networks["D"],
                    G_ema=networks["G_ema"], extras=extras)
