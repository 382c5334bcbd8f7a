"""Every registered metric, through the evaluation path, on tiny inputs chosen from what it
declares where it registers (`ganforge.metrics.catalog.Declared`): its data (`accepts`), its
figures and which way each is better, its minimums, its feature view and what else it needs.
A metric added in a module of its own joins these ids with no edit here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from ganforge.config import Component
from ganforge.data import DataInfo, TensorSource
from ganforge.data.toy import gaussian_grid
from ganforge.errors import ConfigError
from ganforge.metrics.catalog import declared, is_better, minimums
from ganforge.metrics.evaluate import Evaluator
from ganforge.metrics.features import FeatureExtractor
from ganforge.registry import METRICS, Registry

FIXTURES = Path(__file__).parent / "fixtures"
CLASSES = 4
# At least every built-in metric's minimum (is: 10 generated; knn: 25 real), 3 per class (ifid).
GENERATED, REAL = 12, 40


class PooledPixels(FeatureExtractor):
    """A stand-in for the Inception: 4x4-pooled grey pixels times a fixed random matrix, and class
    logits from them (the Inception Score reads those)."""

    name = "pooled-pixels"

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.project, self.classify = torch.randn(16, 8, generator=g), torch.randn(8, 10, generator=g)

    def forward(self, images):
        pooled = nn.functional.adaptive_avg_pool2d(images.float().mean(1, keepdim=True) / 255, 4).flatten(1)
        features = pooled @ self.project
        return features, features @ self.classify


class LabelledImages(TensorSource):
    """`count` random labelled uint8 images held in memory."""

    def __init__(self, count: int, channels: int, side: int) -> None:
        super().__init__(DataInfo("labelled_images", (channels, side, side), CLASSES))
        g = torch.Generator().manual_seed(1)
        self.x = torch.randint(0, 256, (count, channels, side, side), generator=g, dtype=torch.uint8)
        self.y = torch.arange(count) % CLASSES

    def load(self):
        return self.x, self.y


class StyleStandIn(nn.Module):
    """A conditional image generator with a w space as stylegan2's (`mapping_ws`, `synthesis`), so
    that every figure a metric declares is one it can report (ppl_wend needs the w space, ifid labels)."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.latent_dim, self.num_classes, self.shape = 8, CLASSES, (channels, side, side)
        self.embed = nn.Parameter(torch.randn(CLASSES, 8, generator=g))
        self.A = nn.Parameter(torch.randn(8, 6, generator=g) / math.sqrt(8))
        self.B = nn.Parameter(torch.randn(6, channels * side * side, generator=g))

    def mapping_ws(self, z, labels=None):
        z = z + self.embed[labels] if labels is not None else z
        return (z @ self.A).unsqueeze(1).repeat(1, 2, 1)

    def synthesis(self, ws, noise_mode="random"):
        return torch.tanh(ws[:, 0] @ self.B).view(-1, *self.shape)

    def forward(self, z, labels=None):
        return self.synthesis(self.mapping_ws(z, labels))


class NearModes(nn.Module):
    """A 2D generator whose samples lie near the mixture's centres (each from its latent)."""

    def __init__(self, centres: torch.Tensor) -> None:
        super().__init__()
        self.centres, self.latent_dim, self.num_classes = centres, 2, 0
        self.scale = nn.Parameter(torch.tensor(0.02))

    def forward(self, z, labels=None):
        which = (z[:, 0].abs() * 1000).long() % len(self.centres)
        return self.centres[which] + self.scale * z


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """What the sweep builds a metric's inputs from: one cache of real features for every id, the
    DINOv2 test weights (a narrow ViT, as dgm-eval's model) as a file, a stand-in LPIPS (built once)."""
    folder = tmp_path_factory.mktemp("metric-sweep")
    dinov2 = folder / "dinov2.pth"
    torch.save(torch.load(FIXTURES / "dinov2_reference.pt", weights_only=True)["state_dict"], dinov2)
    lpips: list[nn.Module] = []

    def make_lpips() -> nn.Module:
        from ganforge.metrics.lpips import LPIPS

        if not lpips:
            torch.manual_seed(8)
            net = LPIPS()
            for lin in net.lins:
                lin.weight.data.abs_()  # positive heads: distances between different images are > 0
            lpips.append(net.eval().requires_grad_(False))
        return lpips[0]

    return {"cache": str(folder / "cache"), "dinov2": str(dinov2), "lpips": make_lpips}


def evaluator(name: str, inputs: dict, generated: int = GENERATED, real: int = REAL) -> tuple[Evaluator, nn.Module]:
    """An Evaluator of metric `name` alone on data it accepts (`real` samples in the data set), and a
    generator for those data."""
    entry, declaration = METRICS.get(name), declared(name)
    accepts = entry.accepts
    lpips = inputs["lpips"]() if "lpips" in declaration.needs else None
    common = {"device": torch.device("cpu"), "batch_size": 8, "cache_dir": inputs["cache"], "progress": False,
              "lpips": lpips}
    if not accepts.images:
        source = gaussian_grid(num_samples=max(real, 1))
        return (Evaluator(Component("gaussian_grid", {"num_samples": max(real, 1)}), source, [name], generated, None,
                          **common), NearModes(source.centres))
    side = min(accepts.resolutions(256), key=lambda s: (abs(s - 32), s))  # 32 px where it takes them
    channels = 3 if accepts.channels is None or 3 in accepts.channels else accepts.channels[0]
    data_cfg = Component("labelled_images", {"count": real, "channels": channels, "side": side})
    return (Evaluator(data_cfg, LabelledImages(real, channels, side), [name], generated, PooledPixels(),
                      real_samples=real, dinov2_weights=inputs["dinov2"], **common), StyleStandIn(channels, side))


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_reports_its_declared_figures_each_finite(name, inputs):
    declaration = declared(name)
    fewest_generated, fewest_real = minimums(name)
    run, G = evaluator(name, inputs, max(GENERATED, fewest_generated), max(REAL, fewest_real))
    figures = run(G).figures
    # Exactly its declared figures, in their order (ifid adds ifid/0, ifid/1, ... after its own).
    assert [f for f in figures if "/" not in f] == list(declaration.figures), figures
    assert all(f.split("/")[0] in declaration.figures for f in figures), figures
    assert all(math.isfinite(v) for v in figures.values()), figures
    # Which way is better, as declared, is what picks the best checkpoint (per-class figures too).
    for figure in figures:
        lower = declaration.figures[figure.split("/")[0]] == "lower"
        assert is_better(figure, 1.0, 2.0) == lower and is_better(figure, 2.0, 1.0) != lower, figure
    # Its figures are its own: eval.best names one metric's, and no metric's figures overwrite another's.
    others = {f for other in METRICS.names() if other != name for f in declared(other).figures}
    assert not others & set(declaration.figures)


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_computes_at_its_minimum_and_refuses_fewer_samples(name, inputs):
    fewest_generated, fewest_real = minimums(name)
    # At its minimum it computes (a class-by-class metric's minimum is per class).
    per = CLASSES if METRICS.get(name).accepts.needs_labels else 1
    run, G = evaluator(name, inputs, fewest_generated * per, max(fewest_real * per, 1))
    figures = run(G).figures
    assert figures and set(figures) <= set(declared(name).figures) | {f for f in figures if "/" in f}, figures
    assert all(math.isfinite(v) for v in figures.values()), figures
    with pytest.raises(ConfigError, match=rf"{name} needs at least {fewest_generated} ") as refusal:
        evaluator(name, inputs, generated=fewest_generated - 1)
    assert "\n" not in str(refusal.value)
    if not METRICS.get(name).accepts.images:
        # 2D metrics read the data source (a mixture's centres), never real samples: none to count.
        assert fewest_real == 0, f"{name}: the evaluation reads no real 2D samples; declare a real minimum of 0"
        return
    if fewest_real:
        with pytest.raises(ConfigError, match=rf"{name} needs at least {fewest_real} real images, got "
                                              rf"{fewest_real - 1}") as refusal:
            evaluator(name, inputs, real=fewest_real - 1)
        assert "\n" not in str(refusal.value)


def test_a_metric_without_its_declarations_is_refused_where_it_registers():
    metrics = Registry("metric", injected=("inputs",), declares=METRICS.declares)
    with pytest.raises(TypeError, match="metric 'sharpness' must declare minimums, view when it registers"):
        metrics.register("sharpness", figures={"sharpness": "higher"})


def test_a_malformed_declaration_names_the_metric(monkeypatch):
    METRICS.names()  # the built-in metrics are registered first
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))

    def sharpness(inputs):
        """Mean gradient magnitude."""
        return {"sharpness": 0.0}

    METRICS.register("sharp", figures={"sharpness": "larger"}, minimums=(2, 0), view="main")(sharpness)
    METRICS.register("sharp2", figures={"sharpness": "higher"}, minimums=(2, 0), view="main", lpips=True)(sharpness)
    with pytest.raises(TypeError, match=r"metric 'sharp': figures must map .* to 'lower' or 'higher'"):
        declared("sharp")
    with pytest.raises(TypeError, match=r"metric 'sharp2' declares lpips, which metrics do not have"):
        declared("sharp2")
