"""Every registered component on tiny CPU models: shapes, gradients, hand-computed values."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import LinearD, tiny_config
from ganforge.build import build_discriminator, build_generator
from ganforge.config import Component
from ganforge.data import DataInfo
from ganforge.errors import ConfigError
from ganforge.losses import Hinge, LeastSquares, Minimax, NonSaturating, Wasserstein
from ganforge.registry import DISCRIMINATORS, GENERATORS, LOSSES, REGULARIZERS, SCHEDULES, Entry, Registry
from ganforge.regularizers.penalties import R1, GradientPenalty


def data_for(*entries: Entry) -> list[DataInfo]:
    """Data every one of `entries` accepts: vectors (plain, and labelled), and images (grey and RGB,
    labelled and not) at the four smallest sides they all take."""
    candidates = [DataInfo("vec", (2,)), DataInfo("vec", (5,), num_classes=3)]
    sides = [side for side in range(8, 257) if all(e.accepts.takes_resolution(side) for e in entries)][:4]
    candidates += [DataInfo("img", (c, r, r), n) for (c, n), r in zip(((1, 0), (3, 10), (3, 0), (1, 0)), sides)]
    return [info for info in candidates if all(e.accepts.problem(info) is None for e in entries)]


def make(registry: Registry, kind: str, info: DataInfo) -> nn.Module:
    """`kind` built with its declared tiny settings for `info` (conditional where the data have labels)."""
    params = registry.tiny(kind)
    if "conditional" in inspect.signature(registry.get(kind).builder).parameters:
        params["conditional"] = info.num_classes > 0
    build = build_generator if registry is GENERATORS else build_discriminator
    return build(Component(kind, params), info)


# Every generator with every discriminator that takes some of the same data.
PAIRS = [(g.name, d.name) for g in GENERATORS.entries() for d in DISCRIMINATORS.entries() if data_for(g, d)]


def test_sweep_covers_every_architecture():
    assert {g for g, _ in PAIRS} == set(GENERATORS.names())
    assert {d for _, d in PAIRS} == set(DISCRIMINATORS.names())


@pytest.mark.parametrize(("g_kind", "d_kind"), PAIRS)
def test_every_generator_discriminator_pair(g_kind, d_kind):
    torch.manual_seed(0)
    output_range = GENERATORS.get(g_kind).properties["output_range"]  # declared where G is registered
    for info in data_for(GENERATORS.get(g_kind), DISCRIMINATORS.get(d_kind)):
        G = make(GENERATORS, g_kind, info)
        D = make(DISCRIMINATORS, d_kind, info)
        z = torch.randn(3, G.latent_dim)
        labels = torch.arange(3) % info.num_classes if info.num_classes else None
        fake = G(z, labels)
        assert fake.shape == (3, *info.shape)
        if info.is_image and output_range is not None:
            assert output_range[0] <= fake.min() and fake.max() <= output_range[1], (info, fake.aminmax())
        logits = D(fake, labels)
        assert logits.shape == (3,)
        logits.mean().backward()
        for net in (G, D):
            grads = [p.grad for p in net.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert any(g.abs().sum() > 0 for g in grads)


def test_dcgan_widths_follow_resolution():
    G = build_generator(Component("dcgan", {"latent_dim": 100, "base_width": 64, "max_width": 512, "norm": "batch"}),
                        DataInfo("x", (3, 64, 64)))
    convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    # The DCGAN paper's 64x64 generator: 100 -> 512 -> 256 -> 128 -> 64 -> 3.
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    with pytest.raises(Exception, match="needs images of 16 to 128 px"):
        build_generator(Component("dcgan", {"latent_dim": 8, "base_width": 4, "max_width": 8, "norm": "batch"}),
                        DataInfo("x", (3, 48, 48)))


# -- losses ---------------------------------------------------------------------------------


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize(
    ("loss", "d_expected", "g_expected"),
    [
        # real logits [2, -1], fake logits [0.5, -3]
        pytest.param(NonSaturating(), (sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2, (sp(-0.5) + sp(3)) / 2,
                     id="non_saturating"),
        pytest.param(Minimax(), (sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2, -(sp(0.5) + sp(-3)) / 2, id="minimax"),
        pytest.param(Hinge(), (0 + 2) / 2 + (1.5 + 0) / 2, -(0.5 - 3) / 2, id="hinge"),
        pytest.param(Wasserstein(), (0.5 - 3) / 2 - (2 - 1) / 2, -(0.5 - 3) / 2, id="wasserstein"),
        pytest.param(LeastSquares(), 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.25 + 9) / 2,
                     0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2, id="least_squares"),
    ],
)
def test_losses_on_hand_computed_values(loss, d_expected, g_expected):
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    assert loss.d_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-6)
    assert loss.g_loss(fake, real).item() == pytest.approx(g_expected, rel=1e-6)


@pytest.mark.parametrize("kind", LOSSES.names())
def test_every_loss_pushes_d_and_g_the_right_way(kind):
    """At neutral logits D's loss falls as its real logits rise and its fake logits fall, and G's
    loss falls as its fake logits rise; both are finite scalars."""
    loss = LOSSES.get(kind).builder()
    real, fake = torch.full((4,), 0.25, requires_grad=True), torch.full((4,), 0.25, requires_grad=True)
    d = loss.d_loss(real, fake)
    assert d.shape == () and torch.isfinite(d)
    d.backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all(), (real.grad, fake.grad)
    fake.grad = None
    g = loss.g_loss(fake, real.detach())
    assert g.shape == () and torch.isfinite(g)
    g.backward()
    assert (fake.grad < 0).all(), fake.grad


# What each declared loss shape promises, on logits real [2, -1] and fake [0.5, -3].
SHAPE_CONTRACTS = {
    # sigmoid cross-entropy on raw logits: D's loss is -log sigmoid(r) - log(1 - sigmoid(f))
    "bce": lambda loss, r, f: loss.d_loss(r, f).item() == pytest.approx(
        (F.softplus(-r).mean() + F.softplus(f).mean()).item()),
    # a margin: zero once reals score above 1 and fakes below -1
    "margin": lambda loss, r, f: loss.d_loss(r.abs() + 1, -f.abs() - 1).item() == 0,
    # an unbounded critic: D's loss falls without limit as the scores part
    "critic": lambda loss, r, f: loss.d_loss(r + 100, f - 100).item() < loss.d_loss(r, f).item() - 100,
    # squares to the targets 1 (real) and 0 (fake)
    "least_squares": lambda loss, r, f: loss.d_loss(torch.ones(2), torch.zeros(2)).item() == 0,
    # reads only the difference of real and fake logits
    "relativistic": lambda loss, r, f: loss.d_loss(r + 7, f + 7).item() == pytest.approx(loss.d_loss(r, f).item()),
}


@pytest.mark.parametrize("kind", LOSSES.names())
def test_every_loss_keeps_its_declared_shape(kind):
    shape = LOSSES.get(kind).properties["shape"]  # declared where the loss is registered
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    assert SHAPE_CONTRACTS[shape](LOSSES.get(kind).builder(), real, fake), (kind, shape)


@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_loss_with_the_regularizers_that_declare_loss_shapes(loss):
    """A regularizer that declares the loss shapes it works with is refused, naming both, with a
    loss of another shape, and accepted with one of its shapes."""
    from ganforge.build import build_regularizers
    from ganforge.config import parse_config

    shape = LOSSES.get(loss).properties["shape"]
    limited = [e for e in REGULARIZERS.entries() if e.properties.get("loss_shapes") is not None]
    assert limited  # label_smoothing declares them
    for entry in limited:
        cfg = parse_config(tiny_config("unused", loss={"kind": loss}, regularizers=[{"kind": entry.name}]))
        if shape in entry.properties["loss_shapes"]:
            assert [kind for kind, _ in build_regularizers(cfg)] == [entry.name]
        else:
            with pytest.raises(ConfigError, match=f"{entry.name} works with .* not {loss} \\({shape}\\)"):
                build_regularizers(cfg)


# -- regularizers --------------------------------------------------------------------------


def test_gradient_penalty_is_zero_for_unit_norm_gradients_and_grows_otherwise():
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    w = torch.randn(16)
    unit = LinearD(w / w.norm())
    assert GradientPenalty().d_penalty(unit, real, fake, None, None, None).item() == pytest.approx(0.0, abs=1e-10)
    doubled = LinearD(2 * w / w.norm())
    penalty = GradientPenalty().d_penalty(doubled, real, fake, None, None, None)
    assert penalty.item() == pytest.approx(1.0, rel=1e-5)  # (||2u|| - 1)^2 = 1
    penalty.backward()  # differentiable w.r.t. D's weights (double backprop)
    assert doubled.w.grad is not None and doubled.w.grad.norm() > 0


def test_r1_is_half_the_squared_gradient_norm_on_reals():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5
    reg = R1(weight=10.0, every=4)
    value = reg.d_penalty(LinearD(w), torch.randn(5, 2), torch.randn(5, 2), None, None, None)
    assert value.item() == pytest.approx(0.5 * 25.0)
    assert reg.weight == 10.0 and reg.every == 4


# -- schedules -----------------------------------------------------------------------------


def factors(kind: str, total: int, **params):
    fn = SCHEDULES.get(kind).builder(total_steps=total, **params)
    return [fn(s) for s in range(total + 1)]


def test_schedules_on_hand_computed_values():
    assert factors("constant", 4) == [1.0] * 5
    assert factors("constant", 4, warmup_steps=2) == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert factors("linear_decay", 4) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert factors("linear_decay", 4, start=0.5, final=0.5) == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.5])
    assert factors("cosine", 4) == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                  (1 + math.cos(3 * math.pi / 4)) / 2, 0.0])
    warm = factors("cosine", 6, warmup_steps=2, final=0.1)
    assert warm[0] == pytest.approx(0.5) and warm[1] == pytest.approx(1.0) and warm[6] == pytest.approx(0.1)


def test_scheduler_sets_optimizer_lr():
    from ganforge.build import build_optimizer, build_scheduler

    model = nn.Linear(2, 2)
    opt = build_optimizer(Component("adam", {"lr": 0.1, "betas": (0.5, 0.999), "weight_decay": 0.0, "eps": 1e-8}),
                          model, "optim.g")
    sched = build_scheduler(Component("linear_decay", {"warmup_steps": 0, "start": 0.0, "final": 0.0}), opt, 10,
                            "schedule.g")
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1 * (1 - s / 10) for s in range(10)])


@pytest.mark.parametrize("kind", ["adam", "adamw", "rmsprop"])
def test_optimizers_build_and_step(kind):
    from ganforge.build import build_optimizer
    from ganforge.config import component_params
    from ganforge.registry import OPTIMIZERS

    entry = OPTIMIZERS.get(kind)
    params = {p.name: p.default for p in component_params(entry.builder, OPTIMIZERS.injected)}
    model = nn.Linear(3, 1)
    opt = build_optimizer(Component(kind, params), model, "optim.g")
    before = model.weight.detach().clone()
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)
