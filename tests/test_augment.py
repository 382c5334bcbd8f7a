"""StyleGAN2-ADA's augmentation pipeline (ganforge.augment.ada_augment): the identity at p = 0,
each op's rate and closed form, gradients, reflection padding and replay from the generator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ganforge import augment


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)  # the test inputs; the augmentations draw from their own generators


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_op(x: torch.Tensor, op: str, p: float | torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Run a single named op of the pipeline with probability p."""
    return augment.ada_augment_ops(x, (op,), p, gen(seed))


def changed(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per sample: does any value differ at all."""
    return (y != x).flatten(1).any(dim=1)


@pytest.mark.parametrize(("channels", "size"), [(1, 16), (3, 16), (3, 28)])
def test_p_zero_is_bit_identical(channels, size):
    x = torch.randn(16, channels, size, size)  # at 28, resampling at the pixel centres is not exact
    assert augment.ada_augment(x, 0.0, gen()) is x
    # A tensor p (as the regularizer keeps it, on the device) takes the full path: still exact.
    assert torch.equal(augment.ada_augment(x, torch.tensor(0.0), gen()), x)
    half = x.to(torch.bfloat16)
    assert torch.equal(augment.ada_augment(half, torch.tensor(0.0), gen()), half)


@pytest.mark.parametrize("op", augment.ADA_OPS)
def test_each_op_has_exact_gradients_and_changes_images_only_when_applied(op):
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    # Numerical against analytical Jacobian for one fixed draw of the op (at p = 1).
    assert torch.autograd.gradcheck(lambda t: one_op(t, op, 1.0, seed=3), (x,))
    batch = torch.rand(8, 3, 16, 16, requires_grad=True)
    y = one_op(batch, op, 1.0)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(batch.grad).all() and (batch.grad.flatten(1).abs().sum(dim=1) > 0).all()
    assert changed(y.detach(), batch.detach()).any()
    for p in (0.0, torch.tensor(0.0)):
        assert torch.equal(one_op(batch.detach(), op, p), batch.detach())


def test_grey_images_get_only_the_luma_ops():
    x = torch.rand(8, 1, 16, 16)
    for op in ("hue", "saturation"):  # the reference skips them for one channel
        assert torch.equal(one_op(x, op, 1.0), x)
    flipped = one_op(x, "lumaflip", 1.0)
    # The luma flip negates a grey image (up to the rounding of 1/3) or leaves it.
    negated = torch.tensor([torch.allclose(f, -s, rtol=1e-6, atol=0) for f, s in zip(flipped, x)])
    kept = torch.tensor([torch.equal(f, s) for f, s in zip(flipped, x)])
    assert (negated | kept).all() and negated.any() and kept.any()


# The probability that a sample is visibly changed when the op is applied (8 x 8 random images):
# a flip or luma flip is drawn half the time, a quarter turn of 1..3 three quarters of the time,
# and an integer shift rounds round(U(-1, 1)) to 0 in both axes a quarter of the time.
CHANGED_WHEN_APPLIED = {"xflip": 0.5, "rotate90": 0.75, "xint": 0.75, "lumaflip": 0.5}


@pytest.mark.parametrize("op", augment.ADA_OPS)
def test_each_op_applies_at_the_rate_p(op):
    p, n = 0.3, 4000
    x = torch.rand(n, 3, 8, 8)
    rate = changed(one_op(x, op, p, seed=11), x).double().mean().item()
    # Rotation runs twice with probability 1 - sqrt(1 - p) each: rotated at all with probability p.
    expected = p * CHANGED_WHEN_APPLIED.get(op, 1.0)
    assert abs(rate - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (rate, expected)


def test_a_tensor_p_draws_as_a_float_p():
    x = torch.rand(32, 3, 16, 16)
    assert torch.equal(augment.ada_augment(x, 0.4, gen(2)), augment.ada_augment(x, torch.tensor(0.4), gen(2)))


def test_xflip_mirrors_or_keeps_and_rotate90_gives_a_quarter_turn():
    x = torch.rand(32, 3, 16, 16)
    flipped = one_op(x, "xflip", 1.0)
    mirror = torch.tensor([torch.equal(f, s.flip(2)) for f, s in zip(flipped, x)])
    same = torch.tensor([torch.equal(f, s) for f, s in zip(flipped, x)])
    assert (mirror | same).all() and mirror.any() and same.any()
    turned = one_op(x, "rotate90", 1.0)
    quarters = [[k for k in range(4) if torch.equal(t, torch.rot90(s, k, dims=(1, 2)))] for t, s in zip(turned, x)]
    assert all(len(k) == 1 for k in quarters)
    assert {k[0] for k in quarters} == {0, 1, 2, 3}


def test_xint_moves_a_delta_by_whole_pixels_within_an_eighth():
    x = torch.zeros(200, 1, 16, 16)
    x[:, 0, 8, 8] = 1.0
    y = one_op(x, "xint", 1.0)
    assert torch.equal(y.flatten(1).sum(dim=1), torch.ones(200))  # no blur: one pixel of 1, zeros elsewhere
    assert torch.equal(y.flatten(1).amax(dim=1), torch.ones(200))
    where = y.flatten(1).argmax(dim=1)
    dy, dx = where // 16 - 8, where % 16 - 8
    assert dy.abs().max() == 2 and dx.abs().max() == 2  # round(0.125 * 16), reached
    assert ((dy != 0) | (dx != 0)).float().mean() > 0.8  # both rounded to 0 with probability 1/16


def test_translations_pad_by_reflection_about_the_edge_pixels():
    x = torch.rand(64, 3, 16, 16)
    y = one_op(x, "xint", 1.0)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")  # the reference's padding
    crops = torch.stack([padded[:, :, 2 - dy:18 - dy, 2 - dx:18 - dx] for dy in range(-2, 3) for dx in range(-2, 3)])
    matches = (crops == y).flatten(2).all(dim=2)  # (25 shifts, samples)
    assert (matches.sum(dim=0) == 1).all()


@pytest.mark.parametrize("ops", [("xfrac",), ("scale",), ("rotate",), ("aniso",), augment.PIPELINES["bg"]])
def test_geometric_ops_pad_without_zeros(ops):
    x = 0.5 + 0.5 * torch.rand(64, 3, 16, 16)
    y = augment.ada_augment_ops(x, ops, 1.0, gen(4))
    # Bilinear resampling of reflected pixels stays within the input's range: no zero border.
    assert y.min() >= 0.5 - 1e-6 and y.max() <= 1.0 + 1e-6
    assert changed(y, x).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_adds_one_constant_per_sample_with_std_0_2(channels):
    x = torch.rand(4000, channels, 8, 8)
    shift = (one_op(x, "brightness", 1.0) - x).flatten(1)
    assert (shift.amax(dim=1) - shift.amin(dim=1)).abs().max() < 1e-5
    assert shift[:, 0].std().item() == pytest.approx(0.2, abs=0.01)


def test_contrast_scales_each_sample_with_log2_std_0_5():
    x = 0.5 + torch.rand(4000, 3, 8, 8)
    ratio = (one_op(x, "contrast", 1.0) / x).flatten(1)
    assert (ratio.amax(dim=1) / ratio.amin(dim=1) - 1).abs().max() < 1e-5
    assert ratio[:, 0].log2().std().item() == pytest.approx(0.5, abs=0.02)


def test_hue_and_saturation_keep_luma_and_act_on_chroma():
    x = torch.rand(64, 3, 8, 8)
    luma, chroma = x.mean(dim=1, keepdim=True), x - x.mean(dim=1, keepdim=True)
    hue = one_op(x, "hue", 1.0)
    torch.testing.assert_close(hue.mean(dim=1, keepdim=True), luma)
    # A rotation about the grey axis keeps each pixel's chroma length.
    torch.testing.assert_close((hue - hue.mean(dim=1, keepdim=True)).norm(dim=1), chroma.norm(dim=1))
    saturated = one_op(x, "saturation", 1.0)
    torch.testing.assert_close(saturated.mean(dim=1, keepdim=True), luma)
    # Chroma scaled by one factor per sample (least squares fit, then the residual).
    new_chroma, chroma = (saturated - luma).flatten(1), chroma.flatten(1)
    factor = (new_chroma * chroma).sum(dim=1, keepdim=True) / chroma.square().sum(dim=1, keepdim=True)
    torch.testing.assert_close(new_chroma, factor * chroma)
    assert factor.log2().std() > 0.5  # the reference's log2 std is 1


def test_same_seed_same_output_and_the_stream_advances_alike_at_any_p():
    x = torch.rand(16, 3, 16, 16)
    assert torch.equal(augment.ada_augment(x, 0.7, gen(5)), augment.ada_augment(x, 0.7, gen(5)))
    assert not torch.equal(augment.ada_augment(x, 0.7, gen(5)), augment.ada_augment(x, 0.7, gen(6)))
    after = []
    for p in (0.1, 0.9):
        g = gen(5)
        augment.ada_augment(x, p, g)
        after.append(torch.rand(4, generator=g))
    assert torch.equal(after[0], after[1])


def test_r1_through_the_pipeline_has_exact_second_derivatives():
    # R1 differentiates D(augment(x)) with respect to x, then backpropagates through that gradient.
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: augment.ada_augment(t, 1.0, gen(7)).square(), (x,))


def autograd_nodes(t: torch.Tensor) -> set[str]:
    """The names of every node in the graph that produced `t`."""
    seen, names, stack = set(), set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        stack += [f for f, _ in node.next_functions]
    return names


@pytest.mark.parametrize("p", [torch.tensor(0.0), torch.tensor(0.7), 0.7], ids=["tensor0", "tensor0.7", "float0.7"])
def test_r1_through_the_pipeline_needs_no_second_derivative_from_torchs_grid_sample(p):
    # torch 2.11 has no derivative for grid_sampler_2d_backward: R1 through ADA crashed there at the
    # first step (p is a tensor, so the resampling runs even at p = 0). The gradient's graph must
    # resample through our own adjoint, whatever this torch offers.
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(augment.ada_augment(x, p, gen(9)).square().sum(), x, create_graph=True)
    names = autograd_nodes(grad)
    assert any("_GridSampleAdjoint" in n for n in names)
    assert not [n for n in names if n.startswith("GridSampler") or "NotImplemented" in n], sorted(names)
    (second,) = torch.autograd.grad(grad.square().sum(), x)
    assert torch.isfinite(second).all() and second.abs().sum() > 0


def test_the_resampling_and_its_adjoint_match_torch():
    # Forward as torch's grid_sample; backward (any order) as autograd through it, in float64.
    images = torch.rand(3, 2, 5, 7, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(3, 6, 4, 2, dtype=torch.float64) * 2.4 - 1.2  # some points outside: border padding
    ours = augment._GridSample.apply(images, grid)
    theirs = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(ours, theirs)
    assert torch.autograd.gradcheck(lambda t: augment._GridSample.apply(t, grid), (images,))
    assert torch.autograd.gradgradcheck(lambda t: augment._GridSample.apply(t, grid).square(), (images,))
    with pytest.raises(ValueError, match="grid"):
        augment._GridSample.apply(images, grid.clone().requires_grad_())


def test_low_precision_input_keeps_its_dtype():
    x = torch.rand(8, 3, 16, 16)
    y = augment.ada_augment(x.to(torch.bfloat16), 0.8, gen(8))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), augment.ada_augment(x, 0.8, gen(8)), atol=0.05, rtol=0.02)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="bgc"):
        augment.ada_augment(torch.rand(2, 3, 8, 8), 0.5, gen(), pipeline="bgcfnc")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        augment.ada_augment(torch.rand(2, 4, 8, 8), 0.5, gen())
    with pytest.raises(ValueError, match="xflip"):
        augment.ada_augment_ops(torch.rand(2, 3, 8, 8), ("cutout",), 0.5, gen())
