"""Regularizers compute what their reference code computes, and the loop applies them as the
references do (weight, lazy interval, the image before augmentation), checked on networks whose
gradients are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import LinearD
from ganforge.distributed import Dist
from ganforge.losses import NonSaturating
from ganforge.regularizers import Regularizer
from ganforge.regularizers.augmentation import AdaptiveAugment
from ganforge.regularizers.discriminator import AuxiliaryClassifier
from ganforge.regularizers.generator import Orthogonal, PathLength, TopK
from ganforge.regularizers.penalties import R1
from ganforge.training.state import TrainState
from ganforge.training.steps import AugmentingD, Runtime, discriminator_step, generator_step


class Doubling(Regularizer):
    """An 'augmentation' that doubles D's input: a fixed linear map with a known Jacobian (2 I)."""

    def augment(self, x, gen, step):
        return 2.0 * x


class ConstantG(nn.Module):
    """G(z) = a learnable offset plus z's first coordinates: the fakes are known exactly."""

    latent_dim = 4

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(dim))

    def forward(self, z, labels=None):
        return z + self.offset


def make_step(D: nn.Module, G: nn.Module | None = None) -> tuple[TrainState, Runtime]:
    """A TrainState and Runtime around tiny networks; SGD with lr 0 so weights never move."""
    G = G or ConstantG()
    opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=0.0), torch.optim.SGD(D.parameters(), lr=0.0)
    state = TrainState(
        G, D, G, opt_g, opt_d, torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: 1.0),
        torch.optim.lr_scheduler.LambdaLR(opt_d, lambda s: 1.0), torch.amp.GradScaler("cpu", enabled=False),
        torch.amp.GradScaler("cpu", enabled=False), torch.zeros(1, 4), None,
    )
    import contextlib

    rt = Runtime(G, D, G, D, contextlib.nullcontext, Dist(), 1, 0, [torch.Generator()])
    return state, rt


def d_gradient(regularizers, update: int) -> torch.Tensor:
    """D's weight gradient after one discriminator step at D update `update`."""
    torch.manual_seed(0)
    D = LinearD(torch.tensor([0.3, -0.4, 0.5, 0.1]))
    state, rt = make_step(D)
    real = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    discriminator_step(state, rt, NonSaturating(), regularizers, real, None, d_update=update, phase=0)
    return D.w.grad.clone()


@pytest.mark.parametrize("every", [1, 4])
def test_loop_applies_lazy_r1_as_weight_times_every_through_the_augmentation(every):
    # D(x) = <w, x> seen through a doubling augmentation: the gradient of D(aug(x)) w.r.t. the image
    # before augmentation is 2w, so R1 = gamma/2 * ||2w||^2 = 2 gamma ||w||^2 and d/dw = 4 gamma w.
    # (Differentiating w.r.t. the augmented image, as ganforge did before, gives gamma w.)
    gamma = 0.7
    w = torch.tensor([0.3, -0.4, 0.5, 0.1])
    for update in range(2 * every):
        plain = d_gradient([("doubling", Doubling())], update)
        with_r1 = d_gradient([("doubling", Doubling()), ("r1", R1(weight=gamma, every=every))], update)
        expected = gamma * every * 4 * w if update % every == 0 else torch.zeros(4)
        assert torch.allclose(with_r1 - plain, expected, atol=1e-6), (update, with_r1 - plain, expected)


def test_r1_term_value_is_the_unweighted_penalty_and_loss_the_lazily_weighted_one():
    w = torch.tensor([3.0, 4.0])
    reg = R1(weight=0.5, every=16)
    x = torch.randn(5, 2)
    view = AugmentingD(LinearD(w), [("doubling", Doubling())], torch.Generator(), 0)
    logits = torch.zeros(5)
    term = reg.d_term(32, view, x, x, None, None, logits, logits, None)
    assert term.value.item() == pytest.approx(0.5 * 4 * 25)  # gamma/2 ||2w||^2 without gamma: 1/2 * 100
    assert term.loss.item() == pytest.approx(0.5 * 16 * 50)
    assert reg.d_term(33, view, x, x, None, None, logits, logits, None) is None


def _lazy_kinds() -> list[str]:
    """The penalties on D with a weight and an interval, whatever their module."""
    import inspect

    from ganforge.registry import REGULARIZERS

    def on_d(builder) -> bool:
        return any(getattr(builder, hook) is not getattr(Regularizer, hook) for hook in ("d_penalty", "d_term"))

    return [k for k in REGULARIZERS.names() if on_d(REGULARIZERS.get(k).builder)
            and {"weight", "every"} <= set(inspect.signature(REGULARIZERS.get(k).builder).parameters)]


@pytest.mark.parametrize("kind", _lazy_kinds())
def test_a_lazy_penalty_enters_the_loss_as_weight_times_every_times_its_value(kind):
    # StyleGAN2's lazy regularization: taken every k-th update with k times its weight, so that on
    # average it weighs what it would every update; nothing at the other updates.
    import inspect

    from ganforge.registry import REGULARIZERS

    builder = REGULARIZERS.get(kind).builder
    extra = {"fake_weight": 0.5} if "fake_weight" in inspect.signature(builder).parameters else {}
    reg = builder(weight=0.5, every=4, **extra)
    g = torch.Generator().manual_seed(0)
    D = LinearD(torch.randn(16, generator=g))
    real, fake = torch.randn(5, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    term = reg.d_term(8, D, real, fake, None, None, D(real), D(fake), torch.Generator().manual_seed(1))
    assert term is not None and term.value.item() > 0
    assert term.loss.item() == pytest.approx(0.5 * 4 * term.value.item(), rel=1e-6)
    assert reg.d_term(9, D, real, fake, None, None, D(real), D(fake), torch.Generator()) is None


def test_orthogonal_gradient_matches_biggan_pytorch_ortho():
    # BigGAN-PyTorch's utils.ortho adds strength * 2 (W W^T * (1 - I)) W to each weight's gradient.
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(5, 3, bias=False), nn.Linear(3, 4, bias=False))
    beta = 1e-2
    reg = Orthogonal(weight=beta)
    term = reg.g_term(0, G, None, None, None, torch.zeros(1), None)
    term.loss.backward()
    for layer in G:
        W = layer.weight.detach()
        expected = beta * 2 * ((W @ W.T) * (1 - torch.eye(len(W)))) @ W
        assert torch.allclose(layer.weight.grad, expected, atol=1e-7)


def test_ada_p_moves_by_batch_times_interval_over_500k_images():
    # StyleGAN2-ADA: adjust = sign(r_t - target) * batch * interval / (ada_kimg * 1000), ada_kimg = 500.
    ada = AdaptiveAugment(target=0.6, interval=4)
    for step in range(1, 5):
        ada.observe(torch.ones(64), step=step - 1)  # every real judged real: r_t = 1 > 0.6
        ada.after_step(step)
    assert float(ada.p) == pytest.approx(64 * 4 / 500_000)
    for step in range(5, 13):
        ada.observe(-torch.ones(64), step=step - 1)  # r_t = -1 < 0.6: p falls, clamped at 0
        ada.after_step(step)
    assert float(ada.p) == 0.0


def test_path_length_mean_starts_at_zero_and_moves_by_decay():
    # StyleGAN2's pl_mean starts at 0 and is lerped towards the batch's mean length by pl_decay.
    class Styles(nn.Module):
        def synthesis_with_styles(self, z, labels):
            w = z[:, None, :].expand(-1, 3, -1).clone().requires_grad_(True)  # (n, layers=3, dim)
            image = w[:, :, :1].sum(1).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)  # every pixel = sum of w[:, l, 0]
            return image, w

    reg = PathLength(decay=0.01, batch_shrink=1)
    z = torch.randn(6, 5)
    gen = torch.Generator().manual_seed(3)
    reg.g_penalty(Styles(), None, z, None, None, gen)
    noise = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(3)) / 4.0
    # d/dw[:, l, 0] of sum(image * noise) is the noise sum for each of the 3 layers; other entries 0.
    lengths = noise.flatten(1).sum(1).abs()  # sqrt(mean over layers of squared grads) = |noise sum|
    assert reg.mean.item() == pytest.approx(0.01 * lengths.mean().item(), rel=1e-5)


def test_top_k_decays_per_epoch_by_default():
    logits = torch.arange(100, dtype=torch.float32)
    reg = TopK(keep=0.5, decay=0.99)
    assert len(reg.g_logits(logits, step=10**6, epoch=0)) == 100  # steps alone do not shrink k
    assert len(reg.g_logits(logits, step=0, epoch=1)) == 99
    assert len(reg.g_logits(logits, step=0, epoch=30)) == int(100 * 0.99**30)  # 73.97: StudioGAN truncates
    assert len(reg.g_logits(logits, step=0, epoch=1000)) == 50  # never below nu x batch


def test_generator_step_passes_the_data_epoch_to_top_k():
    seen = []

    class Spy(Regularizer):
        def g_logits(self, fake_logits, step, epoch=0):
            seen.append(epoch)
            return fake_logits

    state, rt = make_step(LinearD(torch.ones(4)))
    generator_step(state, rt, NonSaturating(), [("spy", Spy())], None, torch.zeros(4, 4), phase=-1, epoch=7)
    assert seen == [7]


def test_ac_gan_generator_term_sees_augmented_fakes():
    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 3)

        def forward(self, x, labels=None):
            return x.sum(1)

        def classify(self, x):
            return self.head(x)

    torch.manual_seed(0)
    D = Classifier()
    fake, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    view = AugmentingD(D, [("doubling", Doubling())], torch.Generator(), 0)
    term = AuxiliaryClassifier(weight=1.0).g_term(0, None, view, None, labels, fake, None)
    expected = F.cross_entropy(D.classify(2.0 * fake), labels)
    assert term.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert not math.isclose(term.loss.item(), F.cross_entropy(D.classify(fake), labels).item(), rel_tol=1e-3)
