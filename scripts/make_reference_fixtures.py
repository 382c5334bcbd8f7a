"""Write the parity fixtures: run each reference implementation on the CPU with random weights,
save a small checkpoint in that reference's own format, fixed inputs and the reference's outputs.

The reference code is not part of ganforge: each writer imports it from a checkout whose path it
is given, and only the files it writes (under tests/fixtures/reference/) are committed.

    python scripts/make_reference_fixtures.py --stylegan2-ada PATH --stylegan3 PATH --rosinality PATH --biggan PATH

Each reference is optional; the writers of the ones given run, in this order.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pickle
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference"


# --------------------------------------------------------------------------------------------
# Shared: importing a checkout, recording what made a fixture
# --------------------------------------------------------------------------------------------

# Top-level modules of the NVIDIA repositories (the same names in stylegan2-ada-pytorch and
# stylegan3): cleared before a checkout is imported, so two of them never mix in one process.
NVIDIA_MODULES = ("dnnlib", "torch_utils", "training", "legacy", "metrics")


def import_checkout(checkout: Path, modules: tuple[str, ...] = NVIDIA_MODULES) -> None:
    """Put `checkout` first on sys.path, forgetting modules of the same names imported before.
    Shims for what the references import but never use here, when it is not installed:
    `requests` (dnnlib's downloads) and `pkg_resources.parse_version` (stylegan3's torch
    version check, given packaging's)."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            del sys.modules[name]
    sys.path.insert(0, str(checkout))
    try:
        import requests  # noqa: F401
    except ImportError:
        sys.modules["requests"] = types.ModuleType("requests")
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)  # type: ignore[assignment]


def source_digest(*files: Path) -> dict[str, str]:
    """SHA-256 of the reference files that made a fixture (the checkouts are archives without .git)."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@torch.no_grad()
def perturb(module: torch.nn.Module, seed: int, scale: float = 0.3) -> None:
    """Move every parameter and float buffer off its initial value (zero biases and noise
    strengths, a zero w_avg), so that every one of them shows in the outputs; the resampling
    filters stay as they are."""
    g = torch.Generator().manual_seed(seed)
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point() and not re.search(r"filter|kernel", name):
            t.add_(scale * torch.randn(t.shape, generator=g))


def write_manifest(out: Path, reference: str, digest: dict[str, str], entries: dict[str, dict]) -> None:
    (out / "manifest.json").write_text(json.dumps({
        "reference": reference, "sources": digest, "torch": torch.__version__, "fixtures": entries,
        "written_by": "scripts/make_reference_fixtures.py"}, indent=1) + "\n")


# --------------------------------------------------------------------------------------------
# NVlabs/stylegan2-ada-pytorch (and NVlabs/stylegan3)
# --------------------------------------------------------------------------------------------

# StyleGAN2-ADA train.py's settings for every config (float16 in the 4 highest resolutions,
# activations clamped at 256); a variant with them also gets train.py's augmentation pipe (ADA,
# bgc) with a p reached in training, as the published pickles have.
TRAIN_PY = {"num_fp16_res": 4, "conv_clamp": 256}

# (name, resolution, image channels, G architecture, D architecture, label classes, extra synthesis
# and D settings); grey images at 64 px, to keep the files small. Each architecture, for G and for
# D, at 32 and 64 px, conditional and not. The first six have one architecture for both networks;
# the others mix them, among them the layouts users load: train.py's default (G skip, D resnet:
# the FFHQ, AFHQ and MetFaces pickles) and its `cifar` config (G skip, D orig). A variant's seeds
# follow its position: new ones go at the end, so that the earlier files stay as they are.
ADA_VARIANTS = [
    ("orig-32", 32, 3, "orig", "orig", 0, {}),
    ("skip-32-cond", 32, 3, "skip", "skip", 4, {}),
    ("resnet-32-cond", 32, 3, "resnet", "resnet", 5, {}),
    ("orig-64-cond", 64, 1, "orig", "orig", 3, {}),
    ("skip-64", 64, 1, "skip", "skip", 0, {}),
    ("resnet-64", 64, 1, "resnet", "resnet", 0, TRAIN_PY),
    ("g-skip-d-resnet-32", 32, 3, "skip", "resnet", 0, {}),
    ("g-skip-d-resnet-64-cond", 64, 1, "skip", "resnet", 3, TRAIN_PY),
    ("g-skip-d-orig-32-cond", 32, 3, "skip", "orig", 10, TRAIN_PY),
    ("g-skip-d-orig-64", 64, 1, "skip", "orig", 0, {}),
    ("g-resnet-d-skip-32", 32, 3, "resnet", "skip", 0, {}),
    ("g-resnet-d-skip-64-cond", 64, 1, "resnet", "skip", 4, {}),
    ("g-orig-d-resnet-32-cond", 32, 3, "orig", "resnet", 6, {}),
    ("g-orig-d-skip-64", 64, 1, "orig", "skip", 0, {}),
]
SAMPLES = 2  # samples per fixture (the images are most of a fixture's size)


def _snapshot(G: Any, D: Any, G_ema: Any, augment_pipe: Any, training_set_kwargs: dict) -> dict[str, Any]:
    """What training_loop.py pickles: each network deep-copied, in eval mode, without gradients."""
    data: dict[str, Any] = {"training_set_kwargs": dict(training_set_kwargs)}
    for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
        data[name] = copy.deepcopy(module).eval().requires_grad_(False) if module is not None else None
    return data


@torch.no_grad()
def nvidia_outputs(G: Any, D: Any, G_ema: Any, c_dim: int, res: int, seed: int, update_kw: str) -> dict[str, Any]:
    """The reference's outputs in float32 on the CPU: the mapping z -> w (truncation 1), G_ema's
    images with constant noise at truncation 1 and 0.7, raw G's at 1, D's logits on G_ema's images."""
    n = SAMPLES
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g)
    labels = torch.arange(n) % c_dim if c_dim else None
    c = torch.nn.functional.one_hot(labels, c_dim).float() if c_dim else torch.zeros(n, 0)
    out: dict[str, Any] = {"z": z, "labels": labels}
    out["ws"] = G_ema.mapping(z, c, **{update_kw: False} if update_kw else {})[:, 0]
    for name, psi in (("image", 1.0), ("image_psi0.7", 0.7)):
        out[name] = G_ema(z, c, truncation_psi=psi, noise_mode="const", force_fp32=True)
    out["image_G"] = G(z[:1], c[:1], noise_mode="const", force_fp32=True)  # raw G: one sample
    out["logits"] = D(out["image"], c, force_fp32=True).squeeze(1)
    return out


def _same_snapshot(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two unpickled snapshots hold the same networks: classes, their source, constructor
    arguments, parameters and buffers, and the same other entries."""
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if not isinstance(x, torch.nn.Module) or not isinstance(y, torch.nn.Module):
            if x != y:
                return False
            continue
        facts = [(type(m).__name__, getattr(m, "_orig_module_src", None), getattr(m, "_init_kwargs", None))
                 for m in (x, y)]
        sx, sy = x.state_dict(), y.state_dict()
        if facts[0] != facts[1] or sx.keys() != sy.keys() or not all(torch.equal(sx[k], sy[k]) for k in sx):
            return False
    return True


def _write_pickle(path: Path, data: dict[str, Any]) -> None:
    """Pickle a snapshot, keeping the file already there when it holds the same networks: a pickle
    names each tensor's storage by its memory address, so its bytes differ from run to run, and an
    unchanged fixture should not."""
    if path.exists():
        with open(path, "rb") as f:
            if _same_snapshot(pickle.load(f), data):  # a fixture this script wrote: the reference's code
                return
    with open(path, "wb") as f:
        pickle.dump(data, f)


def make_stylegan2_ada(checkout: Path, out: Path) -> None:
    """StyleGAN2-ADA network pickles and their outputs."""
    import_checkout(checkout)
    import dnnlib

    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    for i, (name, res, channels, g_arch, d_arch, c_dim, extra) in enumerate(ADA_VARIANTS):
        torch.manual_seed(i)
        synthesis = dnnlib.EasyDict(channel_base=res * 4, channel_max=8, architecture=g_arch,
                                    **{k: v for k, v in extra.items()})
        # As train.py builds them (its `cifar` and `auto` configs use 2 mapping layers), small.
        G_kwargs = dnnlib.EasyDict(class_name="training.networks.Generator", z_dim=16, w_dim=12,
                                   mapping_kwargs=dnnlib.EasyDict(num_layers=2), synthesis_kwargs=synthesis)
        D_kwargs = dnnlib.EasyDict(class_name="training.networks.Discriminator", architecture=d_arch,
                                   channel_base=res * 4, channel_max=8, block_kwargs=dnnlib.EasyDict(),
                                   mapping_kwargs=dnnlib.EasyDict(),
                                   epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=2),
                                   **{k: v for k, v in extra.items()})
        common = dict(c_dim=c_dim, img_resolution=res, img_channels=channels)
        G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False)
        D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False)
        perturb(G, 100 + i)
        perturb(D, 200 + i)
        G_ema = copy.deepcopy(G).eval()
        perturb(G_ema, 300 + i, scale=0.05)  # an average of G: close to it, not equal
        augment_pipe = None
        if extra:  # train.py's default augmentation (ADA, bgc) with a p reached in training
            augment_pipe = dnnlib.util.construct_class_by_name(
                class_name="training.augment.AugmentPipe", xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1,
                xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
            augment_pipe.p.copy_(torch.as_tensor(0.23))
        data = _snapshot(G, D, G_ema, augment_pipe, {"path": f"~/datasets/{name}.zip", "use_labels": bool(c_dim),
                                                     "resolution": res})
        _write_pickle(out / f"{name}.pkl", data)
        outputs = nvidia_outputs(data["G"], data["D"], data["G_ema"], c_dim, res, 1000 + i, "skip_w_avg_update")
        torch.save(outputs, out / f"{name}.pt")
        entries[name] = {"resolution": res, "channels": channels, "architecture": {"G": g_arch, "D": d_arch},
                         "classes": c_dim,
                         "settings": extra,
                         "ada_p": 0.23 if augment_pipe is not None else None}
    write_manifest(out, "NVlabs/stylegan2-ada-pytorch", source_digest(
        checkout / "training" / "networks.py", checkout / "torch_utils" / "persistence.py",
        checkout / "torch_utils" / "ops" / "upfirdn2d.py", checkout / "torch_utils" / "ops" / "conv2d_resample.py"),
        entries)


def make_stylegan3(checkout: Path, out: Path) -> None:
    """StyleGAN3 network pickles: its StyleGAN2 networks (networks_stylegan2.py, another module and
    other defaults than stylegan2-ada-pytorch's), and an alias-free StyleGAN3-R that an import refuses."""
    import_checkout(checkout)
    import dnnlib

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(10)
    common = dict(c_dim=0, img_resolution=32, img_channels=3)
    # train.py --cfg=stylegan2 (mapping depth 2 as --map-depth=2), small.
    G = dnnlib.util.construct_class_by_name(class_name="training.networks_stylegan2.Generator", z_dim=16, w_dim=12,
                                            mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=128,
                                            channel_max=8, fused_modconv_default="inference_only", **common)
    D = dnnlib.util.construct_class_by_name(class_name="training.networks_stylegan2.Discriminator", channel_base=128,
                                            channel_max=8, block_kwargs=dnnlib.EasyDict(freeze_layers=0),
                                            mapping_kwargs=dnnlib.EasyDict(),
                                            epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4), **common)
    perturb(G, 110)
    perturb(D, 210)
    G_ema = copy.deepcopy(G).eval()
    perturb(G_ema, 310, scale=0.05)
    data = _snapshot(G.train(), D.train(), G_ema, None, {"path": "~/datasets/sg3.zip", "resolution": 32})
    with open(out / "stylegan2-32.pkl", "wb") as f:
        pickle.dump(data, f)
    torch.save(nvidia_outputs(data["G"], data["D"], data["G_ema"], 0, 32, 1100, "update_emas"),
               out / "stylegan2-32.pt")
    # train.py --cfg=stylegan3-r at 16 px, small (4 layers, not 14): refused by an import (ganforge
    # has no such G).
    G3 = dnnlib.util.construct_class_by_name(class_name="training.networks_stylegan3.Generator", z_dim=8, w_dim=8,
                                             mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=512,
                                             channel_max=8, conv_kernel=1, use_radial_filters=True, num_layers=4,
                                             magnitude_ema_beta=0.5 ** (32 / 20000), **{**common, "img_resolution": 16})
    D3 = dnnlib.util.construct_class_by_name(class_name="training.networks_stylegan2.Discriminator", channel_base=128,
                                             channel_max=8, block_kwargs=dnnlib.EasyDict(),
                                             mapping_kwargs=dnnlib.EasyDict(),
                                             epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4),
                                             **{**common, "img_resolution": 16})
    with open(out / "stylegan3-r-16.pkl", "wb") as f:
        pickle.dump(_snapshot(G3, D3, copy.deepcopy(G3), None, {"path": "~/datasets/sg3r.zip"}), f)
    write_manifest(out, "NVlabs/stylegan3", source_digest(
        checkout / "training" / "networks_stylegan2.py", checkout / "training" / "networks_stylegan3.py",
        checkout / "torch_utils" / "persistence.py"),
        {"stylegan2-32": {"resolution": 32, "architecture": "skip/resnet", "classes": 0},
         "stylegan3-r-16": {"resolution": 16, "refused": "alias-free generator"}})


# --------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch
# --------------------------------------------------------------------------------------------

ROSINALITY_MODULES = ("model", "op", "non_leaking", "distributed", "dataset")


def import_rosinality(checkout: Path) -> Any:
    """rosinality's model.py, with two shims: its `op` package compiles CUDA extensions when
    imported (their CPU paths need none), so torch.utils.cpp_extension.load returns a stub while it
    is imported; and its channel table (512 feature maps up to 32 px, fixed in the source) is
    divided by 64, so that a fixture is kilobytes, not a 60 MB network. Nothing else of its code
    is changed."""
    import torch.utils.cpp_extension as cpp_extension

    for name in list(sys.modules):
        if name.split(".")[0] in ROSINALITY_MODULES:
            del sys.modules[name]
    sys.path.insert(0, str(checkout))
    load = cpp_extension.load
    cpp_extension.load = lambda *args, **kwargs: types.SimpleNamespace()
    try:
        import op  # noqa: F401
    finally:
        cpp_extension.load = load
    source = (checkout / "model.py").read_text()
    shrunk = re.sub(r"(\d+): (\d+)( \* channel_multiplier)?,", lambda m: f"{m[1]}: {int(m[2]) // 64}{m[3] or ''},",
                    source)
    assert shrunk.count("channel_multiplier,") >= 10, "the channel tables of model.py were not found"
    model = types.ModuleType("model")
    model.__file__ = str(checkout / "model.py")
    exec(compile(shrunk, model.__file__, "exec"), model.__dict__)
    sys.modules["model"] = model
    return model


def make_rosinality(checkout: Path, out: Path) -> None:
    """rosinality stylegan2-pytorch checkpoints and their outputs."""
    model = import_rosinality(checkout)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(20)
    # train.py's arguments (it sets latent 512 and n_mlp 8 itself; smaller here).
    args = argparse.Namespace(path="lmdb", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=32, r1=10,
                              path_regularize=2, path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9,
                              ckpt=None, lr=0.002, channel_multiplier=2, wandb=False, local_rank=0, augment=True,
                              augment_p=0, ada_target=0.6, ada_length=500000, ada_every=256, latent=16, n_mlp=2,
                              start_iter=0, distributed=False)
    g = model.Generator(args.size, args.latent, args.n_mlp, channel_multiplier=args.channel_multiplier)
    d = model.Discriminator(args.size, channel_multiplier=args.channel_multiplier)
    perturb(g, 120)
    perturb(d, 220)
    g_ema = copy.deepcopy(g).eval()
    perturb(g_ema, 320, scale=0.05)
    g_optim = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.0, 0.99))
    d_optim = torch.optim.Adam(d.parameters(), lr=args.lr, betas=(0.0, 0.99))
    for net, opt in ((g, g_optim), (d, d_optim)):  # one step, so that the optimizers have state
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(), "g_optim": g_optim.state_dict(),
                "d_optim": d_optim.state_dict(), "args": args, "ada_aug_p": 0.31}, out / "stylegan2-32.pt")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(2000)
        z = torch.randn(2, args.latent, generator=gen)
        torch.manual_seed(2001)
        mean_latent = g_ema.mean_latent(4096)
        image, _ = g_ema([z], randomize_noise=False)
        image_t, _ = g_ema([z], truncation=0.7, truncation_latent=mean_latent, randomize_noise=False)
        image_G, _ = g([z[:1]], randomize_noise=False)  # raw g: one sample
        outputs = {"z": z, "labels": None, "ws": g_ema.style(z), "mean_latent": mean_latent[0], "image": image,
                   "image_psi0.7": image_t, "image_G": image_G, "logits": d(image).squeeze(1)}
    torch.save(outputs, out / "stylegan2-32-outputs.pt")
    write_manifest(out, "rosinality/stylegan2-pytorch", source_digest(checkout / "model.py", checkout / "op" /
                                                                      "upfirdn2d.py", checkout / "op" / "fused_act.py"),
                   {"stylegan2-32": {"resolution": 32, "channel_multiplier": 2, "channels": "the table divided by 64",
                                     "ada_aug_p": 0.31}})


# --------------------------------------------------------------------------------------------
# ajbrock/BigGAN-PyTorch
# --------------------------------------------------------------------------------------------


# Two small networks that between them cover the layouts: the CIFAR script's (per-class BN
# embeddings, no hierarchical z, N(0, 0.02) init) with attention at 16, which D_arch[32] puts after
# all four D blocks; and an ImageNet-style 128 px one (shared embedding, hierarchical z, attention
# at 32 in G and at 16 and 8 in D, myBN, a thin D, two singular vectors, non-default epsilons),
# saved in the pre-1.6 serialization that 2019 checkpoints have.
BIGGAN_RUNS = {
    "px32": dict(args="--dataset C10 --G_ch 4 --D_ch 4 --dim_z 16 --G_attn 16 --D_attn 16 --G_init N02 --D_init N02 "
                      "--num_D_SVs 2 --ema --use_ema --ema_start 1000", classes=10, batch=4, legacy=False),
    "px128": dict(args="--dataset I128_hdf5 --G_ch 2 --D_ch 2 --dim_z 30 --hier --G_shared --shared_dim 8 "
                       "--G_attn 32 --D_attn 16_8 --mybn --D_thin --num_G_SVs 2 --num_G_SV_itrs 2 --SN_eps 1e-6 "
                       "--BN_eps 1e-4 --G_init ortho --D_init xavier --ema --use_ema", classes=5, batch=2, legacy=True),
}

# Layouts the two runs above do not cover, recorded as the reference builds them (state-dict
# names and shapes with the config train.py would save, no weights): 64 and 256 px, the default
# attention at 64, cross-replica BatchNorm, a thin D, a dim_z that hierarchical z does not split.
BIGGAN_LAYOUTS = {
    "px64_attn64": "--dataset I64_hdf5 --G_ch 4 --D_ch 8 --dim_z 20 --hier --G_shared --shared_dim 4",
    "px256_cross_replica": "--dataset I256_hdf5 --G_ch 1 --D_ch 1 --dim_z 16 --hier --G_shared --G_attn 0 "
                           "--D_attn 0 --cross_replica",
    "px128_thin_dimz_remainder": "--dataset I128_hdf5 --G_ch 1 --D_ch 1 --dim_z 20 --hier --G_shared "
                                 "--shared_dim 6 --G_attn 0 --D_attn 4 --D_thin",
    "px32_cifar_script": "--dataset C10 --G_attn 0 --D_attn 0 --G_init N02 --D_init N02",
}


def _import_biggan_pytorch(checkout: Path) -> tuple[Any, Any]:
    """BigGAN.py and utils.py from a checkout, with the shims torch 2.14 needs."""
    import sys
    import types

    sys.path.insert(0, str(checkout))
    # utils imports datasets.py, which imports h5py for ImageNet HDF5 files; nothing here reads one.
    sys.modules.setdefault("h5py", types.ModuleType("h5py"))
    import BigGAN
    import utils

    return BigGAN, utils


def _completed_config(utils: Any, args: str, classes: int) -> dict[str, Any]:
    """The config as train.py completes it (run()), with a small class count."""
    config = vars(utils.prepare_parser().parse_args(args.split()))
    config["resolution"] = utils.imsize_dict[config["dataset"]]
    config["n_classes"] = classes
    config["G_activation"] = utils.activation_dict[config["G_nl"]]
    config["D_activation"] = utils.activation_dict[config["D_nl"]]
    return utils.update_config_roots(config)


def make_biggan_pytorch(checkout: Path, out: Path) -> None:
    """BigGAN-PyTorch weights (G.pth, D.pth, G_ema.pth, state_dict.pth) and their outputs."""
    import contextlib
    import copy
    import functools
    import io
    import json
    import shutil
    import tempfile

    import numpy as np
    import torch

    BigGAN, utils = _import_biggan_pytorch(checkout)
    # One thread, as the tests run: the same reduction order, so the same last bits (with another
    # thread count the outputs differ by up to 7.7e-6 here).
    torch.set_num_threads(1)
    for name, run in BIGGAN_RUNS.items():
        torch.manual_seed(0)
        config = _completed_config(utils, run["args"], run["classes"])
        with contextlib.redirect_stdout(io.StringIO()):  # the reference prints every layer it adds
            G = BigGAN.Generator(**config)
            D = BigGAN.Discriminator(**config)
            G_ema = BigGAN.Generator(**{**config, "skip_init": True, "no_optim": True})
            ema = utils.ema(G, G_ema, 0.9, 0)
        # Random weights everywhere, including what starts constant (attention gains at 0, the
        # output BatchNorm's gain and bias), so that every parameter shows in the outputs; the
        # output gain is raised so that the images span much of [-1, 1].
        with torch.no_grad():
            for key, p in [*G.named_parameters(), *D.named_parameters()]:
                if key.endswith("gamma") or key.startswith("output_layer.0."):
                    p.add_(0.3 * torch.randn_like(p))
            G.output_layer[0].gain.mul_(3)
        # Training-mode passes: spectral-norm power iterations (u, sv) and BatchNorm statistics
        # move away from their initial values; G_ema averages a perturbed G (buffers included).
        y_dist = functools.partial(torch.randint, 0, config["n_classes"], (8,))
        for _ in range(3):
            with torch.no_grad():
                z, y = torch.randn(8, G.dim_z), y_dist()
                D(G(z, G.shared(y)), y)
                for p in G.parameters():
                    p.add_(0.01 * torch.randn_like(p))
                ema.update(1)

        # Fixed inputs and the reference's outputs: in eval mode (G_ema's for the first sample
        # only, to keep the files small: in eval mode each sample is computed on its own), and in
        # training mode on copies (batch statistics, one power-iteration step in every layer).
        z, y = torch.randn(run["batch"], G.dim_z), torch.randint(0, config["n_classes"], (run["batch"],))
        G.eval(), G_ema.eval(), D.eval()
        with torch.no_grad():
            images, ema_images = G(z, G.shared(y)), G_ema(z[:1], G_ema.shared(y[:1]))
            logits = D(images, y).flatten()  # D judges the reference's own images
            G_train, D_train = copy.deepcopy(G).train(), copy.deepcopy(D).train()
            train_images = G_train(z, G_train.shared(y))
            train_logits = D_train(images, y).flatten()
        evaluated = {"z": z, "y": y, "G": images, "G_ema": ema_images, "D": logits}
        trained = {"G": train_images, "D": train_logits,  # and the buffers after that step (u, sv, statistics)
                   "G_buffers": dict(G_train.named_buffers()), "D_buffers": dict(D_train.named_buffers())}

        # The weights as utils.save_weights writes them, with a state_dict as training leaves it.
        state_dict = {"itr": 3, "epoch": 0, "save_num": 0, "save_best_num": 0, "best_IS": np.float64(1.5),
                      "best_FID": np.float64(300.0), "config": config}
        folder = out / name / "weights"
        shutil.rmtree(out / name, ignore_errors=True)
        folder.mkdir(parents=True)
        save = torch.save
        if run["legacy"]:
            torch.save = functools.partial(save, _use_new_zipfile_serialization=False)
        try:
            with tempfile.TemporaryDirectory() as root, contextlib.redirect_stdout(io.StringIO()):
                G.train(), D.train()  # as saved during training
                utils.save_weights(G, D, state_dict, root, "run", None, G_ema)
                for file in sorted(Path(root, "run").iterdir()):
                    shutil.copy(file, folder / file.name)
        finally:
            torch.save = save
        torch.save(evaluated, out / name / "reference.pt")
        torch.save(trained, out / name / "reference_train.pt")

    layouts = {}
    for name, args in BIGGAN_LAYOUTS.items():
        config = _completed_config(utils, args, classes=3)
        with contextlib.redirect_stdout(io.StringIO()):
            G = BigGAN.Generator(**{**config, "skip_init": True, "no_optim": True})
            D = BigGAN.Discriminator(**{**config, "skip_init": True})
        plain = {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool)) or v is None}
        layouts[name] = {"args": args, "config": plain, "dim_z_built": G.dim_z,
                         "G": {k: list(v.shape) for k, v in G.state_dict().items()},
                         "D": {k: list(v.shape) for k, v in D.state_dict().items()}}
    (out / "layouts.json").write_text(json.dumps(layouts, indent=1) + "\n")


# --------------------------------------------------------------------------------------------


WRITERS: dict[str, Callable[[Path, Path], None]] = {
    "stylegan2_ada": make_stylegan2_ada,
    "stylegan3": make_stylegan3,
    "rosinality": make_rosinality,
    "biggan": make_biggan_pytorch,
}


def main() -> None:
    """Run the writers of the references whose checkouts are given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stylegan2-ada", type=Path, help="a checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--stylegan3", type=Path, help="a checkout of NVlabs/stylegan3")
    parser.add_argument("--rosinality", type=Path, help="a checkout of rosinality/stylegan2-pytorch")
    parser.add_argument("--biggan", type=Path, help="a checkout of ajbrock/BigGAN-PyTorch")
    parser.add_argument("--out", type=Path, default=OUT, help="the fixture folder (default: %(default)s)")
    args = parser.parse_args()
    given = {"stylegan2_ada": args.stylegan2_ada, "stylegan3": args.stylegan3, "rosinality": args.rosinality,
             "biggan": args.biggan}
    if not any(given.values()):
        parser.error("give at least one reference checkout")
    for name, checkout in given.items():
        if checkout is not None:
            WRITERS[name](checkout.resolve(), args.out / name)
            print(f"{name}: wrote {args.out / name}")


if __name__ == "__main__":
    main()
