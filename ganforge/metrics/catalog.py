"""The metrics: each turns the features of generated and real samples into named figures.

Also what configs are checked against: which data each metric suits, the figures it reports
(`eval.best` names one), the fewest samples it is defined on, and which way is better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from ganforge.accepts import Accepts
from ganforge.data import DataSource
from ganforge.errors import ConfigError, GanforgeError
from ganforge.metrics import knn as knn_search
from ganforge.metrics import scores
from ganforge.metrics.features import Features
from ganforge.metrics.modes import mode_coverage
from ganforge.registry import METRICS

Resize = Literal["legacy", "clean"]
Protocol = Literal["pytorch-fid", "torch-fidelity"]
TORCH_FIDELITY_SEED = 2020  # torch-fidelity's default rng_seed: its IS shuffle and its KID subsets


@dataclass(frozen=True)
class EvalOptions:
    """How images become features and how IS and KID are computed; every result names these."""

    resize: Resize = "legacy"  # the Inception's input: pytorch-fid's resize, or clean-fid's
    protocol: Protocol = "pytorch-fid"  # IS and KID: resized and computed as pytorch-fid or torch-fidelity
    kid_subset_size: int = 1000

# --------------------------------------------------------------------------------------------
# Metrics: each takes the features of both sides and returns named figures
# --------------------------------------------------------------------------------------------


@dataclass
class MetricInputs:
    """What a metric is given: the features of both sides (in the metric's feature view), the data
    source (2D mixtures), the options, and for ppl the generator and LPIPS. A metric may add notes
    on how it computed (`notes`), which go into the result."""

    fake: Features
    real: Features | None
    source: DataSource | None  # None: features of image folders
    options: EvalOptions = field(default_factory=EvalOptions)
    G: nn.Module | None = None
    lpips: nn.Module | None = None
    seed: int = 0
    batch_size: int = 64
    num_samples: int = 0  # ppl: paths per figure
    notes: dict[str, Any] = field(default_factory=dict)


def _need_real(inputs: MetricInputs) -> Features:
    assert inputs.real is not None
    return inputs.real


@METRICS.register("fid")
def fid(inputs: MetricInputs) -> dict[str, float]:
    """Frechet Inception Distance (Heusel et al. 2017), pytorch-fid's definition; lower is better."""
    return {"fid": scores.frechet_distance_of(inputs.fake.values, _need_real(inputs).values)}


@METRICS.register("kid")
def kid(inputs: MetricInputs) -> dict[str, float]:
    """Kernel Inception Distance: unbiased MMD^2, cubic kernel, 100 subsets of 1,000; lower is better.

    torch-fidelity's protocol refuses fewer images than the subset size (checked before anything
    is generated). ganforge's default draws subsets of the largest size that fits and notes it in
    the result; when that is every image on both sides, there is one subset and no kid_std."""
    fake, real = inputs.fake.values, _need_real(inputs).values
    options = inputs.options
    if options.protocol == "torch-fidelity":
        size, seed = options.kid_subset_size, TORCH_FIDELITY_SEED
    else:
        size, seed = min(options.kid_subset_size, len(fake), len(real)), 0
    varies = size < len(fake) or size < len(real)
    try:
        mean, std = scores.kernel_inception_distance(fake, real, subsets=100 if varies else 1, subset_size=size,
                                                     seed=seed)
    except ValueError as e:
        raise GanforgeError(f"kid: {e}; lower --kid-subset-size (eval.kid_subset_size) or give more images") from None
    inputs.notes["kid_subset_size"] = size
    if size < options.kid_subset_size:
        inputs.notes["kid"] = (f"subsets of {size} images, the most that fit (fewer than eval.kid_subset_size "
                               f"{options.kid_subset_size})" + ("" if varies else "; one subset: no kid_std"))
    return {"kid": mean, "kid_std": std} if varies else {"kid": mean}


@METRICS.register("is")
def inception_score(inputs: MetricInputs) -> dict[str, float]:
    """Inception Score over 10 splits (Salimans et al. 2016); higher is better."""
    if inputs.fake.logits is None:
        raise GanforgeError("the Inception Score needs an extractor with class logits (inception)")
    shuffle = TORCH_FIDELITY_SEED if inputs.options.protocol == "torch-fidelity" else None
    try:
        mean, std = scores.inception_score(inputs.fake.logits, shuffle_seed=shuffle)
    except ValueError as e:
        raise GanforgeError(f"eval: {e}") from None
    return {"is": mean, "is_std": std}


@METRICS.register("pr")
def precision_recall(inputs: MetricInputs) -> dict[str, float]:
    """Improved precision and recall, k = 3 (Kynkaanniemi et al. 2019); higher is better."""
    precision, recall = scores.precision_recall(inputs.fake.values, _need_real(inputs).values, k=3)
    return {"precision": precision, "recall": recall}


@METRICS.register("dc")
def density_coverage(inputs: MetricInputs) -> dict[str, float]:
    """Density and coverage, k = 5 (Naeem et al. 2020); higher is better."""
    density, coverage = scores.density_coverage(inputs.fake.values, _need_real(inputs).values, k=5)
    return {"density": density, "coverage": coverage}


@METRICS.register("ifid", accepts=Accepts(vectors=False, needs_labels=True))
def intra_class_fid(inputs: MetricInputs) -> dict[str, float]:
    """Intra-class FID (StudioGAN): the mean over classes of the per-class FID (ifid/k); lower is better."""
    real = _need_real(inputs)
    if inputs.fake.labels is None or real.labels is None:
        raise ConfigError("ifid needs class labels on both sides: a conditional generator and labelled data")
    try:
        mean, per_class = scores.intra_class_fid(inputs.fake.values, inputs.fake.labels, real.values, real.labels)
    except ValueError as e:
        raise GanforgeError(f"ifid: {e}") from None
    return {"ifid": mean, **{f"ifid/{k}": v for k, v in per_class.items()}}


@METRICS.register("modes")
def modes(inputs: MetricInputs) -> dict[str, float]:
    """2D mixtures: modes captured, % high-quality samples (within 3 std), reverse KL (VEEGAN/PacGAN)."""
    centres, std = getattr(inputs.source, "centres", None), getattr(inputs.source, "std", None)
    if centres is None or std is None:
        raise GanforgeError("the modes metric needs a 2D Gaussian mixture (gaussian_grid, gaussian_ring)")
    any_sample = mode_coverage(inputs.fake.values, centres, std, min_count=1)
    fifth = mode_coverage(inputs.fake.values, centres, std)
    return {"modes": any_sample["modes"], "modes_strict": fifth["modes"],
            "high_quality_pct": any_sample["high_quality_pct"], "reverse_kl": any_sample["reverse_kl"]}


@METRICS.register("knn")
def memorisation(inputs: MetricInputs) -> dict[str, float]:
    """Memorisation: nearest real training images in Inception space; knn_memorised_pct is the share
    of samples nearer to one than the 5th percentile of held-out real images' distances (lower is better)."""
    try:
        return knn_search.knn_figures(inputs.fake.values, _need_real(inputs).values)
    except ValueError as e:
        raise GanforgeError(f"knn: {e}") from None


@METRICS.register("fd_dinov2")
def fd_dinov2(inputs: MetricInputs) -> dict[str, float]:
    """Frechet distance on DINOv2 ViT-L/14 CLS features (Stein et al. 2023); lower is better."""
    return {"fd_dinov2": scores.frechet_distance_of(inputs.fake.values, _need_real(inputs).values)}


@METRICS.register("prdc_dinov2")
def prdc_dinov2(inputs: MetricInputs) -> dict[str, float]:
    """Precision, recall, density, coverage on DINOv2 features, k = 5 (clovaai's prdc, as dgm-eval);
    higher is better."""
    fake, real = inputs.fake.values, _need_real(inputs).values
    precision, recall = scores.precision_recall(fake, real, k=5, strict=True)
    density, coverage = scores.density_coverage(fake, real, k=5)
    return {"precision_dinov2": precision, "recall_dinov2": recall, "density_dinov2": density,
            "coverage_dinov2": coverage}


# The reference's crop keeps half the side, and LPIPS's VGG halves it 4 times: 32 px at least.
@METRICS.register("ppl", accepts=Accepts(vectors=False, min_resolution=32))
def perceptual_path_length(inputs: MetricInputs) -> dict[str, float]:
    """Perceptual path length (StyleGAN2-ADA): ppl_wend (stylegan2) and ppl_zfull; lower is better."""
    from ganforge.metrics.ppl import perceptual_path_length as ppl

    if inputs.G is None or inputs.lpips is None:
        raise GanforgeError("ppl measures a generator: ganforge eval RUN --metrics ppl (not a folder of images)")
    return ppl(inputs.G, inputs.lpips, inputs.num_samples, inputs.seed, inputs.batch_size)


# --------------------------------------------------------------------------------------------
# What configs are checked against
# --------------------------------------------------------------------------------------------


IMAGE_METRICS = {"fid", "kid", "is", "pr", "dc", "ifid", "knn", "fd_dinov2", "prdc_dinov2", "ppl"}
VECTOR_METRICS = {"modes"}
# Metrics that compare generated and real images class by class: a conditional generator only.
CONDITIONAL_METRICS = {"ifid"}
# Metrics that need the generator itself (not a folder of its images), and those that need the
# run's training images (to show them).
GENERATOR_METRICS = {"ppl", "knn"}
# Figures `eval.best` may name (ifid also reports ifid/0, ifid/1, ... per class).
FIGURES = {"fid": ["fid"], "kid": ["kid", "kid_std"], "is": ["is", "is_std"], "pr": ["precision", "recall"],
           "dc": ["density", "coverage"], "modes": ["modes", "modes_strict", "high_quality_pct", "reverse_kl"],
           "ifid": ["ifid"], "knn": ["knn_min_dist", "knn_memorised_pct", "knn_threshold"],
           "fd_dinov2": ["fd_dinov2"],
           "prdc_dinov2": ["precision_dinov2", "recall_dinov2", "density_dinov2", "coverage_dinov2"],
           "ppl": ["ppl_wend", "ppl_zfull"]}
# The fewest samples each metric is defined on: (generated, real); 0 where it reads no real ones.
# A covariance needs 2 points (fid, fd_dinov2, ifid per class); a k-th neighbour k + 1 (pr: k = 3,
# dc and prdc_dinov2: k = 5); IS splits into 10 parts; KID's subsets need 2, and under
# torch-fidelity's protocol its subset size (`minimums`); knn holds out 20 real images to set its
# threshold and searches at least 5 others; ppl's percentile filter needs 2 paths.
MINIMUMS: dict[str, tuple[int, int]] = {
    "fid": (2, 2), "kid": (2, 2), "is": (10, 0), "pr": (4, 4), "dc": (6, 6), "modes": (1, 0), "ifid": (2, 2),
    "knn": (1, knn_search.MIN_REAL), "fd_dinov2": (2, 2), "prdc_dinov2": (6, 6), "ppl": (2, 0),
}
MIN_SAMPLES = {name: generated for name, (generated, _) in MINIMUMS.items()}
# Which way is better for each reported figure (the rest: higher is better).
# Per-class figures (`ifid/3`) go the way of their metric.
LOWER_IS_BETTER = {"fid", "kid", "kid_std", "is_std", "reverse_kl", "ifid", "knn_memorised_pct", "fd_dinov2",
                   "ppl_wend", "ppl_zfull"}


def minimums(name: str, options: EvalOptions | None = None) -> tuple[int, int]:
    """The fewest (generated, real) samples metric `name` is defined on under these options."""
    generated, real = MINIMUMS[name]
    if name == "kid" and options is not None and options.protocol == "torch-fidelity":
        return options.kid_subset_size, options.kid_subset_size
    return generated, real


def feature_view(name: str, options: EvalOptions) -> str | None:
    """Which features a metric compares: `main` (eval.extractor, resized per eval.resize),
    `torch-fidelity` (IS and KID under that protocol), `dinov2`, or None (ppl: the generator)."""
    if name == "ppl":
        return None
    if name in ("fd_dinov2", "prdc_dinov2"):
        return "dinov2"
    if name in ("is", "kid") and options.protocol == "torch-fidelity":
        return "torch-fidelity"
    return "main"


# knn searches every training image (a copy of one left out of the reference would go unseen):
# its real features are the main view's over the whole data set, cached under their own key.
WHOLE_DATA = ":all"


def real_view(name: str, options: EvalOptions) -> str | None:
    """The real features a metric compares with: its feature view's, over the whole data set for knn."""
    view = feature_view(name, options)
    return view + WHOLE_DATA if name == "knn" and view is not None else view


def views_of(metrics: list[str], options: EvalOptions, real: bool = False) -> dict[str, str]:
    """The feature views these metrics need (with `real`: the real features they compare with,
    see `real_view`), each with the first metric that needs it (for error messages)."""
    out: dict[str, str] = {}
    for name in metrics:
        view = real_view(name, options) if real else feature_view(name, options)
        if view is not None and (not real or minimums(name, options)[1] > 0):
            out.setdefault(view, name)
    return out


def check_counts(metrics: list[str], options: EvalOptions, generated: int | None = None,
                 generated_where: str = "--num", real: int | None = None, real_where: str = "--real-num") -> None:
    """Refuse, in one line naming the input, its count and the minimum, a metric given fewer
    generated or real samples than it is defined on (the `MINIMUMS` table)."""
    for name in metrics:
        need_generated, need_real = minimums(name, options)
        if generated is not None and generated < need_generated:
            raise ConfigError(f"{generated_where}: {name} needs at least {need_generated} generated images, "
                              f"got {generated}")
        if real is not None and need_real and real < need_real:
            raise ConfigError(f"{real_where}: {name} needs at least {need_real} real images, got {real}")


def is_better(figure: str, new: float, old: float | None) -> bool:
    """Whether `new` improves on `old` for this figure."""
    if old is None:
        return True
    return new < old if figure.split("/")[0] in LOWER_IS_BETTER else new > old


def default_metrics(metrics: tuple[str, ...] | list[str], is_image: bool) -> list[str]:
    """The metrics to compute: as configured, or FID for images and mode figures for 2D data."""
    return list(metrics) or (["fid"] if is_image else ["modes"])


def check_metrics(metrics: tuple[str, ...] | list[str], is_image: bool, best: str | None = None,
                  where: str = "eval.metrics", num_samples: int | None = None,
                  num_where: str = "eval.num_samples", conditional: bool | None = None) -> None:
    """Config-time checks: known names, suited to the data, enough samples, `best` among their
    figures, and (when `conditional` is given) a conditional generator for per-class metrics."""
    metrics = default_metrics(metrics, is_image)
    for name in metrics:
        METRICS.get(name, where)
        if conditional is False and name in CONDITIONAL_METRICS:
            raise ConfigError(f"{where}: {name} compares generated and real images class by class and needs a "
                              "conditional generator (generator.conditional: true); use fid for this one")
        if is_image and name in VECTOR_METRICS:
            raise ConfigError(f"{where}: {name} is for 2D mixtures; for images use {', '.join(sorted(IMAGE_METRICS))}")
        if not is_image and name in IMAGE_METRICS:
            raise ConfigError(f"{where}: {name} needs images; for 2D data use modes")
        if num_samples is not None and num_samples < MIN_SAMPLES[name]:
            raise ConfigError(f"{num_where}: {name} needs at least {MIN_SAMPLES[name]} samples, got {num_samples}")
    if best is not None:
        figures = [f for name in metrics for f in FIGURES[name]]
        if best not in figures:
            raise ConfigError(f"eval.best: {best!r} is not a figure of eval.metrics; choose from {', '.join(figures)}")
