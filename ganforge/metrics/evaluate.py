"""Evaluation: generated samples -> features -> metrics, against cached real-data statistics.

Generated and real images take the same path: quantised to 8 bits (as if saved as PNG, which
is how published FIDs are computed), scaled to [0, 1], grey repeated to RGB, then the feature
extractor. Real-data features are computed once and cached on disk under a key made of the
data config, the extractor and the sample count. Every result carries what it was computed
with: sample counts, extractor, reference statistics.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ganforge.accepts import Accepts, accepts_of
from ganforge.config import Component, config_to_dict
from ganforge.data import DataSource, TensorSource, epoch_permutation
from ganforge.errors import ConfigError, GanforgeError
from ganforge.metrics import scores
from ganforge.metrics.modes import mode_coverage
from ganforge.models import conditioning_classes
from ganforge.registry import EXTRACTORS, METRICS

CACHE_VERSION = 2  # 2: real labels kept with the features (intra-class FID)

# Which way is better for each reported figure (the rest: higher is better).
# Per-class figures (`ifid/3`) go the way of their metric.
LOWER_IS_BETTER = {"fid", "kid", "kid_std", "is_std", "reverse_kl", "ifid"}


def is_better(figure: str, new: float, old: float | None) -> bool:
    """Whether `new` improves on `old` for this figure."""
    if old is None:
        return True
    return new < old if figure.split("/")[0] in LOWER_IS_BETTER else new > old


# --------------------------------------------------------------------------------------------
# Feature extractors
# --------------------------------------------------------------------------------------------


class FeatureExtractor(nn.Module):
    """uint8 images (N, C, H, W) -> (features (N, D), class logits (N, K) or None)."""

    name: str = "extractor"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError


class InceptionExtractor(FeatureExtractor):
    def __init__(self, state_dict: dict[str, Tensor], source: str) -> None:
        super().__init__()
        from ganforge.metrics.inception import FIDInception  # torchvision's models: imported when used

        # NHWC convolutions: the same network and weights, ~1.5x the images/s on this CPU
        # (scripts/bench_eval.py); features agree with the NCHW layout to float rounding.
        self.net = FIDInception(state_dict).to(memory_format=torch.channels_last)
        self.name = f"inception-v3-fid ({source})"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        x = images.float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x.contiguous(memory_format=torch.channels_last))


@EXTRACTORS.register("inception")
def inception(weights: str | None = None, download: bool = True) -> InceptionExtractor:
    """FID Inception v3 (TF 2015-12-05 weights, pytorch-fid port): pool3 2048-d and 1008 logits."""
    from ganforge.metrics.inception import WEIGHTS_FILE, load_fid_weights

    state = load_fid_weights(weights, download)
    return InceptionExtractor(state, weights or WEIGHTS_FILE)


# --------------------------------------------------------------------------------------------
# Metrics: each takes the features of both sides and returns named figures
# --------------------------------------------------------------------------------------------


@dataclass
class Features:
    """Features (and logits and class labels) of one set of samples; raw points for vector data."""

    values: Tensor
    logits: Tensor | None = None
    labels: Tensor | None = None
    _stats: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self._stats is None:
            self._stats = scores.mean_cov(self.values)
        return self._stats


@dataclass
class MetricInputs:
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


# --------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------


LabelledBatches = Iterator[tuple[Tensor, "Tensor | None"]]


def extract_features(extractor: FeatureExtractor | None, batches: LabelledBatches, total: int, what: str,
                     device: torch.device, progress: bool = True) -> Features:
    """Features (and logits, and labels where the batches have them) of (images, labels) batches;
    raw float values when there is no extractor (vector data)."""
    values, logits, labels = [], [], []
    with tqdm(total=total, desc=f"features ({what})", unit="img", disable=not progress, leave=False) as bar:
        for images, batch_labels in batches:
            if extractor is None:
                values.append(images.float().cpu())
            else:
                with torch.inference_mode():
                    feats, logit = extractor(images.to(device))
                values.append(feats.float().cpu())
                if logit is not None:
                    logits.append(logit.float().cpu())
            if batch_labels is not None:
                labels.append(batch_labels.long().cpu())
            bar.update(len(images))
    if not values:
        raise GanforgeError(f"no {what} images to evaluate")
    return Features(torch.cat(values), torch.cat(logits) if logits else None,
                    torch.cat(labels) if len(labels) == len(values) else None)



def default_cache_dir() -> Path:
    """~/.cache/ganforge/stats (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ganforge" / "stats"


def to_uint8(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> uint8, rounded as when saved to PNG."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass
class EvalResult:
    """Figures and what they were computed with."""

    figures: dict[str, float]
    num_samples: int
    extractor: str
    reference: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.figures, "num_samples": self.num_samples, "extractor": self.extractor,
                "reference": self.reference, "seconds": round(self.seconds, 2)}


class Evaluator:
    """Computes the configured metrics for a generator against one data set."""

    def __init__(self, data_cfg: Component, source: DataSource, metrics: list[str] | tuple[str, ...],
                 num_samples: int, extractor_cfg: Component, device: torch.device, real_samples: int | None = None,
                 batch_size: int = 100, cache_dir: str | None = None, progress: bool = True) -> None:
        from ganforge.build import build

        metrics = default_metrics(metrics, source.info.is_image)
        check_metrics(metrics, source.info.is_image, num_samples=num_samples, num_where="--num (eval.num_samples)")
        for name in metrics:
            problem = accepts_of(METRICS.get(name).builder).problem(source.info)
            if problem is not None:
                raise ConfigError(f"eval.metrics (--metrics): {name} {problem} (data.kind: {source.info.name}); "
                                  f"leave {name} out or use labelled data")
        self.data_cfg, self.source, self.metrics = data_cfg, source, metrics
        self.num_samples, self.device, self.batch_size, self.progress = num_samples, device, batch_size, progress
        self.real_samples = real_samples or num_samples
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.extractor: FeatureExtractor | None = None
        if source.info.is_image:
            extractor = build(EXTRACTORS, extractor_cfg, "eval.extractor")
            self.extractor = extractor.to(device)
            if device.type == "cpu":
                self.extractor = self.extractor.to(memory_format=torch.channels_last)
        self._real: Features | None = None
        self._reference: dict[str, Any] = {}

    @property
    def reference(self) -> dict[str, Any]:
        """What the real features were computed from (after `real_features`)."""
        return dict(self._reference)

    # -- features ---------------------------------------------------------------------------

    def _features(self, batches: LabelledBatches, total: int, what: str) -> Features:
        return extract_features(self.extractor, batches, total, what, self.device, self.progress)

    def _real_batches(self, num: int) -> LabelledBatches:
        if isinstance(self.source, TensorSource):
            x, y = self.source.tensors()
            order = epoch_permutation(len(x), 0, 0)[:num]
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                yield x[idx], (y[idx] if y is not None else None)
            return
        dataset = getattr(self.source, "dataset", None)
        if dataset is None:
            raise GanforgeError(f"cannot read real samples of {self.source.info.name} for evaluation")
        labelled = getattr(dataset, "labels", None) is not None
        order = epoch_permutation(len(dataset), 0, 0)[:num].tolist()
        for start in range(0, len(order), self.batch_size):
            items = [dataset[i] for i in order[start : start + self.batch_size]]
            good = [it for it in items if not isinstance(it, str)]
            if good:
                yield torch.stack([g[0] for g in good]), (torch.tensor([g[1] for g in good]) if labelled else None)

    def real_features(self) -> Features:
        """Real-data features, from the on-disk cache when there."""
        if self._real is not None:
            return self._real
        size = self._data_size()
        num = min(self.real_samples, size)
        extractor_name = self.extractor.name if self.extractor is not None else "raw"
        key_src = json.dumps({"data": config_to_dict(self.data_cfg), "extractor": extractor_name, "num": num,
                              "version": CACHE_VERSION}, sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        path = self.cache_dir / f"{self.source.info.name}-{num}-{key}.pt"
        self._reference = {"data": config_to_dict(self.data_cfg), "num_samples": num, "stats_file": str(path)}
        if path.is_file():
            try:
                cached = torch.load(path, map_location="cpu", weights_only=True)
                self._real = Features(cached["values"], cached.get("logits"), cached.get("labels"))
                return self._real
            except Exception:  # a damaged cache file is recomputed, never trusted
                path.unlink(missing_ok=True)
        self._real = self._features(self._real_batches(num), num, "real")
        try:
            from ganforge.checkpoint import atomic_write_bytes

            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save({"values": self._real.values, "logits": self._real.logits, "labels": self._real.labels,
                        "key": key_src}, buffer)
            atomic_write_bytes(path, buffer.getvalue())
        except OSError:
            pass  # the cache is an optimisation; evaluation goes on without it
        return self._real

    def _data_size(self) -> int:
        if isinstance(self.source, TensorSource):
            return len(self.source.tensors()[0])
        return len(self.source.dataset)  # type: ignore[attr-defined]

    def fake_features(self, G: nn.Module, seed: int) -> Features:
        """Features of `num_samples` generated samples (noise from `seed`)."""
        from ganforge.generation import sample_noise, seeded_global_rng

        G_device = next(G.parameters()).device
        z = sample_noise(self.num_samples, G.latent_dim, seed, G_device)
        num_classes = conditioning_classes(G)
        labels = (torch.arange(self.num_samples, device=G_device) % num_classes) if num_classes else None
        is_image = self.source.info.is_image

        def batches() -> LabelledBatches:
            for start in range(0, self.num_samples, self.batch_size):
                lab = labels[start : start + self.batch_size] if labels is not None else None
                with torch.inference_mode():
                    out = G(z[start : start + self.batch_size], lab)
                yield (to_uint8(out) if is_image else out.float()), lab

        was_training = G.training
        G.eval()
        try:
            # Random per-pixel noise (stylegan2), as the reference's metrics, drawn from the seed:
            # the same seed gives the same figure, and the caller's RNG streams are left alone.
            with seeded_global_rng(seed, G_device):
                return self._features(batches(), self.num_samples, "generated")
        finally:
            G.train(was_training)

    # -- metrics ----------------------------------------------------------------------------

    def __call__(self, G: nn.Module, seed: int = 0) -> EvalResult:
        """All configured metrics for generator G."""
        start = time.perf_counter()
        if not conditioning_classes(G):
            check_metrics(self.metrics, self.source.info.is_image, conditional=False)
        needs_real = any(m != "is" for m in self.metrics) and self.source.info.is_image
        real = self.real_features() if needs_real else None
        fake = self.fake_features(G, seed)
        inputs = MetricInputs(fake, real, self.source)
        figures: dict[str, float] = {}
        for name in self.metrics:
            figures.update(METRICS.get(name).builder(inputs=inputs))
        extractor = self.extractor.name if self.extractor is not None else "raw 2D points"
        reference = self._reference if needs_real else {"data": config_to_dict(self.data_cfg)}
        return EvalResult(figures, self.num_samples, extractor, reference, time.perf_counter() - start)


def evaluator_for(cfg: Any, source: DataSource, device: torch.device, progress: bool = True,
                  **overrides: Any) -> Evaluator:
    """An Evaluator from a config's eval section (keyword arguments override it)."""
    e = cfg.eval
    options: dict[str, Any] = {
        "metrics": e.metrics, "num_samples": e.num_samples, "real_samples": e.real_samples,
        "batch_size": e.batch_size, "cache_dir": e.cache_dir, "extractor_cfg": e.extractor,
    }
    options.update({k: v for k, v in overrides.items() if v is not None})
    return Evaluator(cfg.data, source, device=device, progress=progress, **options)
