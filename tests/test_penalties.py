"""Penalties through D's input gradients, on a discriminator whose input gradient differs from
point to point, so that a penalty taken at the wrong points (R1 on fakes, WGAN-GP at the reals)
gives a different number. Each value is compared with a hand computation at the points the
reference takes it: R1 at the reals, R2 at the fakes, WGAN-GP at real-fake interpolates, DRAGAN
at reals jittered by up to half their standard deviation (PyTorch-StudioGAN's `cal_dra_penalty`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.regularizers.discriminator import Consistency
from ganforge.regularizers.generator import PathLength
from ganforge.regularizers.penalties import DRAGAN, R1, R2, GradientPenalty


class QuadraticD(nn.Module):
    """D(x) = 1/2 sum(a x^2) + sum(b x): its input gradient a x + b is known in closed form and
    differs between any two inputs. Keeps the inputs it was called with."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.rand(shape, generator=g) + 0.5)
        self.b = nn.Parameter(0.8 + 0.2 * torch.randn(shape, generator=g))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, labels=None):
        self.inputs.append(x.detach().clone())
        return (0.5 * self.a * x**2 + self.b * x).flatten(1).sum(1)

    def gradient_norms(self, x: torch.Tensor) -> torch.Tensor:
        """||dD/dx|| per sample, by the closed form."""
        return (self.a * x + self.b).detach().flatten(1).norm(dim=1)


SHAPE = (1, 4, 4)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Reals around +1 and fakes around -1: their gradient norms under QuadraticD differ."""
    g = torch.Generator().manual_seed(1)
    real = 1.0 + 0.5 * torch.randn(8, *SHAPE, generator=g)
    fake = -1.0 + 0.3 * torch.randn(8, *SHAPE, generator=g)
    return real, fake


def half_mean_square(norms: torch.Tensor) -> float:
    return 0.5 * norms.pow(2).mean().item()


def unit_distance(norms: torch.Tensor) -> float:
    return (norms - 1).pow(2).mean().item()


def test_the_discriminator_tells_the_points_apart():
    # Otherwise the tests below could not tell a penalty at the reals from one at the fakes.
    D, (real, fake) = QuadraticD(SHAPE), batch()
    values = [half_mean_square(D.gradient_norms(x)) for x in (real, fake, (real + fake) / 2)]
    low, middle, high = sorted(values)
    assert middle > 1.5 * low and high > 1.5 * middle


def test_r1_is_half_the_mean_squared_gradient_norm_at_the_reals():
    D, (real, fake) = QuadraticD(SHAPE), batch()
    value = R1().d_penalty(D, real, fake, None, None, None)
    [seen] = D.inputs
    assert torch.equal(seen, real)
    assert value.item() == pytest.approx(half_mean_square(D.gradient_norms(real)), rel=1e-5)


def test_r2_is_half_the_mean_squared_gradient_norm_at_the_fakes():
    D, (real, fake) = QuadraticD(SHAPE), batch()
    value = R2().d_penalty(D, real, fake, None, None, None)
    [seen] = D.inputs
    assert torch.equal(seen, fake)
    assert value.item() == pytest.approx(half_mean_square(D.gradient_norms(fake)), rel=1e-5)


def test_gradient_penalty_is_taken_at_interpolates_between_each_real_and_its_fake():
    D, (real, fake) = QuadraticD(SHAPE), batch()
    value = GradientPenalty().d_penalty(D, real, fake, None, None, torch.Generator().manual_seed(2))
    [x_hat] = D.inputs
    # Each sample lies on the segment from its real to its fake, at its own uniform position.
    direction = (fake - real).flatten(1)
    alpha = ((x_hat - real).flatten(1) * direction).sum(1) / direction.pow(2).sum(1)
    on_segment = real + alpha.view(-1, 1, 1, 1) * (fake - real)
    torch.testing.assert_close(x_hat, on_segment, rtol=0, atol=1e-5)
    assert (alpha > 0).all() and (alpha < 1).all() and alpha.std() > 0.1
    assert value.item() == pytest.approx(unit_distance(D.gradient_norms(x_hat)), rel=1e-5)
    # The figure at the interpolates is not the figure at the reals or the fakes.
    for other in (real, fake):
        assert abs(unit_distance(D.gradient_norms(other)) - value.item()) > 0.1 * value.item()


def test_dragan_is_taken_at_reals_jittered_by_up_to_half_their_standard_deviation():
    D, (real, fake) = QuadraticD(SHAPE), batch()
    value = DRAGAN().d_penalty(D, real, fake, None, None, torch.Generator().manual_seed(3))
    [x_tilde] = D.inputs
    # StudioGAN: x + alpha * 0.5 * std(x) * U(0, 1), alpha ~ U(0, 1) per sample, std over the batch.
    jitter = x_tilde - real
    scale = 0.5 * real.std().item()
    assert jitter.min() >= 0 and jitter.max() <= scale * (1 + 1e-5)
    assert jitter.max() > 0.5 * scale  # the scale is half the std, not a fraction of it
    per_sample = jitter.flatten(1).amax(1)
    assert per_sample.std() > 0.05 * scale  # each sample has its own alpha
    assert value.item() == pytest.approx(unit_distance(D.gradient_norms(x_tilde)), rel=1e-5)
    assert abs(unit_distance(D.gradient_norms(real)) - value.item()) > 0.05 * value.item()


def test_consistency_mirrors_as_well_as_translates():
    # At 4x4 pixels a translation by 1/8 of the size moves nothing, so only bCR's flip changes
    # the images. D(x) = <w, x> with w odd under the mirror: D(flip x) = -D(x), and every image is
    # made to have D(x) = 1. A sample that is flipped adds (1 - (-1))^2 = 4 to the sum, one that
    # is not adds 0: each term is 4 x the fraction flipped, about half (probability 1/2).
    w = torch.tensor([-1.5, -0.5, 0.5, 1.5]).expand(1, 4, 4)
    D = lambda x, labels=None: (x * w).flatten(1).sum(1)  # noqa: E731
    g = torch.Generator().manual_seed(4)
    symmetric = torch.randn(64, 1, 4, 4, generator=g)
    symmetric = symmetric + symmetric.flip(-1)  # D(symmetric) = 0
    images = symmetric + w / w.pow(2).sum()
    torch.testing.assert_close(D(images), torch.ones(64))
    real_term, fake_term = Consistency().terms(D, images, images, None, None, g)
    for term in (real_term.item(), fake_term.item()):
        flipped = term / 4 * 64
        assert flipped == pytest.approx(round(flipped), abs=1e-3)  # a whole number of flipped images
        assert 16 <= round(flipped) <= 48


def test_consistency_weights_its_real_and_fake_terms_apart():
    D = QuadraticD((1, 8, 8))
    real, fake = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    reg = Consistency(weight=2.0, fake_weight=5.0, every=3)
    real_term, fake_term = reg.terms(D, real, fake, None, None, torch.Generator().manual_seed(0))
    term = reg.d_term(0, D, real, fake, None, None, None, None, torch.Generator().manual_seed(0))
    assert term.loss.item() == pytest.approx(3 * (2.0 * real_term.item() + 5.0 * fake_term.item()), rel=1e-6)
    assert term.value.item() == pytest.approx(real_term.item() + fake_term.item(), rel=1e-6)
    assert real_term.item() > 0 and fake_term.item() > 0
    assert reg.d_term(1, D, real, fake, None, None, None, None, None) is None  # lazy


def test_path_length_runs_on_a_shrunk_batch():
    # StyleGAN2-ADA: pl_batch_shrink 2 runs the penalty on half of G's batch.
    sizes = []

    class Styles(nn.Module):
        def synthesis_with_styles(self, z, labels):
            sizes.append(len(z))
            w = z[:, None, :].expand(-1, 2, -1).clone().requires_grad_(True)
            return w.sum((1, 2)).view(-1, 1, 1, 1).expand(-1, 1, 4, 4), w

    PathLength().g_penalty(Styles(), None, torch.randn(8, 3), None, None, torch.Generator().manual_seed(0))
    PathLength(batch_shrink=4).g_penalty(Styles(), None, torch.randn(8, 3), None, None, None)
    assert sizes == [4, 2]
