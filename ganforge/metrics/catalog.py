"""The metrics: each turns the features of generated and real samples into named figures.

Each metric declares, where it registers, what configs are checked against and what the
evaluation reads (see `Declared`): the data it suits (`accepts`), the figures it reports
(`eval.best` names one) and which way each is better, the fewest samples it is defined on, and
the features it compares. Nothing here is keyed by a metric's name: a metric in a module of its
own is checked and evaluated as these are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

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
# What a metric declares when it registers
# --------------------------------------------------------------------------------------------

Better = Literal["lower", "higher"]
# The features a metric compares: eval.extractor's (`main`, resized per eval.resize) or DINOv2's.
View = Literal["main", "dinov2"]
# What a metric needs beyond features: the generator itself (not a folder of its images), LPIPS.
Need = Literal["generator", "lpips"]
Minimums = tuple[int, int] | Callable[[EvalOptions], tuple[int, int]]


@dataclass(frozen=True)
class Declared:
    """What a metric declares in `@METRICS.register(name, ...)`, next to its code. The first three
    are required (the registry refuses a metric without them); data kind and class labels are its
    `accepts` (`Accepts(vectors=False)`: images only; `needs_labels=True`: class by class)."""

    # The figures it reports, in report order, and which way each is better. Per-class figures
    # (`ifid/3`) go the way of their metric's.
    figures: Mapping[str, Better]
    # The fewest (generated, real) samples it is defined on (0 real: it reads no real samples),
    # or a function of the eval options that gives them.
    minimums: Minimums
    # The features it compares; None: it measures the generator, not features of samples.
    view: View | None
    # Its main features follow eval.protocol: resized as torch-fidelity does under that protocol.
    follows_protocol: bool = False
    needs: tuple[Need, ...] = ()
    # Its real side is every image of the data set (not eval.real_samples of them), cached under
    # its own key; it also shows the nearest of them beside each sample (a sheet).
    whole_data: bool = False

    def __post_init__(self) -> None:
        figures = dict(self.figures) if isinstance(self.figures, Mapping) else {}
        if not figures or any(not isinstance(f, str) or "/" in f or b not in get_args(Better)
                              for f, b in figures.items()):
            raise TypeError(f"figures must map each figure's name (no '/') to 'lower' or 'higher', "
                            f"got {self.figures!r}")
        if not callable(self.minimums) and not (
                isinstance(self.minimums, tuple) and len(self.minimums) == 2
                and all(isinstance(n, int) and n >= 0 for n in self.minimums)):
            raise TypeError(f"minimums must be (generated, real) counts or a function of the eval options, "
                            f"got {self.minimums!r}")
        if self.view is not None and self.view not in get_args(View):
            raise TypeError(f"view must be one of {get_args(View)} or None, got {self.view!r}")
        if not isinstance(self.needs, tuple) or any(n not in get_args(Need) for n in self.needs):
            raise TypeError(f"needs must be a tuple of {get_args(Need)}, got {self.needs!r}")


def declared(name: str) -> Declared:
    """What metric `name` declares; a TypeError naming it when a declaration is missing or malformed."""
    properties = METRICS.get(name).properties
    allowed = [f.name for f in fields(Declared)]
    unknown = sorted(set(properties) - set(allowed))
    if unknown:
        raise TypeError(f"metric {name!r} declares {', '.join(unknown)}, which metrics do not have; "
                        f"they declare {', '.join(allowed)}")
    try:
        return Declared(**properties)
    except TypeError as e:
        raise TypeError(f"metric {name!r}: {e}") from None


# Image metrics: 2D points have no features to compare.
IMAGES = Accepts(vectors=False)

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


# A covariance needs 2 points on each side.
@METRICS.register("fid", accepts=IMAGES, figures={"fid": "lower"}, minimums=(2, 2), view="main")
def fid(inputs: MetricInputs) -> dict[str, float]:
    """Frechet Inception Distance (Heusel et al. 2017), pytorch-fid's definition; lower is better."""
    return {"fid": scores.frechet_distance_of(inputs.fake.values, _need_real(inputs).values)}


def kid_minimums(options: EvalOptions) -> tuple[int, int]:
    """KID's subsets need 2 images; under torch-fidelity's protocol, its subset size (it refuses fewer)."""
    return (options.kid_subset_size,) * 2 if options.protocol == "torch-fidelity" else (2, 2)


@METRICS.register("kid", accepts=IMAGES, figures={"kid": "lower", "kid_std": "lower"}, minimums=kid_minimums,
                  view="main", follows_protocol=True)
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


# IS splits the generated images into 10 parts; it reads no real ones.
@METRICS.register("is", accepts=IMAGES, figures={"is": "higher", "is_std": "lower"}, minimums=(10, 0),
                  view="main", follows_protocol=True)
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


# A k-th neighbour needs k + 1 points (k = 3).
@METRICS.register("pr", accepts=IMAGES, figures={"precision": "higher", "recall": "higher"}, minimums=(4, 4),
                  view="main")
def precision_recall(inputs: MetricInputs) -> dict[str, float]:
    """Improved precision and recall, k = 3 (Kynkaanniemi et al. 2019); higher is better."""
    precision, recall = scores.precision_recall(inputs.fake.values, _need_real(inputs).values, k=3)
    return {"precision": precision, "recall": recall}


# A k-th neighbour needs k + 1 points (k = 5).
@METRICS.register("dc", accepts=IMAGES, figures={"density": "higher", "coverage": "higher"}, minimums=(6, 6),
                  view="main")
def density_coverage(inputs: MetricInputs) -> dict[str, float]:
    """Density and coverage, k = 5 (Naeem et al. 2020); higher is better."""
    density, coverage = scores.density_coverage(inputs.fake.values, _need_real(inputs).values, k=5)
    return {"density": density, "coverage": coverage}


# Class by class (labels on both sides: a conditional generator); a covariance per class needs 2 points.
@METRICS.register("ifid", accepts=Accepts(vectors=False, needs_labels=True), figures={"ifid": "lower"},
                  minimums=(2, 2), view="main")
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


# Raw 2D points (the main view of vector data); one sample can be placed; no real samples are read.
@METRICS.register("modes", accepts=Accepts(images=False),
                  figures={"modes": "higher", "modes_strict": "higher", "high_quality_pct": "higher",
                           "reverse_kl": "lower"}, minimums=(1, 0), view="main")
def modes(inputs: MetricInputs) -> dict[str, float]:
    """2D mixtures: modes captured, % high-quality samples (within 3 std), reverse KL (VEEGAN/PacGAN)."""
    centres, std = getattr(inputs.source, "centres", None), getattr(inputs.source, "std", None)
    if centres is None or std is None:
        raise GanforgeError("the modes metric needs a 2D Gaussian mixture (gaussian_grid, gaussian_ring)")
    any_sample = mode_coverage(inputs.fake.values, centres, std, min_count=1)
    fifth = mode_coverage(inputs.fake.values, centres, std)
    return {"modes": any_sample["modes"], "modes_strict": fifth["modes"],
            "high_quality_pct": any_sample["high_quality_pct"], "reverse_kl": any_sample["reverse_kl"]}


# It holds out 20 real images to set its threshold and searches at least 5 others, among every
# training image (a copy of one left out of the reference would go unseen); its sheet shows the
# nearest of them beside each sample, so it needs the run, not a folder of images.
@METRICS.register("knn", accepts=IMAGES,
                  figures={"knn_min_dist": "higher", "knn_memorised_pct": "lower", "knn_threshold": "higher"},
                  minimums=(1, knn_search.MIN_REAL), view="main", needs=("generator",), whole_data=True)
def memorisation(inputs: MetricInputs) -> dict[str, float]:
    """Memorisation: nearest real training images in Inception space; knn_memorised_pct is the share
    of samples nearer to one than the 5th percentile of held-out real images' distances (lower is better)."""
    try:
        return knn_search.knn_figures(inputs.fake.values, _need_real(inputs).values)
    except ValueError as e:
        raise GanforgeError(f"knn: {e}") from None


# A covariance needs 2 points on each side.
@METRICS.register("fd_dinov2", accepts=IMAGES, figures={"fd_dinov2": "lower"}, minimums=(2, 2), view="dinov2")
def fd_dinov2(inputs: MetricInputs) -> dict[str, float]:
    """Frechet distance on DINOv2 ViT-L/14 CLS features (Stein et al. 2023); lower is better."""
    return {"fd_dinov2": scores.frechet_distance_of(inputs.fake.values, _need_real(inputs).values)}


# A k-th neighbour needs k + 1 points (k = 5).
@METRICS.register("prdc_dinov2", accepts=IMAGES,
                  figures={"precision_dinov2": "higher", "recall_dinov2": "higher", "density_dinov2": "higher",
                           "coverage_dinov2": "higher"}, minimums=(6, 6), view="dinov2")
def prdc_dinov2(inputs: MetricInputs) -> dict[str, float]:
    """Precision, recall, density, coverage on DINOv2 features, k = 5 (clovaai's prdc, as dgm-eval);
    higher is better."""
    fake, real = inputs.fake.values, _need_real(inputs).values
    precision, recall = scores.precision_recall(fake, real, k=5, strict=True)
    density, coverage = scores.density_coverage(fake, real, k=5)
    return {"precision_dinov2": precision, "recall_dinov2": recall, "density_dinov2": density,
            "coverage_dinov2": coverage}


# The reference's crop keeps half the side, and LPIPS's VGG halves it 4 times: 32 px at least. It
# measures the generator (paths through its latent space), not features of samples; its
# percentile filter needs 2 paths. ppl_wend is reported for generators with a w space (stylegan2).
@METRICS.register("ppl", accepts=Accepts(vectors=False, min_resolution=32),
                  figures={"ppl_wend": "lower", "ppl_zfull": "lower"}, minimums=(2, 0), view=None,
                  needs=("generator", "lpips"))
def perceptual_path_length(inputs: MetricInputs) -> dict[str, float]:
    """Perceptual path length (StyleGAN2-ADA): ppl_wend (stylegan2) and ppl_zfull; lower is better."""
    from ganforge.metrics.ppl import perceptual_path_length as ppl

    if inputs.G is None or inputs.lpips is None:
        raise GanforgeError("ppl measures a generator: ganforge eval RUN --metrics ppl (not a folder of images)")
    return ppl(inputs.G, inputs.lpips, inputs.num_samples, inputs.seed, inputs.batch_size)


# --------------------------------------------------------------------------------------------
# What configs are checked against
# --------------------------------------------------------------------------------------------


def minimums(name: str, options: EvalOptions | None = None) -> tuple[int, int]:
    """The fewest (generated, real) samples metric `name` is defined on under these options."""
    declared_minimums = declared(name).minimums
    return declared_minimums(options or EvalOptions()) if callable(declared_minimums) else declared_minimums


def feature_view(name: str, options: EvalOptions) -> str | None:
    """Which features a metric compares: `main` (eval.extractor, resized per eval.resize),
    `torch-fidelity` (IS and KID under that protocol), `dinov2`, or None (ppl: the generator)."""
    declaration = declared(name)
    if declaration.view == "main" and declaration.follows_protocol and options.protocol == "torch-fidelity":
        return "torch-fidelity"
    return declaration.view


# A metric whose real side is the whole data set (`whole_data`, knn): its real features are its
# view's over every image, cached under their own key.
WHOLE_DATA = ":all"


def real_view(name: str, options: EvalOptions) -> str | None:
    """The real features a metric compares with: its feature view's, over the whole data set for a
    metric that declares `whole_data`."""
    view = feature_view(name, options)
    return view + WHOLE_DATA if declared(name).whole_data and view is not None else view


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
    generated or real samples than it is defined on (its declared `minimums`)."""
    for name in metrics:
        need_generated, need_real = minimums(name, options)
        if generated is not None and generated < need_generated:
            raise ConfigError(f"{generated_where}: {name} needs at least {need_generated} generated images, "
                              f"got {generated}")
        if real is not None and need_real and real < need_real:
            raise ConfigError(f"{real_where}: {name} needs at least {need_real} real images, got {real}")


def lower_is_better(figure: str) -> bool:
    """Whether a metric declares this figure (or, for `ifid/3`, its metric's) lower-is-better; the
    rest, higher."""
    root = figure.split("/")[0]
    return any(declared(name).figures.get(root) == "lower" for name in METRICS.names())


def is_better(figure: str, new: float, old: float | None) -> bool:
    """Whether `new` improves on `old` for this figure."""
    if old is None:
        return True
    return new < old if lower_is_better(figure) else new > old


def metrics_for(is_image: bool) -> list[str]:
    """The metrics that accept images (or, with False, 2D points), sorted."""
    return [e.name for e in METRICS.entries() if (e.accepts.images if is_image else e.accepts.vectors)]


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
        accepts = METRICS.get(name, where).accepts
        if conditional is False and accepts.needs_labels:
            raise ConfigError(f"{where}: {name} compares generated and real images class by class and needs a "
                              "conditional generator (generator.conditional: true); use fid for this one")
        if is_image and not accepts.images:
            raise ConfigError(f"{where}: {name} is for 2D mixtures; for images use {', '.join(metrics_for(True))}")
        if not is_image and not accepts.vectors:
            raise ConfigError(f"{where}: {name} needs images; for 2D data use {', '.join(metrics_for(False))}")
        fewest = minimums(name)[0]
        if num_samples is not None and num_samples < fewest:
            raise ConfigError(f"{num_where}: {name} needs at least {fewest} samples, got {num_samples}")
    if best is not None:
        figures = [f for name in metrics for f in declared(name).figures]
        if best not in figures:
            raise ConfigError(f"eval.best: {best!r} is not a figure of eval.metrics; choose from {', '.join(figures)}")
