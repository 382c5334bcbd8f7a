"""Write the parity fixtures: run each reference implementation on the CPU with random weights,
save a small checkpoint in that reference's own format, fixed inputs and the reference's outputs.

The reference code is not part of ganforge: each writer imports it from a checkout whose path it
is given, and only the files it writes (under tests/fixtures/reference/) are committed.

    python scripts/make_reference_fixtures.py --stylegan2-ada PATH --rosinality PATH --biggan PATH

Each reference is optional; the writers of the ones given run, in this order.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference"


# --------------------------------------------------------------------------------------------
# NVlabs/stylegan2-ada-pytorch
# --------------------------------------------------------------------------------------------


def make_stylegan2_ada(checkout: Path, out: Path) -> None:
    """StyleGAN2-ADA network pickles and their outputs."""
    raise NotImplementedError("stylegan2-ada fixtures: not written yet")


# --------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch
# --------------------------------------------------------------------------------------------


def make_rosinality(checkout: Path, out: Path) -> None:
    """rosinality stylegan2-pytorch checkpoints and their outputs."""
    raise NotImplementedError("rosinality fixtures: not written yet")


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
    "rosinality": make_rosinality,
    "biggan": make_biggan_pytorch,
}


def main() -> None:
    """Run the writers of the references whose checkouts are given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stylegan2-ada", type=Path, help="a checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--rosinality", type=Path, help="a checkout of rosinality/stylegan2-pytorch")
    parser.add_argument("--biggan", type=Path, help="a checkout of ajbrock/BigGAN-PyTorch")
    parser.add_argument("--out", type=Path, default=OUT, help="the fixture folder (default: %(default)s)")
    args = parser.parse_args()
    given = {"stylegan2_ada": args.stylegan2_ada, "rosinality": args.rosinality, "biggan": args.biggan}
    if not any(given.values()):
        parser.error("give at least one reference checkout")
    for name, checkout in given.items():
        if checkout is not None:
            WRITERS[name](checkout.resolve(), args.out / name)
            print(f"{name}: wrote {args.out / name}")


if __name__ == "__main__":
    main()
