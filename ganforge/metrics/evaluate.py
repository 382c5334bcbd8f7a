"""Evaluation of a generator: generated samples -> features -> metrics, against cached real-data
statistics.

Real-data features are computed once and cached on disk under a key made of the data config,
the extractor and the sample count. Every result carries what it was computed with: sample
counts, extractor, reference statistics. `ganforge.build.evaluator_for` builds an Evaluator from
a config's eval section.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from ganforge.config import Component, config_to_dict
from ganforge.data import DataInfo, DataSource, TensorSource, epoch_permutation
from ganforge.errors import ConfigError, DataError, GanforgeError
from ganforge.metrics.catalog import (
    WHOLE_DATA,
    EvalOptions,
    MetricInputs,
    check_counts,
    check_metrics,
    declared,
    default_metrics,
    feature_view,
    real_view,
    views_of,
)
from ganforge.metrics.features import (
    BatchHook,
    FeatureExtractor,
    Features,
    LabelledBatches,
    extract_features,
    to_uint8,
)
from ganforge.metrics.knn import ClosestSamples
from ganforge.metrics.knn import sheet as knn_sheet
from ganforge.metrics.views import build_views
from ganforge.models import conditioning_classes
from ganforge.registry import METRICS

# 3: each row's data-set index is kept (the kNN sheet shows those images), and extractor names
# carry the resize mode; 2: real labels kept with the features (intra-class FID).
CACHE_VERSION = 3


def default_cache_dir() -> Path:
    """~/.cache/ganforge/stats (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ganforge" / "stats"


@dataclass
class EvalResult:
    """Figures and what they were computed with; `sheets` are pictures for the caller to save."""

    figures: dict[str, float]
    num_samples: int
    extractor: str
    reference: dict[str, Any]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)  # resize, protocol and each metric's notes
    sheets: dict[str, Image.Image] = field(default_factory=dict)  # metric -> picture (knn: the nearest-neighbour sheet)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.figures, "num_samples": self.num_samples, "extractor": self.extractor,
                "settings": self.settings, "reference": self.reference, "seconds": round(self.seconds, 2)}


def check_evaluable(metrics: list[str] | tuple[str, ...], info: DataInfo, num_samples: int) -> list[str]:
    """The metrics to compute for data described by `info` (the defaults when none are named),
    each known, suited to the data and given enough samples; refused with a ConfigError otherwise."""
    metrics = default_metrics(metrics, info.is_image)
    check_metrics(metrics, info.is_image, num_samples=num_samples, num_where="--num (eval.num_samples)")
    for name in metrics:
        problem = METRICS.get(name).accepts.problem(info)
        if problem is not None:
            remedy = " or use labelled data" if "label" in problem else ""
            raise ConfigError(f"eval.metrics (--metrics): {name} {problem} (data.kind: {info.name}); "
                              f"leave {name} out{remedy}")
    return metrics


def run_metrics(metrics: list[str], fake: dict[str, Features], real: dict[str, Features], source: DataSource | None,
                options: EvalOptions, **generator: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """Every metric on the features of its view: (figures, settings with the metrics' notes).
    The counts that reached the metrics (unreadable images are skipped) are checked first."""
    figures: dict[str, float] = {}
    settings: dict[str, Any] = {"resize": options.resize, "protocol": options.protocol}
    for name in metrics:
        view, compared = feature_view(name, options), real_view(name, options)
        fake_features = fake.get(view) if view is not None else None
        real_features = real.get(compared) if compared is not None else None
        check_counts([name], options, len(fake_features.values) if fake_features is not None else None,
                     "the readable generated images",
                     len(real_features.values) if real_features is not None else None, "the readable real images")
        inputs = MetricInputs(fake_features if fake_features is not None else Features(torch.empty(0, 0)),
                              real_features, source, options, notes=settings, **generator)
        figures.update(METRICS.get(name).builder(inputs=inputs))
    return figures, settings


class Evaluator:
    """Computes the configured metrics for a generator against one data set. `extractor` turns
    images into features (it is not used for vector data, whose raw values are compared);
    `data_cfg` identifies the data in the cache key and in every result. Every check that can
    fail (metric names, sample counts, weights) runs here, before any image is generated."""

    def __init__(self, data_cfg: Component, source: DataSource, metrics: list[str] | tuple[str, ...],
                 num_samples: int, extractor: FeatureExtractor | None, device: torch.device,
                 real_samples: int | None = None, batch_size: int = 100, cache_dir: str | None = None,
                 progress: bool = True, options: EvalOptions | None = None, dinov2_weights: str | None = None,
                 lpips: nn.Module | None = None, truncation: float | None = None,
                 batch_stats: bool = False) -> None:
        self.metrics = check_evaluable(metrics, source.info, num_samples)
        self.options = options or EvalOptions()
        if source.info.is_image and extractor is None and {"main", "torch-fidelity"} & set(views_of(
                self.metrics, self.options)):
            raise ValueError("image metrics need a feature extractor")
        self.data_cfg, self.source = data_cfg, source
        self.num_samples, self.device, self.batch_size, self.progress = num_samples, device, batch_size, progress
        self.truncation = truncation  # of the generated samples (generation.truncation_for); None: none
        self.real_samples = real_samples or num_samples
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        is_image = source.info.is_image
        for name in self.metrics:
            if "lpips" in declared(name).needs and lpips is None:
                raise ConfigError(f"{name}: needs LPIPS-VGG weights (eval.lpips, ganforge eval --lpips)")
        self.lpips = lpips
        whole_data = [m for m in self.metrics if declared(m).whole_data]
        for name in whole_data:
            self._check_readable(name)
        size = self._data_size()
        check_counts([m for m in self.metrics if m not in whole_data], self.options, num_samples,
                     "--num (eval.num_samples)", min(self.real_samples, size) if is_image else None,
                     f"--real-num (eval.real_samples; data.kind {source.info.name} holds {size})")
        check_counts(whole_data, self.options, num_samples, "--num (eval.num_samples)",
                     size, f"data.kind {source.info.name} (its images)")
        self.views = views_of(self.metrics, self.options)
        self.real_view_names = views_of(self.metrics, self.options, real=True) if is_image else {}
        self.extractors = build_views(self.views, extractor if is_image else None, self.options.resize,
                                      dinov2_weights, device)
        self.extractor = self.extractors.get("main")
        # G's BatchNorm on each generation batch's own statistics (train mode), not its running ones.
        self.batch_stats = batch_stats
        self._real: dict[str, Features] = {}
        self._reference: dict[str, Any] = {}

    @property
    def reference(self) -> dict[str, Any]:
        """What the real features were computed from (after `real_features`)."""
        return dict(self._reference)

    # -- real data --------------------------------------------------------------------------

    def _check_readable(self, metric: str) -> None:
        """The data set's first image can be read (a `whole_data` metric's sheet shows the real images)."""
        try:
            if isinstance(self.source, TensorSource):
                self.source.tensors()
                return
            dataset = getattr(self.source, "dataset", None)
            item = dataset[0] if dataset is not None and len(dataset) else "the data set is empty"
        except GanforgeError as e:
            item = str(e)
        if not isinstance(item, tuple):  # an (image, label, notes) item, or why there is none
            raise DataError(f"{metric}: cannot read the run's training images ({item}); it shows the nearest of "
                            f"them beside each sample: make the run's data readable again or leave {metric} out")

    def _data_size(self) -> int:
        if isinstance(self.source, TensorSource):
            return len(self.source.tensors()[0])
        return len(self.source.dataset)  # type: ignore[attr-defined]

    def _real_batches(self, num: int) -> LabelledBatches:
        if isinstance(self.source, TensorSource):
            x, y = self.source.tensors()
            order = epoch_permutation(len(x), 0, 0)[:num]
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                yield x[idx], (y[idx] if y is not None else None), idx
            return
        dataset = getattr(self.source, "dataset", None)
        if dataset is None:
            raise GanforgeError(f"cannot read real samples of {self.source.info.name} for evaluation")
        labelled = getattr(dataset, "labels", None) is not None
        order = epoch_permutation(len(dataset), 0, 0)[:num].tolist()
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size]
            items = [(i, dataset[i]) for i in part]
            good = [(i, it) for i, it in items if isinstance(it, tuple)]  # failures are skipped
            if good:
                yield (torch.stack([it[0] for _, it in good]),
                       torch.tensor([it[1] for _, it in good]) if labelled else None,
                       torch.tensor([i for i, _ in good]))

    def real_images(self, indices: Tensor) -> Tensor:
        """The data set's images at these indices, uint8 (n, C, H, W); an unreadable one is black."""
        if isinstance(self.source, TensorSource):
            return self.source.tensors()[0][indices]
        dataset = self.source.dataset  # type: ignore[attr-defined]
        items = [dataset[int(i)] for i in indices]
        blank = torch.zeros(self.source.info.shape, dtype=torch.uint8)
        return torch.stack([it[0] if isinstance(it, tuple) else blank for it in items])

    def real_views(self) -> dict[str, Features]:
        """Real-data features of every view the metrics compare with real data, from the on-disk
        cache where there (one file per view: the extractor's name is in the key)."""
        size = self._data_size()
        data = config_to_dict(self.data_cfg)
        counts = {view: size if view.endswith(WHOLE_DATA) else min(self.real_samples, size)
                  for view in self.real_view_names}
        paths, missing = {}, {}
        for view, num in counts.items():
            extractor = self.extractors[view.removesuffix(WHOLE_DATA)]
            # The statistics are of the images as they are (data.xflip mirrors only training batches, as
            # StyleGAN2-ADA's metrics set xflip=False): mirrored or not, one cache entry.
            unmirrored = {k: v for k, v in data.items() if k != "xflip"}
            key_src = json.dumps({"data": unmirrored, "extractor": extractor.name if extractor is not None else "raw",
                                  "num": num, "version": CACHE_VERSION}, sort_keys=True)
            key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
            paths[view] = (self.cache_dir / f"{self.source.info.name}-{num}-{key}.pt", key_src)
            if view in self._real:
                continue
            cached = self._read_cache(paths[view][0])
            if cached is not None:
                self._real[view] = cached
            else:
                missing.setdefault(num, {})[view] = extractor
        files = {view: str(path) for view, (path, _) in paths.items()}
        first = next(iter(counts))
        self._reference = {"data": data, "num_samples": counts[first], "stats_file": files[first]}
        if len(files) > 1:
            self._reference["stats_files"] = files
            self._reference["num_samples_of"] = counts
        for num, extractors in missing.items():  # one pass over the data per count
            computed = extract_features(extractors, self._real_batches(num), num, "real images", self.device,
                                        self.progress)
            for view, features in computed.items():
                self._real[view] = features
                self._write_cache(paths[view][0], features, paths[view][1])
        return {view: self._real[view] for view in self.real_view_names}

    def real_features(self) -> Features:
        """The main view's real-data features (eval.extractor), from the on-disk cache when there."""
        views = self.real_view_names
        if "main" not in views:
            self.real_view_names = {"main": "fid", **views}
        try:
            return self.real_views()["main"]
        finally:
            self.real_view_names = views

    @staticmethod
    def _read_cache(path: Path) -> Features | None:
        if not path.is_file():
            return None
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            return Features(cached["values"], cached.get("logits"), cached.get("labels"), cached.get("indices"))
        except Exception:  # a damaged cache file is recomputed, never trusted
            path.unlink(missing_ok=True)
            return None

    @staticmethod
    def _write_cache(path: Path, features: Features, key_src: str) -> None:
        try:
            from ganforge.checkpoint import atomic_write_bytes

            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save({"values": features.values, "logits": features.logits, "labels": features.labels,
                        "indices": features.indices, "key": key_src}, buffer)
            atomic_write_bytes(path, buffer.getvalue())
        except OSError:
            pass  # the cache is an optimisation; evaluation goes on without it

    # -- generated samples --------------------------------------------------------------------

    def fake_views(self, G: nn.Module, seed: int, on_batch: BatchHook | None = None) -> dict[str, Features]:
        """Features of `num_samples` generated samples (noise from `seed`, truncated as `truncation`) in
        every view."""
        from ganforge.generation import batch_statistics, sample_noise, seeded_global_rng, truncation_for

        G_device = next(G.parameters()).device
        trunc = truncation_for(G, self.truncation)
        z = sample_noise(self.num_samples, G.latent_dim, seed, G_device, trunc.threshold)
        num_classes = conditioning_classes(G)
        labels = (torch.arange(self.num_samples, device=G_device) % num_classes) if num_classes else None
        is_image = self.source.info.is_image

        def batches() -> LabelledBatches:
            for start in range(0, self.num_samples, self.batch_size):
                lab = labels[start : start + self.batch_size] if labels is not None else None
                with torch.inference_mode():
                    out = G(z[start : start + self.batch_size], lab, **trunc.g_kwargs)
                yield (to_uint8(out) if is_image else out.float()), lab

        was_training = G.training
        G.eval()
        try:
            # Random per-pixel noise (stylegan2), as the reference's metrics, drawn from the seed:
            # the same seed gives the same figure, and the caller's RNG streams are left alone.
            norms = batch_statistics(G) if self.batch_stats else contextlib.nullcontext()
            with seeded_global_rng(seed, G_device), norms:
                return extract_features(self.extractors, batches(), self.num_samples, "generated images",
                                        self.device, self.progress, on_batch)
        finally:
            G.train(was_training)

    def fake_features(self, G: nn.Module, seed: int) -> Features:
        """The main view's features of `num_samples` generated samples (noise from `seed`)."""
        return self.fake_views(G, seed)["main"]

    # -- metrics ----------------------------------------------------------------------------

    def __call__(self, G: nn.Module, seed: int = 0) -> EvalResult:
        """All configured metrics for generator G."""
        start = time.perf_counter()
        if not conditioning_classes(G):
            check_metrics(self.metrics, self.source.info.is_image, conditional=False)
        real = self.real_views() if self.real_view_names else {}
        # The sheet of the nearest training images: for the metric that compares with all of them.
        nearest_of = self.real_view_names.get("main" + WHOLE_DATA)
        knn_real = real.get("main" + WHOLE_DATA)
        closest = ClosestSamples(knn_real.values) if knn_real is not None else None
        fake = self.fake_views(G, seed, closest) if self.views else {}
        figures, settings = run_metrics(self.metrics, fake, real, self.source, self.options, G=G, lpips=self.lpips,
                                        seed=seed, batch_size=self.batch_size, num_samples=self.num_samples)
        sheets = {}
        if closest is not None and closest.images is not None:
            indices = knn_real.indices  # type: ignore[union-attr]
            neighbours = indices[closest.index] if indices is not None else closest.index
            pictures = self.real_images(neighbours.flatten()).view(*neighbours.shape, *self.source.info.shape)
            sheets[nearest_of] = knn_sheet(closest.images, pictures)
        names = [self.extractors[v].name for v in self.views if self.extractors.get(v) is not None]
        extractor = ", ".join(names) if names else ("raw 2D points" if not self.source.info.is_image else "none")
        reference = self._reference if self.real_view_names else {"data": config_to_dict(self.data_cfg)}
        return EvalResult(figures, self.num_samples, extractor, reference, time.perf_counter() - start, settings,
                          sheets)
