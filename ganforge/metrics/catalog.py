"""The metrics: each turns the features of generated and real samples into named figures.

Also what configs are checked against: which data each metric suits, the figures it reports
(`eval.best` names one), the fewest samples it is defined on, and which way is better.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganforge.accepts import Accepts
from ganforge.data import DataSource
from ganforge.errors import ConfigError, GanforgeError
from ganforge.metrics import scores
from ganforge.metrics.features import Features
from ganforge.metrics.modes import mode_coverage
from ganforge.registry import METRICS

# --------------------------------------------------------------------------------------------
# Metrics: each takes the features of both sides and returns named figures
# --------------------------------------------------------------------------------------------


@dataclass
class MetricInputs:
    """What a metric is given: the features of both sides, and the data source (2D mixtures)."""

    fake: Features
    real: Features | None
    source: DataSource | None  # None: features of image folders


def _need_real(inputs: MetricInputs) -> Features:
    assert inputs.real is not None
    return inputs.real


@METRICS.register("fid")
def fid(inputs: MetricInputs) -> dict[str, float]:
    """Frechet Inception Distance (Heusel et al. 2017), pytorch-fid's definition; lower is better."""
    return {"fid": scores.frechet_distance_of(inputs.fake.values, _need_real(inputs).values)}


@METRICS.register("kid")
def kid(inputs: MetricInputs) -> dict[str, float]:
    """Kernel Inception Distance: unbiased MMD^2, cubic kernel, 100 subsets of 1,000; lower is better."""
    mean, std = scores.kernel_inception_distance(inputs.fake.values, _need_real(inputs).values)
    return {"kid": mean, "kid_std": std}


@METRICS.register("is")
def inception_score(inputs: MetricInputs) -> dict[str, float]:
    """Inception Score over 10 splits (Salimans et al. 2016); higher is better."""
    if inputs.fake.logits is None:
        raise GanforgeError("the Inception Score needs an extractor with class logits (inception)")
    try:
        mean, std = scores.inception_score(inputs.fake.logits)
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


@METRICS.register("ifid")
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


intra_class_fid.accepts = Accepts(vectors=False, needs_labels=True)  # type: ignore[attr-defined]


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


# --------------------------------------------------------------------------------------------
# What configs are checked against
# --------------------------------------------------------------------------------------------


IMAGE_METRICS = {"fid", "kid", "is", "pr", "dc", "ifid"}
VECTOR_METRICS = {"modes"}
# Metrics that compare generated and real images class by class: a conditional generator only.
CONDITIONAL_METRICS = {"ifid"}
# Figures `eval.best` may name (ifid also reports ifid/0, ifid/1, ... per class).
FIGURES = {"fid": ["fid"], "kid": ["kid", "kid_std"], "is": ["is", "is_std"], "pr": ["precision", "recall"],
           "dc": ["density", "coverage"], "modes": ["modes", "modes_strict", "high_quality_pct", "reverse_kl"],
           "ifid": ["ifid"]}
# The fewest samples a metric is defined on: k-th neighbours need k + 1 points (pr: k = 3, dc:
# k = 5); IS splits into 10 parts; ifid needs 2 of every class (checked when it runs).
MIN_SAMPLES = {"fid": 2, "kid": 2, "is": 10, "pr": 4, "dc": 6, "modes": 1, "ifid": 2}
# Which way is better for each reported figure (the rest: higher is better).
# Per-class figures (`ifid/3`) go the way of their metric.
LOWER_IS_BETTER = {"fid", "kid", "kid_std", "is_std", "reverse_kl", "ifid"}


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
