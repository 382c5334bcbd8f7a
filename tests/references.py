"""The reference value of every default of every registered method component, and where ganforge
deviates from it today (tests/test_defaults.py checks the code against this table).

Sources: ../shared/REFERENCES.md (facts read from the reference code) and the README's "What each
component follows" table. Three kinds of entry:

- `Ref(value, source)`: the reference's value; ganforge's default must equal it.
- `Deviation(ours, reference, source, readme)`: ganforge's default differs from the reference's
  today (`ABSENT`: ganforge has no such parameter). `readme` is the text of the README row that
  states the difference: the test finds it there. Whoever aligns a component with its reference
  turns its Deviation into a Ref (and updates the README row).
- `Own(value, why)`: no reference value exists (a ganforge option, a schedule's shape); the
  default is pinned here so that changing it is a decision, not an accident.

Scope: the registries of methods (regularizers, losses, optimizers, schedules, metrics, feature
extractors) and `train.ema`. The networks' sizes are checked against their reference code by
tests/test_faithful_models.py; the data sets' parameters are not methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ABSENT = "(no such parameter)"


@dataclass(frozen=True)
class Ref:
    value: Any
    source: str


@dataclass(frozen=True)
class Deviation:
    ours: Any
    reference: Any
    source: str
    readme: str


@dataclass(frozen=True)
class Own:
    value: Any
    why: str


SG2ADA = "NVlabs/stylegan2-ada-pytorch"
STUDIOGAN = "PyTorch-StudioGAN"
PYTORCH = "PyTorch's default (the reference code uses it unchanged)"

# (registry section, component name) -> {parameter: entry}
DEFAULTS: dict[tuple[str, str], dict[str, Ref | Deviation | Own]] = {
    # -- regularizers ---------------------------------------------------------------------
    ("regularizer", "ac_gan"): {
        "weight": Ref(1.0, f"{STUDIOGAN} cls_lambda 1"),
        "fake_weight": Ref(0.0, f"{STUDIOGAN} src/worker.py: D's classifier term (cond_lambda) on reals only"),
    },
    ("regularizer", "ada"): {
        "target": Ref(0.6, f"{SG2ADA} training_loop.py ada_target"),
        "interval": Ref(4, f"{SG2ADA} training_loop.py ada_interval"),
        "speed_images": Ref(500_000, f"{SG2ADA} training_loop.py ada_kimg 500"),
        "pipeline": Ref("bgc", f"{SG2ADA} train.py --augpipe bgc"),
        "initial_p": Ref(0.0, f"{SG2ADA} training_loop.py augment_p 0"),
        "policy": Own(("xflip", "translation", "color", "cutout"),
                      "used only by `pipeline: diffaugment`, ganforge's own variant"),
    },
    ("regularizer", "consistency"): {
        "weight": Ref(10.0, f"{STUDIOGAN} bCR lambda_real 10"),
        "fake_weight": Ref(10.0, f"{STUDIOGAN} bCR lambda_fake 10"),
        "every": Ref(1, "bCR is applied at every D update"),
    },
    ("regularizer", "diffaugment"): {
        "policy": Ref(("color", "translation", "cutout"), "mit-han-lab/data-efficient-gans: the CIFAR policy"),
    },
    ("regularizer", "dragan"): {
        "weight": Ref(10.0, f"{STUDIOGAN} dra_lambda 10"),
        "every": Ref(1, "every D update"),
        "noise": Ref(0.5, f"{STUDIOGAN} cal_dra_penalty: 0.5 * std(x)"),
    },
    ("regularizer", "gradient_penalty"): {
        "weight": Ref(10.0, "igul222/improved_wgan_training LAMBDA 10"),
        "every": Ref(1, "every critic update"),
        "target": Ref(1.0, "(||grad|| - 1)^2"),
    },
    ("regularizer", "instance_noise"): {
        "std": Own(0.1, "Sonderby et al. 2016 give no default noise level"),
        "anneal_steps": Own(10_000, "Sonderby et al. 2016 give no default schedule"),
    },
    ("regularizer", "label_smoothing"): {
        "real_target": Ref(0.9, "Salimans et al. 2016: one-sided smoothing to 0.9"),
    },
    ("regularizer", "lecam"): {
        "weight": Ref(0.3, "google/lecam-gan lambda 0.3 (StudioGAN lecam_lambda 0.3)"),
        "decay": Ref(0.9, "google/lecam-gan biggan_cifar launch settings, ema_losses decay 0.9 (StudioGAN: 0.99)"),
        "start": Ref(1000, "google/lecam-gan and StudioGAN: no term for the first 1,000 iterations "
                           "(lecam_ema_start_iter 1000)"),
    },
    ("regularizer", "orthogonal"): {
        "weight": Ref(1e-4, "Brock et al. 2019 beta 1e-4 (BigGAN-PyTorch utils.py: '1e-4 is default for BigGAN')"),
        "every": Ref(1, "every G update"),
    },
    ("regularizer", "path_length"): {
        "weight": Ref(2.0, f"{SG2ADA} loss.py pl_weight 2"),
        "every": Ref(4, f"{SG2ADA} G_reg_interval 4"),
        "decay": Ref(0.01, f"{SG2ADA} pl_decay 0.01"),
        "batch_shrink": Ref(2, f"{SG2ADA} pl_batch_shrink 2"),
    },
    ("regularizer", "r1"): {
        "weight": Ref(10.0, "StyleGAN2 paper gamma 10 (FFHQ); Mescheder et al. 2018 gamma 10"),
        "every": Ref(16, f"{SG2ADA} D_reg_interval 16"),
    },
    ("regularizer", "r2"): {
        "weight": Ref(10.0, "Mescheder et al. 2018 gamma 10"),
        "every": Ref(16, f"as R1 ({SG2ADA} D_reg_interval 16)"),
    },
    ("regularizer", "spectral_norm"): {
        "discriminator": Ref(True, "SNGAN normalises D"),
        "generator": Ref(False, "SNGAN leaves G alone (BigGAN's G_SN is a recipe setting)"),
    },
    ("regularizer", "top_k"): {
        "keep": Ref(0.5, "Sinha et al. 2020 nu 0.5"),
        "decay": Ref(0.99, "Sinha et al. 2020 gamma 0.99"),
        "interval": Ref(None, "k decays per epoch (Sinha et al. 2020; StudioGAN src/worker.py)"),
    },
    ("regularizer", "weight_clipping"): {
        "clip": Ref(0.01, "Arjovsky et al. 2017 c = 0.01"),
    },
    # -- losses: no parameters ----------------------------------------------------------------
    ("loss", "hinge"): {}, ("loss", "least_squares"): {}, ("loss", "minimax"): {},
    ("loss", "non_saturating"): {}, ("loss", "relativistic_average"): {}, ("loss", "wasserstein"): {},
    # -- optimizers ---------------------------------------------------------------------------
    ("optimizer", "adam"): {
        "lr": Ref(2e-4, "DCGAN (Radford et al. 2016; pytorch/examples dcgan)"),
        "betas": Ref((0.5, 0.999), "DCGAN (Radford et al. 2016; pytorch/examples dcgan)"),
        "weight_decay": Ref(0.0, PYTORCH),
        "eps": Ref(1e-8, PYTORCH),
        "implementation": Own("auto", "fused/foreach kernels where available"),
    },
    ("optimizer", "adamw"): {
        "lr": Own(2e-4, "as adam"),
        "betas": Own((0.5, 0.999), "as adam"),
        "weight_decay": Ref(0.01, PYTORCH),
        "eps": Ref(1e-8, PYTORCH),
        "implementation": Own("auto", "fused/foreach kernels where available"),
    },
    ("optimizer", "rmsprop"): {
        "lr": Ref(5e-5, "Arjovsky et al. 2017 alpha = 0.00005"),
        "alpha": Ref(0.99, PYTORCH),
        "momentum": Ref(0.0, PYTORCH),
        "weight_decay": Ref(0.0, PYTORCH),
        "eps": Ref(1e-8, PYTORCH),
        "implementation": Own("auto", "fused/foreach kernels where available"),
    },
    # -- schedules: shapes of ganforge's own --------------------------------------------------
    ("schedule", "constant"): {"warmup_steps": Own(0, "no warm-up")},
    ("schedule", "cosine"): {"warmup_steps": Own(0, "no warm-up"), "final": Own(0.0, "decays to 0")},
    ("schedule", "exponential"): {"warmup_steps": Own(0, "no warm-up"), "final": Own(0.1, "a tenth at the end")},
    ("schedule", "linear_decay"): {"warmup_steps": Own(0, "no warm-up"), "start": Own(0.0, "from the start"),
                                   "final": Own(0.0, "to 0, as SNGAN/BigGAN recipes")},
    ("schedule", "step"): {"warmup_steps": Own(0, "no warm-up"), "every": Own(10_000, "ganforge's choice"),
                           "gamma": Own(0.5, "halving")},
    # -- feature extractors ---------------------------------------------------------------------
    ("extractor", "inception"): {
        "weights": Own(None, "the torch hub cache"),
        "download": Own(True, "once, when online"),
    },
    # -- metrics: the arguments each passes to the functions that compute it --------------------
    ("metric", "dc"): {"k": Ref(5, "Naeem et al. 2020 k = 5")},
    ("metric", "fid"): {},
    ("metric", "ifid"): {},
    ("metric", "fd_dinov2"): {},
    ("metric", "is"): {
        "splits": Ref(10, "Salimans et al. 2016; OpenAI's code: 10 splits"),
        "shuffle_seed": Own(None, "pytorch-fid's protocol splits in generation order; eval.protocol "
                                  "torch-fidelity shuffles with RandomState(2020) as torch-fidelity"),
    },
    ("metric", "kid"): {
        "subsets": Ref(100, "Binkowski et al. 2018; torch-fidelity kid_subsets 100"),
        "subset_size": Ref(1000, "torch-fidelity kid_subset_size 1000"),
        "seed": Own(0, "the subsets repeat from run to run"),
    },
    ("metric", "modes"): {
        "min_count": Own((1, None), "`modes`: one sample within 3 std covers a mode (VEEGAN, PacGAN); "
                                    "`modes_strict`: a fifth of the uniform count"),
    },
    ("metric", "knn"): {},
    ("metric", "ppl"): {
        "seed": Own(0, "eval.seed: the latents, t, labels and noise repeat from run to run"),
        "batch_size": Own(64, "eval's batch size"),
        "variants": Own(None, "ppl_wend where G has a w space (stylegan2), ppl_zfull always"),
    },
    ("metric", "pr"): {
        "k": Ref(3, "Kynkaanniemi et al. 2019 k = 3"),
        "strict": Ref(False, "kynkaat/improved-precision-and-recall-metric: a point on a ball's surface is inside"),
    },
    ("metric", "prdc_dinov2"): {
        "k": Ref(5, "clovaai/generative-evaluation-prdc nearest_k 5, as layer6ai-labs/dgm-eval"),
        "strict": Ref(True, "clovaai/generative-evaluation-prdc: distance < radius"),
    },
}

# train.ema (not a registered component, but a method with a reference: StyleGAN2-ADA's G_ema).
EMA_DEFAULTS: dict[str, Ref | Deviation | Own] = {
    "decay": Deviation(0.999, "ema_kimg 10", f"{SG2ADA} train.py (the stylegan2 config)",
                       readme="the half-life is given as a per-step `decay` (not `ema_kimg`)"),
    "start": Ref(0, f"{SG2ADA}: averaging from the first step"),
    "rampup": Ref(0.05, f"{SG2ADA} train.py: ramp 0.05 in the auto and cifar configs"),
    "standing_stats": Ref(16, "ajbrock/BigGAN-PyTorch num_standing_accumulations 16"),
}

# The README row that states each entry's deviations (its first cell names the component).
README_ROW = {"train.ema": "EMA of G"}
