"""Reproduce a full-size recipe's published figure: train, evaluate with the paper's protocol,
print measured next to reported.

    python scripts/reproduce.py configs/sngan_cifar10.yaml                 # the whole recipe (GPU, days)
    python scripts/reproduce.py configs/sngan_cifar10.yaml --print-only    # what it would run and compare
    python scripts/reproduce.py --table                                    # the README's recipe table
    python scripts/reproduce.py --settings                   # docs/recipes.md: every key against its source

Each `*_cifar10.yaml` recipe has an entry below: the figures its paper reports on CIFAR-10 and
where they come from; the evaluation protocol (which generator: raw G or its moving average, and
BatchNorm on running or per-batch statistics; how many samples; the real images; the metric code);
and its settings, each config key against the value its reference code uses (tests/test_recipes
reads the configs against them; a key whose value still differs says so and why). The script runs
`ganforge train` and then `ganforge eval` once per sample count of the protocol, as a user would
(subprocesses), and writes `REPRO_OUT/<recipe>.json` with both columns. Next to each figure it
prints what `ganforge eval RUN` with the run's defaults would do differently. CIFAR-10 and the FID
Inception weights must be on disk (`data/cifar-10-batches-py`, `--inception-weights`); smaller
`--steps`/`--num-samples` make a smoke run on stand-ins (the test suite does that).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# What each paper measured, and how
# --------------------------------------------------------------------------------------------

# ganforge's IS and FID: pytorch-fid's port of the TF Inception (2015-12-05), images resized
# bilinearly to 299 as pytorch-fid does; IS on its 1008 logits without the bias, 10 splits.
GANFORGE_METRICS = {
    "fid": "pytorch-fid's port of the TF Inception (bilinear resize to 299, pool3 features)",
    "is": "pytorch-fid's port of the TF Inception (bilinear resize to 299, the 1008 logits, 10 consecutive splits)",
}
# The IS code of ganforge's closest to the papers' TensorFlow Inception Score: torch-fidelity's
# (TF1's bilinear resize, (x - 128) / 128, shuffled splits), which reproduces it.
IS_PROTOCOL = "torch-fidelity"


@dataclass(frozen=True)
class Protocol:
    """How a paper scored its generator, in `ganforge eval`'s terms."""

    generator: Literal["raw", "ema"]  # G as trained, or its moving average
    # G's BatchNorm: on its running statistics (eval mode), on each generation batch's own (train
    # mode), or none in G.
    batchnorm: Literal["running", "batch", "none"]
    batch: int  # samples per generation batch (what the statistics are taken over, with "batch")
    is_samples: int | None  # generated samples of the Inception Score (10 splits); None: not reported
    fid_samples: int | None  # generated samples of the FID; None: not reported
    fid_real: int | None  # real training images of the FID's statistics; None: all of them
    split: str  # the data split of the real images
    implementation: str  # the paper's metric code
    note: str = ""  # what the paper leaves open
    # How the paper turned G's output into 8-bit pixels: rounded (as ganforge, and PNG files) or
    # truncated (igul222's int((x + 1) * 255.99 / 2)).
    pixels: Literal["round", "truncate"] = "round"


@dataclass(frozen=True)
class Setting:
    """A config key of a recipe against the value of its reference: `ours` is what the config holds
    where that still differs (None: the same), with `why`."""

    key: str  # dotted path in the resolved config; list items by index (regularizers.0.weight)
    reference: Any  # in ganforge's terms
    source: str  # where the reference sets it
    ours: Any = None
    why: str = ""

    @property
    def expected(self) -> Any:
        """What the config must hold."""
        return self.reference if self.ours is None else self.ours


@dataclass(frozen=True)
class Reported:
    """A published result, how it was measured, and the recipe's settings against its source."""

    figures: dict[str, float]  # e.g. {"fid": 21.7, "is": 8.22}
    source: str  # paper and table
    reference_code: str  # the code the settings are checked against
    protocol: Protocol
    reference_steps: str  # how long the reference trained
    settings: tuple[Setting, ...] = ()
    # What the recipe's training still does differently from the reference, beyond its settings.
    notes: tuple[str, ...] = ()
    metrics: tuple[str, ...] = field(default=("fid", "is"))


# Config keys with no counterpart in the papers' code: where files go, how often to log, save and
# evaluate during training, the device, the seed.
BOOKKEEPING = ("data.root", "data.download", "train.seed", "train.device", "log.", "samples.", "checkpoint.",
               "eval.")

G_LR_4_5 = ("training_loop.py builds G's Adam for G_reg_interval = 4, which the cifar config leaves on although "
            "path length is off (its Greg phase steps no gradient): lr x 4/5")


def _adam(player: str, lr: float, betas: tuple[float, float], source: str, eps: float | None = None) -> list[Setting]:
    rows = [Setting(f"optim.{player}.kind", "adam", source), Setting(f"optim.{player}.lr", lr, source),
            Setting(f"optim.{player}.betas", list(betas), source)]
    return rows + ([Setting(f"optim.{player}.eps", eps, source)] if eps is not None else [])


SNGAN_CONFIG = "sngan_projection configs/sn_cifar10_unconditional.yml"
WGAN_GP = "gan_cifar_resnet.py"
BIGGAN_SCRIPT = "BigGAN-PyTorch scripts/launch_cifar_ema.sh"
BIGGAN_DEFAULTS = "BigGAN-PyTorch utils.py defaults"
SG2_CIFAR = "stylegan2-ada-pytorch train.py, cfg 'cifar'"

RECIPES: dict[str, Reported] = {
    "wgan_gp_cifar10": Reported(
        figures={"is": 7.86},
        source="Gulrajani et al. 2017, Table 3 (unsupervised CIFAR-10, ResNet): IS 7.86 +- 0.07",
        reference_code="igul222/improved_wgan_training gan_cifar_resnet.py with CONDITIONAL = False",
        protocol=Protocol(generator="raw", batchnorm="batch", batch=100, is_samples=50_000, fid_samples=None,
                          fid_real=None, split="train",
                          implementation="TF Inception 2015-12-05 softmax (improved-gan's inception_score.py), "
                                         "samples quantised as int((x + 1) x 255.99 / 2)", pixels="truncate"),
        reference_steps="100,000 G iterations, 5 critic steps each, batch 64 (igul222 gan_cifar_resnet.py)",
        settings=(
            Setting("data.kind", "cifar10", f"{WGAN_GP}: tflib.cifar10"),
            Setting("data.split", "train", f"{WGAN_GP}: data_batch_1..5"),
            Setting("data.resolution", 32, f"{WGAN_GP}: OUTPUT_DIM 3072"),
            Setting("data.dequantize", True, f"{WGAN_GP}: 2 (x/256 - 0.5) + U(0, 1/128)"),
            Setting("generator.kind", "resnet", f"{WGAN_GP}: Generator"),
            Setting("generator.latent_dim", 128, f"{WGAN_GP}: tf.random_normal([n, 128])"),
            Setting("generator.base_width", 128, f"{WGAN_GP}: DIM_G"),
            Setting("generator.max_width", 128, f"{WGAN_GP}: DIM_G"),
            Setting("generator.init", "glorot", f"{WGAN_GP}: he_init (std sqrt(4/(fan_in+fan_out))), Glorot shortcuts"),
            Setting("discriminator.kind", "resnet", f"{WGAN_GP}: Discriminator"),
            Setting("discriminator.base_width", 128, f"{WGAN_GP}: DIM_D"),
            Setting("discriminator.max_width", 128, f"{WGAN_GP}: DIM_D"),
            Setting("discriminator.extra_blocks", 2, f"{WGAN_GP}: Discriminator.3 and .4 at 8x8"),
            Setting("discriminator.pool", "mean", f"{WGAN_GP}: tf.reduce_mean over space"),
            Setting("discriminator.output_bias", True, f"{WGAN_GP}: Discriminator.Output, a Linear with bias"),
            Setting("discriminator.init", "glorot", f"{WGAN_GP}: he_init convs, Glorot shortcuts and output"),
            Setting("loss.kind", "wasserstein", f"{WGAN_GP}: mean D(fake) - mean D(real)"),
            Setting("regularizers.0.kind", "gradient_penalty", f"{WGAN_GP}: slopes on interpolates"),
            Setting("regularizers.0.weight", 10.0, f"{WGAN_GP}: 10 x mean((slopes - 1)^2)"),
            *_adam("g", 2e-4, (0.0, 0.9), f"{WGAN_GP}: LR, beta1 0, beta2 0.9"),
            *_adam("d", 2e-4, (0.0, 0.9), f"{WGAN_GP}: LR, beta1 0, beta2 0.9"),
            Setting("schedule.g.kind", "linear_decay", f"{WGAN_GP}: DECAY, LR x (1 - iteration / ITERS)"),
            Setting("schedule.d.kind", "linear_decay", f"{WGAN_GP}: DECAY"),
            Setting("train.steps", 100_000, f"{WGAN_GP}: ITERS"),
            Setting("train.batch_size", 64, f"{WGAN_GP}: BATCH_SIZE"),
            Setting("train.g_batch_size", 128, f"{WGAN_GP}: GEN_BS_MULTIPLE x BATCH_SIZE"),
            Setting("train.d_steps_per_g_step", 5, f"{WGAN_GP}: N_CRITIC"),
            Setting("train.ema.decay", 0.0, f"{WGAN_GP}: no moving average"),
        ),
        notes=("the reference updates G before the critic in each iteration and skips G at iteration 0 "
               "(99,999 G updates); ganforge updates the critic first (100,000 G updates)",),
        metrics=("is",),
    ),
    "sngan_cifar10": Reported(
        figures={"is": 8.22, "fid": 21.7},
        source="Miyato et al. 2018, Table 2 (SN-GANs, ResNet, hinge, n_dis = 5): IS 8.22 +- 0.05, FID 21.7 +- 0.21",
        reference_code="pfnet-research/sngan_projection configs/sn_cifar10_unconditional.yml, its models and updater",
        protocol=Protocol(generator="raw", batchnorm="running", batch=100, is_samples=50_000, fid_samples=10_000,
                          fid_real=5_000, split="train",
                          note="the paper does not name the split of its 5,000 real images",
                          implementation="Chainer port of the TF Inception (source/inception), IS 10 splits; FID "
                                         "from its pool3 features"),
        reference_steps="50,000 G iterations, 5 D steps each, batch 64, linear lr decay",
        settings=(
            Setting("data.kind", "cifar10", "datasets/cifar10.py"),
            Setting("data.split", "train", f"{SNGAN_CONFIG}: test: False"),
            Setting("data.resolution", 32, "datasets/cifar10.py"),
            Setting("data.dequantize", True, "datasets/cifar10.py: x/128 - 1 + U(0, 1/128)"),
            Setting("generator.kind", "resnet", "gen_models/resnet_32.py ResNetGenerator"),
            Setting("generator.latent_dim", 128, f"{SNGAN_CONFIG}: dim_z"),
            Setting("generator.base_width", 256, f"{SNGAN_CONFIG}: ch"),
            Setting("generator.max_width", 256, f"{SNGAN_CONFIG}: ch"),
            Setting("generator.init", "glorot", "gen_models/resblocks.py: GlorotUniform(sqrt(2)), GlorotUniform()"),
            Setting("discriminator.kind", "resnet", "dis_models/snresnet_32.py SNResNetProjectionDiscriminator"),
            Setting("discriminator.base_width", 128, f"{SNGAN_CONFIG}: ch"),
            Setting("discriminator.max_width", 128, f"{SNGAN_CONFIG}: ch"),
            Setting("discriminator.extra_blocks", 2, "dis_models/snresnet_32.py: block3, block4 at 8x8"),
            Setting("discriminator.pool", "sum", "dis_models/snresnet_32.py: F.sum over space"),
            Setting("discriminator.output_bias", False, "dis_models/snresnet_32.py: SNLinear(ch, 1, nobias=True)"),
            Setting("discriminator.init", "glorot", "dis_models/resblocks.py: GlorotUniform(sqrt(2)), GlorotUniform()"),
            Setting("loss.kind", "hinge", f"{SNGAN_CONFIG}: loss_type: hinge"),
            Setting("regularizers.0.kind", "spectral_norm", "dis_models: SNConvolution2D, SNLinear"),
            Setting("regularizers.0.discriminator", True, "dis_models: every layer"),
            Setting("regularizers.0.generator", False, "gen_models: plain layers"),
            *_adam("g", 2e-4, (0.0, 0.9), f"{SNGAN_CONFIG}: adam alpha, beta1, beta2"),
            *_adam("d", 2e-4, (0.0, 0.9), f"{SNGAN_CONFIG}: adam alpha, beta1, beta2"),
            Setting("schedule.g.kind", "linear_decay", "train.py: LinearShift alpha to 0 from iteration_decay_start 0"),
            Setting("schedule.d.kind", "linear_decay", "train.py: LinearShift"),
            Setting("train.steps", 50_000, f"{SNGAN_CONFIG}: iteration"),
            Setting("train.batch_size", 64, f"{SNGAN_CONFIG}: batchsize"),
            Setting("train.g_batch_size", 128, f"{SNGAN_CONFIG}: n_gen_samples"),
            Setting("train.d_steps_per_g_step", 5, f"{SNGAN_CONFIG}: n_dis"),
            Setting("train.ema.decay", 0.0, "updater.py: no moving average"),
        ),
        notes=("the reference updates G first in each iteration (with D as initialised at iteration 0); ganforge "
               "updates D first",
               "Chainer's BatchNormalization eps is 2e-5, PyTorch's 1e-5"),
    ),
    "biggan_cifar10": Reported(
        figures={"is": 9.22, "fid": 14.73},
        source="Brock et al. 2019 (class-conditional CIFAR-10), as tabulated in Karras et al. 2020 (ADA), Table 2",
        reference_code="ajbrock/BigGAN-PyTorch scripts/launch_cifar_ema.sh and the defaults of utils.py",
        protocol=Protocol(generator="ema", batchnorm="batch", batch=50, is_samples=50_000, fid_samples=50_000,
                          fid_real=None, split="train",
                          implementation="TF Inception (the paper's figures; BigGAN-PyTorch's own torchvision "
                                         "Inception gives its 'unofficial' ones), FID against all 50,000 training "
                                         "images; G_ema sampled in train mode (no --G_eval_mode) in batches of 50"),
        reference_steps="BigGAN-PyTorch launch_cifar_ema.sh: 500 epochs at batch 50, 4 D steps per G step",
        settings=(
            Setting("data.kind", "cifar10", f"{BIGGAN_SCRIPT}: --dataset C10"),
            Setting("data.split", "train", "BigGAN-PyTorch datasets.py: CIFAR10 train"),
            Setting("data.resolution", 32, f"{BIGGAN_SCRIPT}: C10"),
            Setting("generator.kind", "biggan", "BigGAN-PyTorch BigGAN.py Generator"),
            Setting("generator.ch", 64, f"{BIGGAN_DEFAULTS}: --G_ch 64 (G_arch[32]: 4 x 64 channels in every block)"),
            Setting("generator.dim_z", 128, f"{BIGGAN_DEFAULTS}: --dim_z 128"),
            Setting("generator.conditional", True, "BigGAN.py: class-conditional BN"),
            Setting("generator.shared", False, f"{BIGGAN_DEFAULTS}: no --G_shared (per-class BN embeddings)"),
            Setting("generator.hier", False, f"{BIGGAN_DEFAULTS}: no --hier"),
            Setting("generator.attention", [], f"{BIGGAN_SCRIPT}: --G_attn 0"),
            Setting("generator.init", "N02", f"{BIGGAN_SCRIPT}: --G_init N02"),
            Setting("generator.num_svs", 1, f"{BIGGAN_DEFAULTS}: --num_G_SVs 1"),
            Setting("generator.num_sv_itrs", 1, f"{BIGGAN_DEFAULTS}: --num_G_SV_itrs 1"),
            Setting("generator.sn_eps", 1e-8, f"{BIGGAN_DEFAULTS}: --SN_eps 1e-8"),
            Setting("generator.bn_eps", 1e-5, f"{BIGGAN_DEFAULTS}: --BN_eps 1e-5"),
            Setting("discriminator.kind", "biggan", "BigGAN-PyTorch BigGAN.py Discriminator"),
            Setting("discriminator.ch", 64, f"{BIGGAN_DEFAULTS}: --D_ch 64 (D_arch[32]: 4 x 64 channels)"),
            Setting("discriminator.wide", True, f"{BIGGAN_DEFAULTS}: D_wide (no --D_thin)"),
            Setting("discriminator.conditional", True, "BigGAN.py: projection"),
            Setting("discriminator.attention", [], f"{BIGGAN_SCRIPT}: --D_attn 0"),
            Setting("discriminator.init", "N02", f"{BIGGAN_SCRIPT}: --D_init N02"),
            Setting("discriminator.num_svs", 1, f"{BIGGAN_DEFAULTS}: --num_D_SVs 1"),
            Setting("discriminator.num_sv_itrs", 1, f"{BIGGAN_DEFAULTS}: --num_D_SV_itrs 1"),
            Setting("discriminator.sn_eps", 1e-8, f"{BIGGAN_DEFAULTS}: --SN_eps 1e-8"),
            Setting("loss.kind", "hinge", "BigGAN-PyTorch losses.py: hinge"),
            Setting("regularizers", [], f"{BIGGAN_DEFAULTS}: G_param = D_param = SN, built into the biggan "
                    "networks; --G_ortho 0.0"),
            *_adam("g", 2e-4, (0.0, 0.999), f"{BIGGAN_SCRIPT}: --G_lr; defaults G_B1, G_B2, adam_eps", eps=1e-8),
            *_adam("d", 2e-4, (0.0, 0.999), f"{BIGGAN_SCRIPT}: --D_lr; defaults D_B1, D_B2, adam_eps", eps=1e-8),
            Setting("train.steps", 125_000, f"{BIGGAN_SCRIPT}: --num_epochs 500, 250 G steps an epoch"),
            Setting("train.batch_size", 50, f"{BIGGAN_SCRIPT}: --batch_size 50"),
            Setting("train.d_steps_per_g_step", 4, f"{BIGGAN_SCRIPT}: --num_D_steps 4"),
            Setting("train.ema.decay", 0.9999, f"{BIGGAN_DEFAULTS}: ema_decay"),
            Setting("train.ema.start", 1000, f"{BIGGAN_SCRIPT}: --ema_start 1000"),
            Setting("train.ema.rampup", None, "BigGAN-PyTorch utils.ema: no ramp-up"),
        ),
        notes=("ganforge calls D on reals and fakes separately, so D's spectral-norm vectors take two power "
               "iterations per D update (the reference concatenates the batches: one)",
               "G_ema copies G's buffers (spectral-norm vectors, BatchNorm statistics) where the reference's "
               "utils.ema averages them; with G_ema sampled in train mode the statistics do not enter the figures",
               "`ganforge eval --batch-stats` puts only G_ema's BatchNorm in train mode; the reference's train-mode "
               "G_ema also runs a spectral-norm power iteration on every generated batch (ganforge keeps the "
               "vectors as trained)"),
    ),
    "stylegan2_cifar10": Reported(
        figures={"fid": 2.92, "is": 9.83},
        source="Karras et al. 2020 (ADA), Table 2, unconditional StyleGAN2 + ADA + tuning (the `cifar` config)",
        reference_code="NVlabs/stylegan2-ada-pytorch train.py --cfg=cifar, training_loop.py, loss.py",
        protocol=Protocol(generator="ema", batchnorm="none", batch=64, is_samples=50_000, fid_samples=50_000,
                          fid_real=None, split="train",
                          implementation="stylegan2-ada-pytorch metrics (fid50k_full, is50k: its TF Inception "
                                         "converted to PyTorch), random per-pixel noise"),
        reference_steps="100,000 kimg (about 1.56 M steps at batch 64) in stylegan2-ada-pytorch's cifar config",
        settings=(
            Setting("data.kind", "cifar10", "stylegan2-ada-pytorch dataset_tool.py cifar10.zip"),
            Setting("data.split", "train", "dataset_tool.py: the 50,000 training images"),
            Setting("data.resolution", 32, f"{SG2_CIFAR}"),
            Setting("data.dequantize", False, "training_loop.py: x / 127.5 - 1"),
            Setting("generator.kind", "stylegan2", "training/networks.py Generator"),
            Setting("generator.latent_dim", 512, f"{SG2_CIFAR}: z_dim"),
            Setting("generator.w_dim", 512, f"{SG2_CIFAR}: w_dim"),
            Setting("generator.mapping_layers", 2, f"{SG2_CIFAR}: map=2"),
            Setting("generator.channel_base", 32768, f"{SG2_CIFAR}: fmaps=1, channel_base = fmaps x 32768"),
            Setting("generator.channel_max", 512, f"{SG2_CIFAR}: channel_max 512 (512 at every resolution)"),
            Setting("generator.architecture", "skip", "training/networks.py SynthesisNetwork: architecture='skip'"),
            Setting("generator.conv_clamp", 256, f"{SG2_CIFAR}: conv_clamp = 256"),
            Setting("generator.num_fp16_res", 4, f"{SG2_CIFAR}: num_fp16_res = 4"),
            Setting("generator.style_mixing", 0.0, f"{SG2_CIFAR}: style_mixing_prob = 0"),
            Setting("discriminator.kind", "stylegan2", "training/networks.py Discriminator"),
            Setting("discriminator.channel_base", 32768, f"{SG2_CIFAR}: fmaps=1"),
            Setting("discriminator.channel_max", 512, f"{SG2_CIFAR}: channel_max 512"),
            Setting("discriminator.architecture", "orig", f"{SG2_CIFAR}: D architecture='orig' (no residual skips)"),
            Setting("discriminator.mbstd_group", 32, f"{SG2_CIFAR}: mbstd=32"),
            Setting("discriminator.conv_clamp", 256, f"{SG2_CIFAR}: conv_clamp = 256"),
            Setting("discriminator.num_fp16_res", 4, f"{SG2_CIFAR}: num_fp16_res = 4"),
            Setting("loss.kind", "non_saturating", "training/loss.py: softplus"),
            Setting("regularizers.0.kind", "r1", "training/loss.py: r1_gamma"),
            Setting("regularizers.0.weight", 0.01, f"{SG2_CIFAR}: gamma=0.01"),
            Setting("regularizers.0.every", 16, "training_loop.py: D_reg_interval = 16"),
            Setting("regularizers.1.kind", "ada", "train.py: --aug=ada"),
            Setting("regularizers.1.pipeline", "bgc", "train.py: augpipe bgc"),
            Setting("regularizers.1.target", 0.6, "train.py: ada_target 0.6"),
            Setting("regularizers.1.interval", 4, "training_loop.py: ada_interval = 4"),
            Setting("regularizers.1.speed_images", 500_000, "training_loop.py: ada_kimg = 500"),
            *_adam("d", 0.0025, (0.0, 0.99), f"{SG2_CIFAR}: lrate=0.0025, betas [0, 0.99]", eps=1e-8),
            Setting("optim.g.kind", "adam", f"{SG2_CIFAR}: Adam"),
            Setting("optim.g.lr", 0.002, f"{G_LR_4_5}: 0.0025 x 4/5"),
            Setting("optim.g.betas", [0.0, 0.99**0.8], f"{G_LR_4_5}, betas [0, 0.99] to the power 4/5"),
            Setting("optim.g.eps", 1e-8, f"{SG2_CIFAR}: eps=1e-8"),
            Setting("train.steps", 1_562_500, f"{SG2_CIFAR}: kimg=100000 at batch 64"),
            Setting("train.batch_size", 64, f"{SG2_CIFAR}: mb=64"),
            Setting("train.ema.decay", 0.5 ** (64 / 500_000), f"{SG2_CIFAR}: ema=500 kimg: 0.5 ** (64 / 500,000)"),
            Setting("train.ema.rampup", 0.05, f"{SG2_CIFAR}: ramp=0.05"),
            Setting("train.lazy", "separate", "training_loop.py: Dreg phase every D_reg_interval = 16 with its own "
                    "Adam step; D's lr x 16/17 and betas to the power 16/17 (ganforge rescales D's alone: G has no "
                    "lazy term)"),
        ),
        notes=("the reference runs ref_gpus = 2 processes of 32 images: the minibatch-std group of 32 is each "
               "process's batch; ganforge's one process of 64 takes two groups of 32, the same statistics",
               "num_fp16_res = 4 and conv_clamp = 256: the reference casts the blocks at 8-32 px to fp16 itself; in "
               "ganforge they run in reduced precision only under train.precision: fp16 or bf16 (this recipe keeps "
               "fp32, the default, so that it runs on any device; the clamp applies as there)"),
        metrics=("fid", "is"),
    ),
}


def recipe_name(config: Path) -> str:
    """The RECIPES key of a config file (its stem)."""
    name = config.stem
    if name not in RECIPES:
        raise SystemExit(f"error: no published figure recorded for {config}; known: {', '.join(sorted(RECIPES))}")
    return name


# --------------------------------------------------------------------------------------------
# A recipe's settings against its reference
# --------------------------------------------------------------------------------------------


def flat_keys(raw: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a config mapping (list items by index) with their leaf values."""
    if isinstance(raw, Mapping):
        found: dict[str, Any] = {}
        for key, value in raw.items():
            found.update(flat_keys(value, f"{prefix}{key}."))
        return found
    if isinstance(raw, list) and raw and all(isinstance(v, Mapping) for v in raw):
        found = {}
        for i, value in enumerate(raw):
            found.update(flat_keys(value, f"{prefix}{i}."))
        return found
    return {prefix.rstrip("."): raw}


def settings_problems(name: str, written: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """What in a recipe's config disagrees with its settings table: `written` is the file as
    written (its own keys, `base:` merged), `resolved` the full config."""
    rows = {s.key: s for s in RECIPES[name].settings}
    resolved_keys = flat_keys(resolved)
    problems = [f"{key}: the config names it, the settings table does not (add its reference value)"
                for key in flat_keys(written)
                if key != "base" and key not in rows and not key.startswith(BOOKKEEPING)]
    for key, row in rows.items():
        if key not in resolved_keys:
            problems.append(f"{key}: in the settings table but not in the config")
        elif resolved_keys[key] != row.expected:
            problems.append(f"{key}: the config holds {resolved_keys[key]!r}, the table says {row.expected!r}")
    return problems


def settings_markdown() -> str:
    """docs/recipes.md: every recipe's settings against its reference code, and what still differs."""
    lines = ["# The full-size recipes against their reference code", "",
             "Written by `python scripts/reproduce.py --settings`; `tests/test_recipes.py` checks every",
             "`configs/*_cifar10.yaml` against these tables and this file against the script.", ""]
    for name, rep in RECIPES.items():
        lines += [f"## `configs/{name}.yaml`", "", f"Reference: {rep.reference_code}.", "",
                  "| key | reference | source | ganforge |", "| --- | --- | --- | --- |"]
        for s in rep.settings:
            ours = "same" if s.ours is None else f"**{_show(s.ours)}**: {s.why}"
            lines.append(f"| `{s.key}` | {_show(s.reference)} | {s.source} | {ours} |")
        lines.append("")
        lines += [f"- {note}" for note in rep.notes] + ([""] if rep.notes else [])
        p = rep.protocol
        lines += [f"Evaluation: {describe_protocol(p)}.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


# --------------------------------------------------------------------------------------------
# The protocol, and what ganforge's default evaluation would do differently
# --------------------------------------------------------------------------------------------


def describe_protocol(p: Protocol) -> str:
    """One line: which G, BatchNorm, samples, real images, metric code."""
    which = "raw G" if p.generator == "raw" else "G_ema"
    norm = {"batch": f"its BatchNorm on the statistics of each batch of {p.batch} (train mode)",
            "running": "its BatchNorm on running statistics (eval mode)", "none": "no BatchNorm"}[p.batchnorm]
    parts = [f"{which}, {norm}"]
    if p.is_samples:
        parts.append(f"IS on {p.is_samples:,} samples, 10 splits")
    if p.fid_samples:
        real = f"{p.fid_real:,}" if p.fid_real else "all"
        parts.append(f"FID of {p.fid_samples:,} samples against {real} real images ({p.split} split)")
    return "; ".join(parts + [p.implementation] + ([p.note] if p.note else []))


def default_differences(p: Protocol, metric: str, cfg: Any) -> list[str]:
    """What `ganforge eval RUN --metrics METRIC` with the run's defaults (cfg: its Config) would do
    differently from the protocol for this metric."""
    diffs = []
    ema = cfg.train.ema
    if p.generator == "raw" and ema.decay > 0:
        diffs.append("it scores G_ema, the paper raw G")
    if p.generator == "ema" and ema.decay == 0:
        diffs.append("the recipe keeps no average: G_ema is G")
    standing = ema.decay > 0 and ema.standing_stats > 0  # G_ema's BatchNorm on standing statistics
    if p.batchnorm == "batch":
        diffs.append(f"BatchNorm in eval mode{' on standing statistics' if standing else ''}, the paper's on the "
                     f"statistics of each batch of {p.batch}")
    elif p.batchnorm == "running" and standing:
        diffs.append("G_ema's BatchNorm on its standing statistics, the paper's on G's running ones")
    samples = p.is_samples if metric == "is" else p.fid_samples
    if samples and samples != cfg.eval.num_samples:
        diffs.append(f"{cfg.eval.num_samples:,} samples, not {samples:,}")
    if metric != "is":
        default_real = cfg.eval.real_samples or cfg.eval.num_samples
        if p.fid_real is not None and p.fid_real != default_real:
            diffs.append(f"{default_real:,} real images, not {p.fid_real:,}")
        if p.fid_real is None:
            diffs.append(f"{default_real:,} real images, not all of the split")
    if metric == "is":
        diffs.append(f"metric code: {GANFORGE_METRICS['is']} (eval.protocol pytorch-fid); this script scores IS "
                     f"with --protocol {IS_PROTOCOL}, which reproduces the TensorFlow Inception Score")
    else:
        diffs.append(f"metric code: {GANFORGE_METRICS['fid']}")
    if p.pixels == "truncate":
        diffs.append("pixels rounded to the nearest 8-bit level (as in PNG files), the paper's truncated "
                     "(int((x + 1) x 255.99 / 2): half a level darker on average)")
    return diffs


def eval_commands(p: Protocol, metrics: tuple[str, ...], num: int | None, real: int | None
                  ) -> list[tuple[tuple[str, ...], list[str]]]:
    """(metrics, `ganforge eval` options) per sample count of the protocol; `num`/`real` override
    the protocol's counts (smoke runs)."""
    counts: dict[tuple[int, int | None], list[str]] = {}
    for metric in metrics:
        samples = p.is_samples if metric == "is" else p.fid_samples
        assert samples is not None, f"the protocol reports no {metric}"
        fid_real = None if metric == "is" else (real or p.fid_real)
        counts.setdefault((num or samples, fid_real), []).append(metric)
    commands = []
    for (n, fid_real), names in counts.items():
        options = ["--metrics", ",".join(names), "--num", str(n), "--batch-size", str(p.batch)]
        if fid_real is not None:
            options += ["--real-num", str(fid_real)]
        if p.generator == "raw":
            options.append("--no-ema")
        if p.batchnorm == "batch":
            options.append("--batch-stats")
        if "is" in names:
            options += ["--protocol", IS_PROTOCOL]
        commands.append((tuple(names), options))
    return commands


# --------------------------------------------------------------------------------------------
# Train, evaluate, compare
# --------------------------------------------------------------------------------------------


def run(cmd: list[str], dry: bool) -> subprocess.CompletedProcess | None:
    """Run a ganforge command as a user would (or print it)."""
    print("$ " + " ".join(cmd), flush=True)
    if dry:
        return None
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"error: command failed with exit code {result.returncode}")
    return result


def reproduce(config: Path, out: Path, steps: int | None, num_samples: int | None, real_samples: int | None,
              inception_weights: str | None, overrides: list[str], dry: bool) -> dict:
    """Train and evaluate one recipe under its paper's protocol; returns measured and reported figures."""
    from ganforge.config import load_config

    name = recipe_name(config)
    reported = RECIPES[name]
    sets = [*overrides] + ([f"train.steps={steps}"] if steps is not None else [])
    cfg, _ = load_config(config, sets)
    run_dir = out / name
    ganforge = [sys.executable, "-m", "ganforge"]
    train = [*ganforge, "train", str(config), "--set", f"output.dir={run_dir}", "--overwrite", "-q"]
    for item in sets:
        train += ["--set", item]
    run(train, dry)
    measured: dict[str, float | None] = {m: None for m in reported.metrics}
    counts: dict[str, int] = {}
    for names, options in eval_commands(reported.protocol, reported.metrics, num_samples, real_samples):
        evaluate = [*ganforge, "eval", str(run_dir), *options, "--json", "-q",
                    "--out", str(out / f"{name}-eval-{'-'.join(names)}.json")]
        if inception_weights is not None:
            evaluate += ["--inception-weights", inception_weights]
        result = run(evaluate, dry)
        figures = json.loads(result.stdout)["metrics"] if result is not None else {}
        for metric in names:
            measured[metric] = figures.get(metric)
            counts[metric] = int(options[options.index("--num") + 1])
    differences = {m: default_differences(reported.protocol, m, cfg) for m in reported.metrics}
    report = {"recipe": name, "config": str(config), "measured": measured, "generated_samples": counts,
              "steps": steps, "protocol": describe_protocol(reported.protocol),
              "default_eval_differs": differences, "reported": asdict(reported)}
    if not dry:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report


def print_comparison(report: dict) -> None:
    """measured vs reported, one line per figure, with what ganforge's default evaluation would change."""
    reported = report["reported"]
    print(f"{report['recipe']}: {reported['source']}")
    print(f"  protocol: {report['protocol']}")
    for metric in reported["metrics"]:
        mine = report["measured"].get(metric)
        theirs = reported["figures"].get(metric)
        mine_text = "not yet run" if mine is None else f"{mine:.4g}"
        theirs_text = "-" if theirs is None else f"{theirs:g}"
        here = report["generated_samples"].get(metric)
        print(f"  {metric:<4} measured {mine_text:>12}   reported {theirs_text}"
              + (f"   ({here:,} samples here)" if here else ""))
        print(f"       ganforge eval's defaults would differ: {'; '.join(report['default_eval_differs'][metric])}")


def markdown_table(results: Path | None = None) -> str:
    """The README's recipe table: reported figures, and the measured ones of each recipe whose
    full-length run left `results/<recipe>.json` (a run shortened with --steps is no reproduction)."""
    lines = ["| recipe | reported | source | protocol | measured |", "| --- | --- | --- | --- | --- |"]
    for name, rep in RECIPES.items():
        figures = ", ".join(f"{k.upper()} {v:g}" for k, v in rep.figures.items())
        lines.append(f"| `configs/{name}.yaml` | {figures} | {rep.source} | {describe_protocol(rep.protocol)} "
                     f"| {measured_cell(results / f'{name}.json' if results is not None else None)} |")
    return "\n".join(lines)


def measured_cell(path: Path | None) -> str:
    """A recipe's measured figures as the table shows them, from its result file if it has one."""
    if path is None or not path.is_file():
        return "not yet run"
    report = json.loads(path.read_text())
    if report.get("steps") is not None:
        return f"not yet run (only a {report['steps']}-step smoke run)"
    figures = [f"{metric.upper()} {value:.4g} ({report['generated_samples'][metric]:,} samples)"
               for metric, value in report["measured"].items() if value is not None]
    return ", ".join(figures) or "not yet run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, nargs="?", help="a configs/*_cifar10.yaml recipe")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproduce", help="run folders and results")
    parser.add_argument("--steps", type=int, help="override train.steps (smoke runs)")
    parser.add_argument("--num-samples", type=int, help="generated samples of every figure (default: the protocol's)")
    parser.add_argument("--real-samples", type=int, help="real samples of the FID statistics (default: the protocol's)")
    parser.add_argument("--inception-weights", help="the FID Inception weights file (pt_inception-2015-12-05)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="more config overrides, e.g. data.root=/datasets (repeatable)")
    parser.add_argument("--print-only", action="store_true", help="print the commands and the reported figures")
    parser.add_argument("--table", action="store_true", help="print the README's recipe table, with the "
                                                             "figures of the runs under --out, and exit")
    parser.add_argument("--settings", action="store_true", help="print docs/recipes.md (settings against the "
                                                                "reference code) and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(args.out))
        return
    if args.settings:
        print(settings_markdown(), end="")
        return
    if args.config is None:
        parser.error("give a recipe config, or --table, or --settings")
    report = reproduce(args.config, args.out, args.steps, args.num_samples, args.real_samples,
                       args.inception_weights, args.overrides, args.print_only)
    print_comparison(report)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
