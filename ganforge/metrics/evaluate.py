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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.accepts import accepts_of
from ganforge.config import Component, config_to_dict
from ganforge.data import DataInfo, DataSource, TensorSource, epoch_permutation
from ganforge.errors import ConfigError, GanforgeError
from ganforge.metrics.catalog import MetricInputs, check_metrics, default_metrics
from ganforge.metrics.features import FeatureExtractor, Features, LabelledBatches, extract_features, to_uint8
from ganforge.models import conditioning_classes
from ganforge.registry import METRICS

CACHE_VERSION = 2  # 2: real labels kept with the features (intra-class FID)


def default_cache_dir() -> Path:
    """~/.cache/ganforge/stats (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ganforge" / "stats"


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


def check_evaluable(metrics: list[str] | tuple[str, ...], info: DataInfo, num_samples: int) -> list[str]:
    """The metrics to compute for data described by `info` (the defaults when none are named),
    each known, suited to the data and given enough samples; refused with a ConfigError otherwise."""
    metrics = default_metrics(metrics, info.is_image)
    check_metrics(metrics, info.is_image, num_samples=num_samples, num_where="--num (eval.num_samples)")
    for name in metrics:
        problem = accepts_of(METRICS.get(name).builder).problem(info)
        if problem is not None:
            raise ConfigError(f"eval.metrics (--metrics): {name} {problem} (data.kind: {info.name}); "
                              f"leave {name} out or use labelled data")
    return metrics


class Evaluator:
    """Computes the configured metrics for a generator against one data set. `extractor` turns
    images into features (it is not used for vector data, whose raw values are compared);
    `data_cfg` identifies the data in the cache key and in every result."""

    def __init__(self, data_cfg: Component, source: DataSource, metrics: list[str] | tuple[str, ...],
                 num_samples: int, extractor: FeatureExtractor | None, device: torch.device,
                 real_samples: int | None = None, batch_size: int = 100, cache_dir: str | None = None,
                 progress: bool = True, batch_stats: bool = False) -> None:
        self.metrics = check_evaluable(metrics, source.info, num_samples)
        if source.info.is_image and extractor is None:
            raise ValueError("image metrics need a feature extractor")
        self.data_cfg, self.source = data_cfg, source
        self.num_samples, self.device, self.batch_size, self.progress = num_samples, device, batch_size, progress
        self.real_samples = real_samples or num_samples
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.extractor = extractor if source.info.is_image else None
        # G's BatchNorm on each generation batch's own statistics (train mode), not its running ones.
        self.batch_stats = batch_stats
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
        from ganforge.generation import batch_statistics, sample_noise, seeded_global_rng

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
            norms = batch_statistics(G) if self.batch_stats else contextlib.nullcontext()
            with seeded_global_rng(seed, G_device), norms:
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
