"""StyleGAN2-ADA and StyleGAN3 network pickles (network-snapshot-*.pkl, ffhq.pkl, ...), read
without running any of their code.

Those pickles hold `G`, `D`, `G_ema` and `augment_pipe` as objects of the reference's
`torch_utils.persistence` module: each carries the source code of its Python module, which
`pickle.load` would execute. Here a restricted unpickler resolves only
- the persistence module's reconstruct function, replaced by one that keeps, of each object, its
  class name, its parameters and buffers (w_avg, noise_const, resample filters included), its
  constructor's keyword arguments and its plain settings (numbers, strings), and never looks at
  the source;
- torch's tensor and storage rebuilding (storages are read by torch.load with weights_only=True);
- plain containers (OrderedDict, set, dnnlib's EasyDict as a dict) and numpy numbers and arrays
  of numbers (rebuilt from their bytes, never through numpy's own unpickling).
Anything else is refused with one line naming it; nothing in the file is run.

StyleGAN2 networks (stylegan2-ada-pytorch's networks.py, stylegan3's networks_stylegan2.py) map
one to one onto ganforge's `stylegan2` (same module tree, same parameter names); StyleGAN3's
alias-free generator and StyleGAN-XL are refused: ganforge has no such networks.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge.errors import CheckpointError
from ganforge.interop import Imported, file_problem

FORMAT = "StyleGAN2-ADA/StyleGAN3 network pickle"
# The first bytes of torch.save's legacy (non-zip) format: a pickle of this magic number.
TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


@dataclass
class Persistent:
    """What the restricted unpickler keeps of one object of the reference's persistence module."""

    class_name: str
    init_args: tuple[Any, ...]
    init_kwargs: dict[str, Any]
    tensors: dict[str, Tensor]  # its own parameters and buffers (None entries left out)
    children: dict[str, Persistent]
    settings: dict[str, Any]  # plain attributes: numbers, strings, booleans, None

    def state_dict(self, prefix: str = "") -> dict[str, Tensor]:
        """Parameters and buffers of the object and its sub-objects, under their module paths."""
        out = {prefix + k: v for k, v in self.tensors.items()}
        for name, child in self.children.items():
            out.update(child.state_dict(f"{prefix}{name}."))
        return out

    def walk(self, prefix: str = "") -> list[tuple[str, Persistent]]:
        """(path, object) for the object and every sub-object."""
        found = [(prefix, self)]
        for name, child in self.children.items():
            found += child.walk(f"{prefix}.{name}" if prefix else name)
        return found


# --------------------------------------------------------------------------------------------
# The restricted unpickler
# --------------------------------------------------------------------------------------------


class Refused(Exception):
    """The pickle asked for something outside the allowed set (`what`: module.name)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


PLAIN = (int, float, str, bool, type(None))


def _reconstruct(meta: Any) -> Persistent:
    """Stands in for torch_utils.persistence._reconstruct_persistent_obj: keeps the object's data,
    not its code (meta["module_src"] is never looked at)."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise Refused("torch_utils.persistence._reconstruct_persistent_obj with an unexpected argument")
    state = meta["state"]
    tensors: dict[str, Tensor] = {}
    for key in ("_parameters", "_buffers"):
        for name, value in (state.get(key) or {}).items():
            if value is not None:
                if not isinstance(value, Tensor):
                    raise Refused(f"{meta.get('class_name')}.{name} (not a tensor)")
                tensors[name] = value.detach()
    children = {}
    for name, child in (state.get("_modules") or {}).items():
        if not isinstance(child, Persistent):
            raise Refused(f"{meta.get('class_name')}.{name} (a module that is not a StyleGAN network object)")
        children[name] = child
    settings = {k: v for k, v in state.items() if not k.startswith("_") and isinstance(v, PLAIN)}
    kwargs = state.get("_init_kwargs") or {}
    return Persistent(str(meta.get("class_name")), tuple(state.get("_init_args") or ()), dict(kwargs), tensors,
                      children, settings)


def _storage_from_bytes(data: Any) -> Any:
    """torch.storage._load_from_bytes, with weights_only: a storage, or nothing."""
    if not isinstance(data, (bytes, bytearray)):
        raise Refused("torch.storage._load_from_bytes with an argument that is not bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _tensor(storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> Tensor:
    """torch._utils._rebuild_tensor_v2: a view of a storage (gradient flags and hooks dropped)."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise Refused("torch._utils._rebuild_tensor_v2 without a storage")
    return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))


def _parameter(data: Any, *_: Any) -> Tensor:
    """torch._utils._rebuild_parameter(_with_state): the tensor alone."""
    if not isinstance(data, Tensor):
        raise Refused("torch._utils._rebuild_parameter without a tensor")
    return data


def _from_type(func: Any, new_type: Any, args: tuple[Any, ...], state: Any) -> Tensor:
    """torch._tensor._rebuild_from_type_v2: only for tensors and parameters rebuilt as above."""
    if func not in (_tensor, _parameter) or new_type not in (Tensor, torch.nn.Parameter):
        raise Refused("torch._tensor._rebuild_from_type_v2 of something other than a tensor")
    return func(*args)


class _Dict(dict):
    """dnnlib.util.EasyDict (a dict with attribute access) as a plain dict."""

    def __setstate__(self, state: Any) -> None:
        pass  # its instance attributes are its items; nothing else is kept


# numpy scalars (e.g. a layer's weight gain): the dtype by name from a short list, the value from its bytes.
NUMPY_DTYPES = ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1")


class _Dtype:
    """numpy.dtype as a pickle rebuilds it, limited to plain number types."""

    def __init__(self, name: Any, *_: Any) -> None:
        if name not in NUMPY_DTYPES:
            raise Refused(f"numpy.dtype({name!r})")
        self.name = name

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise Refused("numpy.dtype with an unexpected state")
        self.order = state[1]


def _numpy_scalar(dtype: Any, data: Any = b"") -> Any:
    if not isinstance(dtype, _Dtype) or not isinstance(data, bytes):
        raise Refused("numpy scalar of an unexpected kind")
    order = getattr(dtype, "order", "<")
    return np.frombuffer(data, dtype=np.dtype(("<" if order in "|=" else order) + dtype.name))[0].item()


class _Array:
    """A numpy array of plain numbers, as a pickle rebuilds it (numpy's _reconstruct, then its
    state): the shape, dtype and raw bytes become an array; object arrays are refused."""

    def __init__(self, cls: Any = None, shape: Any = (0,), typecode: Any = b"b", *_: Any) -> None:
        if cls is not np.ndarray:
            raise Refused("numpy.core.multiarray._reconstruct of something other than an array")
        self.value: Any = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or not isinstance(state[2], _Dtype) \
                or not isinstance(state[4], bytes):
            raise Refused("a numpy array that is not of plain numbers")
        _, shape, dtype, fortran, raw = state
        order = getattr(dtype, "order", "<")
        array = np.frombuffer(raw, dtype=np.dtype(("<" if order in "|=" else order) + dtype.name))
        self.value = array.reshape(shape, order="F" if fortran else "C")


ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_tensor"): _tensor,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _from_type,
    ("torch", "Tensor"): Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("collections", "OrderedDict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): _Dict,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy", "ndarray"): np.ndarray,
}


# Modules whose classes only StyleGAN-XL's and Projected GAN's pickles hold (timm's EfficientNets
# and DeiTs, their pg_modules and feature_networks), to name what such a refused file is.
PROJECTED_GAN_MODULES = ("timm.", "pg_modules.", "feature_networks.")


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names in ALLOWED, to the stand-ins there; anything else raises Refused."""

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("a persistent id (the pickle is not a network pickle)")


def load_network_pickle(path: Path) -> dict[str, Any]:
    """The top-level dict of a network pickle, its networks as Persistent objects; every failure
    is one CheckpointError line."""
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except Refused as e:
        if e.what.startswith(PROJECTED_GAN_MODULES):  # its D's pretrained feature networks, pickled as classes
            raise CheckpointError(f"{path} was refused: it asks for {e.what}, a module of StyleGAN-XL's / Projected "
                                  "GAN's discriminator; ganforge has no such network, and nothing in the file was "
                                  "run") from None
        raise CheckpointError(f"{path} was refused: it asks for {e.what}, which a StyleGAN2-ADA/StyleGAN3 network "
                              "pickle does not hold; nothing in the file was run") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            RuntimeError, MemoryError, RecursionError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} could not be read as a network pickle ({type(e).__name__}): the file is "
                              "damaged or truncated; nothing in it was run") from None
    except OSError as e:
        raise CheckpointError(f"{path}: {file_problem(e)}") from None
    if not isinstance(data, dict) or not any(isinstance(data.get(k), Persistent) for k in ("G", "G_ema")):
        raise CheckpointError(f"{path} is a pickle but not a StyleGAN2-ADA/StyleGAN3 network pickle (no G or G_ema "
                              "network in it); nothing in it was run")
    return data


# --------------------------------------------------------------------------------------------
# From the reference's networks to ganforge's stylegan2
# --------------------------------------------------------------------------------------------

# The classes of a StyleGAN2 network (stylegan2-ada-pytorch networks.py, stylegan3 networks_stylegan2.py).
GENERATOR_CLASSES = {"Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
                     "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer"}
DISCRIMINATOR_CLASSES = {"Discriminator", "DiscriminatorBlock", "DiscriminatorEpilogue", "MinibatchStdLayer",
                         "MappingNetwork", "FullyConnectedLayer", "Conv2dLayer"}

# The constructor keywords of those networks that ganforge reads; any other is an architecture
# ganforge does not know. Generator: stylegan2-ada-pytorch nests the synthesis network's under
# synthesis_kwargs, stylegan3 passes them directly.
G_KEYS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"}
SYNTHESIS_KEYS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
                  "use_noise", "activation", "fp16_channels_last", "fused_modconv_default", "kernel_size"}
MAPPING_KEYS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}
D_KEYS = {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max", "num_fp16_res",
          "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs"}
D_BLOCK_KEYS = {"activation", "resample_filter", "fp16_channels_last", "freeze_layers"}
EPILOGUE_KEYS = {"mbstd_group_size", "mbstd_num_channels", "activation"}
# Values ganforge's stylegan2 has no other choice for.
FIXED = {"activation": "lrelu", "kernel_size": 3}


def _check_keys(where: str, kwargs: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{where}: its settings are not a mapping; not a StyleGAN2 network ganforge knows")
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise CheckpointError(f"{where}: unknown architecture key {unknown[0]!r} (={kwargs[unknown[0]]!r}); "
                              "ganforge's stylegan2 cannot rebuild this network")
    for key, value in FIXED.items():
        if key in kwargs and kwargs[key] != value:
            raise CheckpointError(f"{where}: {key} {kwargs[key]!r} is not supported (ganforge's stylegan2 uses "
                                  f"{value!r})")
    return kwargs


def _refuse_other_networks(name: str, net: Persistent, known: set[str], path: Path) -> None:
    """One line for a network that is not a StyleGAN2 network."""
    classes = {obj.class_name for _, obj in net.walk()}
    if "SynthesisInput" in classes:
        raise CheckpointError(f"{path}: {name} is StyleGAN3's alias-free generator (config t or r); ganforge has "
                              "no such network, so it cannot be imported")
    if net.class_name == "ProjectedDiscriminator" or "FeatureNetwork" in classes:
        raise CheckpointError(f"{path}: {name} is StyleGAN-XL's / Projected GAN's discriminator; ganforge has no "
                              "such network, so it cannot be imported")
    unknown = sorted(classes - known)
    if unknown or net.class_name != ("Discriminator" if name == "D" else "Generator"):
        what = unknown[0] if unknown else net.class_name
        raise CheckpointError(f"{path}: {name} holds a {what}, which is not part of a StyleGAN2 network; ganforge "
                              "cannot import this network")


def _resample_taps(net: Persistent, where: str) -> list[float]:
    """The resample filter's taps as a config takes them: [1, 3, 3, 1] when the stored (normalised)
    filter is that one, otherwise the stored filter's own taps."""
    kwargs = net.init_kwargs
    taps = kwargs.get("resample_filter", [1, 3, 3, 1])
    if not isinstance(taps, (list, tuple)) or not all(isinstance(t, (int, float)) for t in taps):
        raise CheckpointError(f"{where}: resample_filter {taps!r} is not a list of filter taps")
    return [float(t) if not float(t).is_integer() else int(t) for t in taps]


def _block_names(net: Persistent) -> list[str]:
    """The names of the per-resolution blocks (b4, b8, ...) among a network's children."""
    return [k for k in net.children if k[:1] == "b" and k[1:].isdigit()]


def _fp16_setting(blocks: list[Persistent], given: Any) -> int:
    """num_fp16_res: the blocks that ran in float16 (the 4x4 one never does), as the file's own
    setting where it says the same."""
    count = sum(bool(b.settings.get("use_fp16")) for b in blocks)
    below = len([b for b in blocks if b.settings.get("resolution") != 4])
    return given if isinstance(given, int) and not isinstance(given, bool) and min(given, below) == count else count


def _channel_settings(widths: dict[int, int], where: str) -> tuple[int, int]:
    """(channel_base, channel_max) that give these feature maps per resolution."""
    channel_max = max(widths.values())
    for base in sorted({w * r for r, w in widths.items()} | {(w + 1) * r - 1 for r, w in widths.items()}):
        if all(min(base // r, channel_max) == w for r, w in widths.items()):
            return base, channel_max
    raise CheckpointError(f"{where}: its feature maps per resolution ({widths}) do not follow channel_base / "
                          "resolution up to channel_max; ganforge's stylegan2 cannot rebuild them")


def generator_config(G: Persistent, where: str) -> tuple[dict[str, Any], dict[str, int]]:
    """ganforge's `generator` section and the data shape of a StyleGAN2 generator."""
    kwargs = _check_keys(where, G.init_kwargs, G_KEYS | SYNTHESIS_KEYS)
    synthesis_kwargs = _check_keys(f"{where}.synthesis_kwargs", kwargs.get("synthesis_kwargs", {}), SYNTHESIS_KEYS)
    mapping_kwargs = _check_keys(f"{where}.mapping_kwargs", kwargs.get("mapping_kwargs", {}), MAPPING_KEYS)
    synthesis, mapping = G.children.get("synthesis"), G.children.get("mapping")
    if synthesis is None or mapping is None:
        raise CheckpointError(f"{where}: a Generator without a mapping and a synthesis network")
    blocks = [synthesis.children[k] for k in sorted(_block_names(synthesis), key=lambda k: int(k[1:]))]
    if not blocks:
        raise CheckpointError(f"{where}: a synthesis network without blocks")
    resolution = int(G.settings.get("img_resolution") or kwargs.get("img_resolution"))
    if blocks[-1].settings.get("resolution") != resolution:
        raise CheckpointError(f"{where}: its last block is not at its resolution {resolution}")
    widths = {int(b.settings["resolution"]): int(b.children["conv1"].tensors["weight"].shape[0]) for b in blocks}
    channel_base, channel_max = _channel_settings(widths, where)
    architectures = {b.settings.get("architecture") for b in blocks}
    if len(architectures) != 1:
        raise CheckpointError(f"{where}: blocks of different architectures ({sorted(map(str, architectures))})")
    clamps = {layer.settings.get("conv_clamp") for b in blocks for name, layer in b.children.items()
              if name in ("conv0", "conv1", "torgb")}
    use_noise = {layer.settings.get("use_noise", True) for b in blocks for name, layer in b.children.items()
                 if name in ("conv0", "conv1")}
    c_dim = int(G.settings.get("c_dim", kwargs.get("c_dim", 0)) or 0)
    if c_dim == 1:
        raise CheckpointError(f"{where}: conditioned on a one-dimensional label; ganforge's conditional stylegan2 "
                              "takes class labels (at least 2 classes)")
    if len(clamps) != 1 or len(use_noise) != 1:
        raise CheckpointError(f"{where}: its layers differ in conv_clamp or use_noise; ganforge's stylegan2 sets "
                              "them for the whole network")
    embed = mapping.children.get("embed")
    fc0 = mapping.children.get("fc0")
    z_dim = int(mapping.settings.get("z_dim", kwargs.get("z_dim")))
    config = {
        "kind": "stylegan2",
        "latent_dim": z_dim,
        "w_dim": int(mapping.settings.get("w_dim", kwargs.get("w_dim"))),
        "mapping_layers": int(mapping.settings.get("num_layers", mapping_kwargs.get("num_layers", 8))),
        "embed_features": int(embed.tensors["weight"].shape[0]) if embed is not None else None,
        "layer_features": int(fc0.tensors["weight"].shape[0]) if fc0 is not None else None,
        # FC layers keep lr_multiplier as their bias gain.
        "mapping_lr_multiplier": float(fc0.settings.get("bias_gain", mapping_kwargs.get("lr_multiplier", 0.01))),
        "w_avg_beta": float(mapping.settings.get("w_avg_beta", 0.995)),
        "channel_base": channel_base,
        "channel_max": channel_max,
        "architecture": architectures.pop(),
        "resample_filter": _resample_taps(blocks[0], where),
        "conv_clamp": clamps.pop(),
        "num_fp16_res": _fp16_setting(blocks, synthesis_kwargs.get("num_fp16_res", kwargs.get("num_fp16_res"))),
        "use_noise": bool(use_noise.pop()),
        "conditional": c_dim > 0,
        "style_mixing": 0.9,  # a training setting of StyleGAN2-ADA's loss, not stored in the pickle
    }
    if config["mapping_layers"] == 1 or config["layer_features"] == config["w_dim"]:
        config["layer_features"] = None
    if config["embed_features"] == config["w_dim"]:
        config["embed_features"] = None
    shape = {"channels": int(G.settings.get("img_channels", kwargs.get("img_channels"))), "resolution": resolution,
             "num_classes": c_dim}
    return config, shape


def discriminator_config(D: Persistent, where: str) -> dict[str, Any]:
    """ganforge's `discriminator` section of a StyleGAN2 discriminator."""
    kwargs = _check_keys(where, D.init_kwargs, D_KEYS)
    _check_keys(f"{where}.block_kwargs", kwargs.get("block_kwargs", {}), D_BLOCK_KEYS)
    _check_keys(f"{where}.mapping_kwargs", kwargs.get("mapping_kwargs", {}), MAPPING_KEYS)
    _check_keys(f"{where}.epilogue_kwargs", kwargs.get("epilogue_kwargs", {}), EPILOGUE_KEYS)
    blocks = [D.children[k] for k in sorted(_block_names(D), key=lambda k: -int(k[1:])) if k != "b4"]
    epilogue = D.children.get("b4")
    if epilogue is None or not blocks:
        raise CheckpointError(f"{where}: a Discriminator without blocks and a 4x4 epilogue")
    widths = {int(b.settings["resolution"]): int(b.children["conv0"].tensors["weight"].shape[0]) for b in blocks}
    widths[4] = int(epilogue.children["conv"].tensors["weight"].shape[0])
    channel_base, channel_max = _channel_settings(widths, where)
    architectures = {b.settings.get("architecture") for b in blocks}
    if len(architectures) != 1:
        raise CheckpointError(f"{where}: blocks of different architectures ({sorted(map(str, architectures))})")
    mbstd = epilogue.children.get("mbstd")
    mapping = D.children.get("mapping")
    # Settings ganforge's D has for the whole network, or not at all: refused rather than imported
    # into a network that would compute something else with the same weights.
    clamps = {layer.settings.get("conv_clamp") for b in blocks for name, layer in b.children.items()
              if name in ("fromrgb", "conv0", "conv1")}
    clamps.add(epilogue.children["conv"].settings.get("conv_clamp"))  # b4.conv: the epilogue's
    if len(clamps) != 1:
        raise CheckpointError(f"{where}: its layers differ in conv_clamp ({sorted(map(str, clamps))}); ganforge's "
                              "stylegan2 sets it for the whole network")
    fc0 = mapping.children.get("fc0") if mapping is not None else None
    if fc0 is not None:
        given = kwargs.get("mapping_kwargs", {}).get("lr_multiplier", 0.01)
        lr_multiplier = float(fc0.settings.get("bias_gain", given))
        if abs(lr_multiplier - 0.01) > 1e-9:
            raise CheckpointError(f"{where}: its label mapping's lr_multiplier is {lr_multiplier:g}; ganforge's "
                                  "stylegan2 D has the reference's default, 0.01")
    config = {
        "kind": "stylegan2",
        "channel_base": channel_base,
        "channel_max": channel_max,
        "architecture": architectures.pop(),  # D's own, which need not be G's
        "resample_filter": _resample_taps(blocks[0], where),
        "conv_clamp": clamps.pop(),
        "num_fp16_res": _fp16_setting(blocks, kwargs.get("num_fp16_res")),
        "mbstd_group": mbstd.settings.get("group_size") if mbstd is not None else 4,
        "mbstd_channels": int(mbstd.settings.get("num_channels", 1)) if mbstd is not None else 0,
        "cmap_dim": int(epilogue.settings.get("cmap_dim", 0)) or None,
        "mapping_layers": int(mapping.settings.get("num_layers", 8)) if mapping is not None else 8,
        "conditional": int(D.settings.get("c_dim", kwargs.get("c_dim", 0)) or 0) > 0,
    }
    if config["cmap_dim"] == widths[4]:
        config["cmap_dim"] = None
    return config


def augment_settings(pipe: Persistent | None) -> tuple[float | None, str | None, list[str]]:
    """(ADA p, the ganforge pipeline with the same operations or None, notes) of an augment_pipe."""
    from ganforge.augment import PIPELINES

    if pipe is None or "p" not in pipe.tensors:
        return None, None, []
    p = float(pipe.tensors["p"])
    ops = {k for k, v in pipe.init_kwargs.items() if isinstance(v, (int, float)) and v and
           not k.endswith(("_std", "_max", "_size", "_bands"))}
    pipeline = next((name for name, members in PIPELINES.items() if set(members) == ops), None)
    if pipeline is None:
        return p, None, [f"augment_pipe: its operations ({', '.join(sorted(ops))}) match none of ganforge's ADA "
                         f"pipelines ({', '.join(PIPELINES)}); its p ({p:.4g}) is not carried over"]
    # The object's attributes hold every setting it ran with, defaults included; its kwargs only those given.
    return p, pipeline, _augment_differences({**pipe.init_kwargs, **pipe.settings}, ops)


def _augment_differences(kwargs: dict[str, Any], ops: set[str]) -> list[str]:
    """A note naming the augment_pipe settings of `ops` that are not the ones ganforge's ADA
    pipeline has (each op's probability multiplier 1, the reference's ranges), if any."""
    from ganforge import augment

    fixed = {op: 1.0 for op in ops}
    ranges = {"xint_max": ("xint", augment.XINT_MAX), "scale_std": ("scale", augment.SCALE_STD),
              "rotate_max": ("rotate", augment.ROTATE_MAX), "aniso_std": ("aniso", augment.ANISO_STD),
              "xfrac_std": ("xfrac", augment.XFRAC_STD), "brightness_std": ("brightness", augment.BRIGHTNESS_STD),
              "contrast_std": ("contrast", augment.CONTRAST_STD), "hue_max": ("hue", augment.HUE_MAX),
              "saturation_std": ("saturation", augment.SATURATION_STD)}
    fixed.update({key: value for key, (op, value) in ranges.items() if op in ops})
    differ = [f"{key} {float(kwargs[key]):g} (ganforge: {value:g})" for key, value in fixed.items()
              if isinstance(kwargs.get(key), (int, float)) and float(kwargs[key]) != value]
    if not differ:
        return []
    return [f"augment_pipe: {', '.join(differ)}; ganforge's ADA applies its pipeline with its own settings, so "
            "fine-tuning from this run augments otherwise than the file's training did (p is carried over)"]


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


def detect(path: Path) -> bool:
    """A Python pickle that is not a torch.save file: StyleGAN2-ADA's format, and the only one
    read with pickle, so that any other pickle gets the restricted unpickler's refusal."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return len(head) >= 2 and head[0] == 0x80 and head[1] <= 5 and TORCH_LEGACY_MAGIC not in head


def read(path: Path) -> Imported:
    """G, D, G_ema and ADA's p of a network pickle, as ganforge's stylegan2."""
    path = Path(path)
    data = load_network_pickle(path)
    nets = {k: data.get(k) for k in ("G", "D", "G_ema")}
    if nets["G_ema"] is None:
        nets["G_ema"] = nets["G"]
    if nets["G"] is None:
        nets["G"] = nets["G_ema"]
    for name in ("G", "G_ema"):
        _refuse_other_networks(name, nets[name], GENERATOR_CLASSES, path)
    if isinstance(nets["D"], Persistent):
        _refuse_other_networks("D", nets["D"], DISCRIMINATOR_CLASSES, path)
    elif nets["D"] is not None:
        raise CheckpointError(f"{path}: its D is not a network object")
    generator, shape = generator_config(nets["G_ema"], f"{path}: G_ema")
    discriminator = discriminator_config(nets["D"], f"{path}: D") if nets["D"] is not None else None
    p, pipeline, notes = augment_settings(data.get("augment_pipe"))
    extras: dict[str, Any] = {"notes": notes}
    if p is not None and pipeline is not None:
        extras.update(ada_p=p, augment={"pipeline": pipeline})
    return Imported(source=FORMAT, data_shape=shape, generator=generator, discriminator=discriminator,
                    G=nets["G"].state_dict(), D=nets["D"].state_dict() if nets["D"] is not None else None,
                    G_ema=nets["G_ema"].state_dict(), extras=extras)
