"""BigGAN-PyTorch weights (ajbrock/BigGAN-PyTorch, `utils.save_weights`): a folder with `G.pth`,
`D.pth`, `G_ema.pth` (state dicts) and `state_dict.pth` (the training config and counters), each
name optionally with a suffix (`G_ema_best0.pth`, `D_copy1.pth`).

The state dicts load one to one into ganforge's `biggan` networks. The architecture comes from
`state_dict.pth`'s config; without it, from the tensor shapes (the epsilons and the number of
power iterations, which shapes do not show, then take BigGAN-PyTorch's defaults, and `notes`
in `extras` says so). Every file is read with `torch.load(weights_only=True)`; `state_dict.pth`
pickles two objects besides plain data (the config's `nn.ReLU` activations, numpy scalars for
the best scores), which are read as inert placeholders: no code from the file runs.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganforge.errors import CheckpointError
from ganforge.interop import Imported

SOURCE = "BigGAN-PyTorch weights"
# utils.save_weights: `G`, `G_optim`, `D`, `D_optim`, `state_dict`, `G_ema`, each + "_" + suffix.
FILE = re.compile(r"^(G_ema|G_optim|D_optim|G|D|state_dict)(?:_(.+))?\.pth$")
NETWORK_FILES = ("G", "D", "G_ema")
MARK = b"blocks.0.0.conv1.u0"  # BigGAN-PyTorch's spectral-norm buffer of the first conv, in G and D
PEEK = 1 << 20  # bytes of a legacy (pre-1.6) file where its pickled keys are

# BigGAN-PyTorch's command-line defaults (utils.prepare_parser), for files without state_dict.pth.
DEFAULTS = {"SN_eps": 1e-8, "BN_eps": 1e-5, "num_G_SV_itrs": 1, "num_D_SV_itrs": 1, "G_init": "ortho",
            "D_init": "ortho"}
G_BLOCKS = {3: 32, 4: 64, 5: 128, 6: 256}  # G_arch: blocks per resolution
D_BLOCKS = {4: 32, 5: 64, 6: 128, 7: 256}  # D_arch
INITS = ("ortho", "N02", "xavier", "glorot")


# --------------------------------------------------------------------------------------------
# Finding and loading the files
# --------------------------------------------------------------------------------------------


def _split_name(path: Path) -> tuple[str, str | None] | None:
    match = FILE.match(path.name)
    return (match.group(1), match.group(2)) if match else None


def _looks_like_weights(path: Path) -> bool:
    """Whether a torch file holds BigGAN-PyTorch's keys, from its pickled keys only."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickled = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                return pickled is not None and MARK in archive.read(pickled)
        with open(path, "rb") as f:
            return MARK in f.read(PEEK)
    except (OSError, zipfile.BadZipFile):
        return False


def detect(path: Path) -> bool:
    """Whether `path` is a BigGAN-PyTorch weights folder or one of its files (cheap: names and
    the pickled key names)."""
    path = Path(path)
    if path.is_dir():
        return any(p.is_file() and (_split_name(p) or ("", None))[0] in NETWORK_FILES and _looks_like_weights(p)
                   for p in sorted(path.iterdir()))
    named = _split_name(path)
    if not path.is_file() or named is None:
        return False
    if named[0] in NETWORK_FILES:
        return _looks_like_weights(path)
    return any(_looks_like_weights(path.with_name(f"{kind}{'_' + named[1] if named[1] else ''}.pth"))
               for kind in NETWORK_FILES)


def _files(path: Path) -> dict[str, Path]:
    """The set of files `path` names: a folder's unsuffixed set, or the set of a file's suffix."""
    if path.is_dir():
        folder, suffix = path, None
    elif path.is_file() and _split_name(path) is not None:
        folder, suffix = path.parent, _split_name(path)[1]  # type: ignore[index]
    else:
        raise CheckpointError(f"{path}: not a BigGAN-PyTorch weights folder or file (G.pth, G_ema.pth, D.pth, "
                              "state_dict.pth)")
    tail = f"_{suffix}" if suffix else ""
    found = {kind: folder / f"{kind}{tail}.pth" for kind in (*NETWORK_FILES, "state_dict")}
    found = {kind: p for kind, p in found.items() if p.is_file()}
    if "G" not in found and "G_ema" not in found:
        sets = sorted({s for p in folder.iterdir() if (n := _split_name(p)) and n[0] in NETWORK_FILES
                       for s in [n[1]] if s})
        hint = f"; it has the sets {', '.join(sets)}: pass one of their files, e.g. {folder / f'G_ema_{sets[0]}.pth'}" \
            if sets else ""
        raise CheckpointError(f"{folder}: no G{tail}.pth or G_ema{tail}.pth (BigGAN-PyTorch's generator weights)"
                              f"{hint}")
    return found


def _load(path: Path) -> Any:
    """torch.load with weights_only; every failure is one line naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((ln.split("GLOBAL", 1)[1].split()[0] for ln in str(e).splitlines() if "GLOBAL" in ln), None)
        if detail is None:  # not a refused object: the pickle itself is broken
            raise CheckpointError(f"{path} could not be read (UnpicklingError): the file is damaged or truncated") \
                from None
        raise CheckpointError(f"{path} was refused: it holds {detail}, which is neither a tensor nor plain data "
                              "(nothing from it was run)") from None
    except Exception as e:  # zip and storage errors of a damaged file come in many types
        raise CheckpointError(f"{path} could not be read ({type(e).__name__}): the file is damaged or truncated") \
            from None


def _state_dict(path: Path) -> dict[str, Tensor]:
    """A network's state dict, floating tensors in float32 (G_fp16 runs save float16)."""
    sd = _load(path)
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(k, str) and isinstance(v, Tensor)
                                                         for k, v in sd.items()):
        raise CheckpointError(f"{path} is not a state dict of tensors (BigGAN-PyTorch saves G.state_dict())")
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


class _Placeholder:
    """Stands for an object of state_dict.pth that ganforge does not need: built from nothing,
    its state ignored."""

    def __new__(cls, *args: Any) -> _Placeholder:
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        pass


def _placeholder(*args: Any) -> _Placeholder:
    return _Placeholder()


# What state_dict.pth pickles besides plain data: the config's activations (train.py puts
# nn.ReLU modules there; torch <= 1.3 pickled each module's THNN backend with it) and numpy
# scalars (best_IS, best_FID). They are read as placeholders.
_INERT: dict[str, Any] = {"torch.nn.modules.activation.ReLU": _Placeholder,
                          "torch.nn.backends.thnn._get_thnn_function_backend": _placeholder,
                          "numpy.core.multiarray.scalar": _placeholder, "numpy._core.multiarray.scalar": _placeholder,
                          "numpy.dtype": _Placeholder}
def _latin1(text: str, encoding: str = "latin1") -> bytes:
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"GLOBAL _codecs.encode with {encoding!r}")
    return text.encode("latin1")


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch's pre-1.6 serialization


class _ConfigUnpickler(pickle.Unpickler):
    """Reads the pickle of a pre-1.6 torch file with plain data only: the few objects above as
    placeholders, the module source that file format records beside a pickled module ignored,
    anything else refused (nothing is imported or called)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 writes bytes
            return _latin1
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset"):  # and sets
            return {"set": set, "frozenset": frozenset}[name]
        if f"{module}.{name}" in _INERT:
            return _INERT[f"{module}.{name}"]
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            # (module, class, source file, source): a module class with its source (for torch's
            # source-change warning); the class came through find_class, so it is a placeholder.
            return _Placeholder
        raise pickle.UnpicklingError("GLOBAL tensor-storage (a tensor, where train.py saves plain data)")


def _legacy_load(path: Path) -> Any:
    """The object a pre-1.6 torch.save wrote (magic number, protocol, system info, then it)."""
    try:
        with open(path, "rb") as f:
            if _ConfigUnpickler(f).load() != _LEGACY_MAGIC:
                raise CheckpointError(f"{path} is not a PyTorch file (no zip archive, no legacy magic number)")
            _protocol, _sys_info = _ConfigUnpickler(f).load(), _ConfigUnpickler(f).load()
            return _ConfigUnpickler(f).load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("GLOBAL "):
            raise CheckpointError(f"{path} was refused: it holds {str(e)[7:]}, which is neither a tensor nor plain "
                                  "data (nothing from it was run)") from None
        raise CheckpointError(f"{path} could not be read (UnpicklingError): the file is damaged or truncated") \
            from None
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path} could not be read ({type(e).__name__}): the file is damaged or truncated") \
            from None


def _training_config(path: Path) -> dict[str, Any]:
    """The `config` of state_dict.pth."""
    if zipfile.is_zipfile(path):
        with torch.serialization.safe_globals([(obj, name) for name, obj in _INERT.items()]):
            state = _load(path)
    else:
        # torch.load(weights_only=True) refuses the module records of this older format.
        state = _legacy_load(path)
    config = state.get("config") if isinstance(state, Mapping) else None
    if not isinstance(config, Mapping) or "G_ch" not in config:
        raise CheckpointError(f"{path} holds no BigGAN-PyTorch training config (expected a dict with 'config', as "
                              "train.py saves it)")
    return dict(config)


# --------------------------------------------------------------------------------------------
# The architecture: from the config, or from the shapes
# --------------------------------------------------------------------------------------------


def _attention(spec: Any, table: list[int]) -> list[int]:
    """G_attn / D_attn ('64', '16_32', '0') as the resolutions of blocks it selects (the
    reference ignores the others)."""
    wanted = {int(r) for r in str(spec).split("_") if r.strip().lstrip("-").isdigit()}
    return [r for r in dict.fromkeys(table) if r in wanted]


def _from_config(config: Mapping[str, Any], where: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """(generator params, discriminator params, data shape) from BigGAN-PyTorch's config."""
    from ganforge.models.biggan import D_ARCH, G_ARCH

    def need(key: str) -> Any:
        if key not in config:
            raise CheckpointError(f"{where}: its config has no {key!r}")
        return config[key]

    model = config.get("model", "BigGAN")
    if model != "BigGAN":
        raise CheckpointError(f"{where}: model {model!r} has no ganforge network (ganforge has BigGAN.py's "
                              "Generator and Discriminator, not BigGAN-deep)")
    for key in ("G_param", "D_param"):
        if config.get(key, "SN") != "SN":
            raise CheckpointError(f"{where}: {key} {config[key]!r} is not supported (ganforge's biggan always has "
                                  "spectral norm, the reference's default SN)")
    if config.get("norm_style", "bn") != "bn":
        raise CheckpointError(f"{where}: norm_style {config['norm_style']!r} is not supported (ganforge's biggan "
                              "uses BatchNorm, the reference's default bn)")
    resolution = int(need("resolution"))
    if resolution not in (32, 64, 128, 256):
        raise CheckpointError(f"{where}: resolution {resolution} is not supported (32, 64, 128 or 256)")
    classes = int(need("n_classes"))
    dim_z = int(need("dim_z"))
    hier = bool(config.get("hier", False))
    slots = len(G_ARCH[resolution][1]) + 1 if hier else 1
    generator = {
        "ch": int(need("G_ch")), "dim_z": dim_z // slots * slots,  # the reference drops the remainder
        "conditional": True, "shared": bool(config.get("G_shared", False)),
        "shared_dim": int(config.get("shared_dim", 0)) or dim_z,  # 0: the dim_z given, before the drop
        "hier": hier, "attention": _attention(config.get("G_attn", "64"), G_ARCH[resolution][2]),
        "init": _init(config.get("G_init")), "num_svs": int(config.get("num_G_SVs", 1)),
        "num_sv_itrs": int(config.get("num_G_SV_itrs", 1)), "sn_eps": float(config.get("SN_eps", DEFAULTS["SN_eps"])),
        "bn_eps": float(config.get("BN_eps", DEFAULTS["BN_eps"])),
        "cross_replica": bool(config.get("cross_replica", False)), "mybn": bool(config.get("mybn", False)),
    }
    discriminator = {
        "ch": int(need("D_ch")), "wide": bool(config.get("D_wide", True)), "conditional": True,
        "attention": _attention(config.get("D_attn", "64"), D_ARCH[resolution][2]),
        "init": _init(config.get("D_init")), "num_svs": int(config.get("num_D_SVs", 1)),
        "num_sv_itrs": int(config.get("num_D_SV_itrs", 1)), "sn_eps": generator["sn_eps"],
    }
    return generator, discriminator, {"channels": 3, "resolution": resolution, "num_classes": classes}


def _init(value: Any) -> str:
    # Only a fresh network uses it; the reference leaves PyTorch's init for a name it does not know.
    return value if value in INITS else "ortho"


def _blocks(sd: Mapping[str, Tensor]) -> int:
    return len({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})


def _svs(sd: Mapping[str, Tensor]) -> int:
    return sum(1 for k in sd if re.fullmatch(r"linear\.u\d+", k))


def _from_shapes(G: Mapping[str, Tensor], D: Mapping[str, Tensor] | None, where: Path
                 ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, int]]:
    """(generator params, discriminator params, data shape) read off the state dicts."""
    from ganforge.models.biggan import D_ARCH, G_ARCH

    def shape(sd: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
        if key not in sd:
            raise CheckpointError(f"{where}: not a BigGAN-PyTorch layout ganforge knows (no {key}); add its "
                                  "state_dict.pth, which describes the architecture")
        return tuple(sd[key].shape)

    resolution = G_BLOCKS.get(_blocks(G))
    if resolution is None:
        raise CheckpointError(f"{where}: not a BigGAN-PyTorch layout ganforge knows (a generator with {_blocks(G)} "
                              "blocks; 3 to 6 are 32 to 256 px)")
    in_mult, _, g_table = G_ARCH[resolution]
    base, chunk = shape(G, "linear.weight")
    ch = base // 16 // in_mult[0]
    shared = "shared.weight" in G
    gain = shape(G, "blocks.0.0.bn1.gain.weight")
    if shared:
        classes, shared_dim = shape(G, "shared.weight")
        hier = gain[1] > shared_dim
        blocks = len(G_ARCH[resolution][1])
        dim_z = chunk * (blocks + 1) if hier else chunk
    else:
        classes, shared_dim, hier, dim_z = gain[0], 0, False, chunk
    generator = {
        "ch": ch, "dim_z": dim_z, "conditional": True, "shared": shared, "shared_dim": shared_dim or dim_z,
        "hier": hier, "attention": [r for i, r in enumerate(g_table) if f"blocks.{i}.1.theta.weight" in G],
        "init": DEFAULTS["G_init"], "num_svs": _svs(G), "num_sv_itrs": DEFAULTS["num_G_SV_itrs"],
        "sn_eps": DEFAULTS["SN_eps"], "bn_eps": DEFAULTS["BN_eps"],
        "cross_replica": "blocks.0.0.bn1.bn.running_mean" in G, "mybn": "blocks.0.0.bn1.bn.stored_mean" in G,
    }
    discriminator = None
    if D is not None:
        if D_BLOCKS.get(_blocks(D)) != resolution:
            raise CheckpointError(f"{where}: its D has {_blocks(D)} blocks, not those of a {resolution} px D")
        out_mult, _, d_table = D_ARCH[resolution]
        hidden = shape(D, "blocks.0.0.conv1.weight")[0]
        first = shape(D, "blocks.0.0.conv2.weight")[0]
        discriminator = {
            # D_wide: a block's hidden channels are its output's; thin (SNGAN): its input's.
            "ch": first // out_mult[0], "wide": hidden == first, "conditional": True,
            # (a layout the tables cannot give, such as attention after some of D_arch[32]'s blocks,
            # all "at 16", fails the key check that follows)
            "attention": sorted({r for i, r in enumerate(d_table) if f"blocks.{i}.1.theta.weight" in D}),
            "init": DEFAULTS["D_init"], "num_svs": _svs(D), "num_sv_itrs": DEFAULTS["num_D_SV_itrs"],
            "sn_eps": DEFAULTS["SN_eps"],
        }
    return generator, discriminator, {"channels": 3, "resolution": resolution, "num_classes": classes}


# --------------------------------------------------------------------------------------------
# Checking the weights against the networks
# --------------------------------------------------------------------------------------------


def check_fits(net: torch.nn.Module, sd: Mapping[str, Tensor], path: Path) -> None:
    """The state dict has exactly the network's keys, each of its shape; else one line."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = [f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "",
                 f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}" if unexpected else ""]
        raise CheckpointError(f"{path}: not a BigGAN-PyTorch layout ganforge knows, or not the one its config says ("
                              f"{'; '.join(p for p in parts if p)})")
    for key, value in expected.items():
        if tuple(sd[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{path}: parameter {key} has shape {tuple(sd[key].shape)} in the file but "
                                  f"{tuple(value.shape)} in the network its architecture describes")


def _build(kind: str, params: dict[str, Any], data: dict[str, int], where: Path) -> torch.nn.Module:
    """The ganforge network, on the meta device (shapes only, nothing allocated)."""
    from ganforge.models.biggan import BigGANDiscriminator, BigGANGenerator

    cls = BigGANGenerator if kind == "G" else BigGANDiscriminator
    try:
        with torch.device("meta"):
            return cls(**data, **params)
    except ValueError as e:
        raise CheckpointError(f"{where}: ganforge's biggan cannot be built as its config says ({e})") from None


def read(path: Path) -> Imported:
    """The networks and architecture of a BigGAN-PyTorch weights folder or file."""
    path = Path(path)
    files = _files(path)
    weights = {kind: _state_dict(files[kind]) for kind in NETWORK_FILES if kind in files}
    G_like = weights.get("G_ema", weights.get("G"))
    assert G_like is not None  # _files found one of them
    notes: list[str] = []
    if "state_dict" in files:
        generator, discriminator, data = _from_config(_training_config(files["state_dict"]), files["state_dict"])
        if "D" not in weights:
            discriminator = None
    else:
        where = files.get("G_ema", files.get("G"))
        generator, discriminator, data = _from_shapes(G_like, weights.get("D"), where)  # type: ignore[arg-type]
        notes.append(f"{path}: no state_dict.pth, so the architecture was read off the weights; BN_eps "
                     f"{DEFAULTS['BN_eps']}, SN_eps {DEFAULTS['SN_eps']} and one power iteration per step are "
                     "BigGAN-PyTorch's defaults, assumed")
    for kind, sd in weights.items():
        params = generator if kind != "D" else discriminator
        assert params is not None
        check_fits(_build("D" if kind == "D" else "G", params, data, files[kind]), sd, files[kind])
    return Imported(
        source=SOURCE, data_shape=data,
        generator={"kind": "biggan", **generator},
        discriminator={"kind": "biggan", **discriminator} if discriminator is not None else None,
        G=weights.get("G"), D=weights.get("D"), G_ema=weights.get("G_ema"),
        extras={"notes": notes} if notes else {},
    )
