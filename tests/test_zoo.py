"""The component zoo: every regularizer and loss on hand-computed numbers or a property only a
correct implementation has; architectures, conditioning and shipped configs on tiny CPU runs."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import CONFIGS, LinearD, assert_one_line_error, run_cli, tiny_config, tiny_overrides, write_config
from ganforge import augment
from ganforge.config import Component, load_config
from ganforge.losses import RelativisticAverage
from ganforge.registry import DISCRIMINATORS, GENERATORS, REGULARIZERS, SCHEDULES
from ganforge.regularizers.augmentation import AdaptiveAugment, InstanceNoise
from ganforge.regularizers.discriminator import LabelSmoothing, LeCam
from ganforge.regularizers.generator import Orthogonal, TopK
from ganforge.regularizers.networks import WeightClipping, apply_spectral_norm
from ganforge.regularizers.penalties import DRAGAN, R2

# -- losses ------------------------------------------------------------------------------------


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_relativistic_average_on_hand_computed_values():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    mr, mf = 0.5, -1.25
    loss = RelativisticAverage()
    d = (sp(-(2 - mf)) + sp(-(-1 - mf))) / 2 + (sp(0.5 - mr) + sp(-3 - mr)) / 2
    g = (sp(-(0.5 - mr)) + sp(-(-3 - mr))) / 2 + (sp(2 - mf) + sp(-1 - mf)) / 2
    assert loss.d_loss(real, fake).item() == pytest.approx(d, rel=1e-6)
    assert loss.g_loss(fake, real).item() == pytest.approx(g, rel=1e-6)
    assert loss.g_needs_real


# -- gradient penalties ------------------------------------------------------------------------


def test_r2_and_dragan_on_a_linear_discriminator():
    w = torch.tensor([3.0, 4.0])
    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    assert R2().d_penalty(LinearD(w), real, fake, None, None, None).item() == pytest.approx(12.5)
    unit = LinearD(w / 5)
    gen = torch.Generator().manual_seed(0)
    assert DRAGAN().d_penalty(unit, real, fake, None, None, gen).item() == pytest.approx(0.0, abs=1e-10)
    assert DRAGAN().d_penalty(LinearD(w), real, fake, None, None, gen).item() == pytest.approx(16.0)


def test_spectral_norm_makes_the_largest_singular_value_one():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.Conv2d(3, 8, 3), nn.Embedding(10, 6))
    apply_spectral_norm(net)
    x = torch.randn(4, 20)
    for _ in range(30):  # power iterations run in training-mode forwards
        net[0](x)
        net[1](torch.randn(2, 3, 5, 5))
        net[2](torch.arange(4))
    for layer in net:
        sigma = torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)


# -- augmentation ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(augment.OPERATIONS))
def test_augmentations_keep_shape_and_let_gradients_through(op):
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    y = augment.OPERATIONS[op](x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_shifts_whole_pixels_and_cutout_removes_a_quarter():
    x = torch.ones(200, 1, 16, 16)
    cut = augment.cutout(x, torch.Generator().manual_seed(0))
    kept = cut.mean(dim=(1, 2, 3))
    # An 8x8 hole (a quarter) when fully inside, less at the borders.
    assert kept.min() >= 0.75 - 1e-6 and (kept == 0.75).float().mean() > 0.2
    ramp = torch.arange(16.0).view(1, 1, 1, 16).expand(50, 1, 16, 16)
    moved = augment.translation(ramp, torch.Generator().manual_seed(2))
    row = moved[:, 0, 8]
    # Every sample is the ramp shifted by an integer d in [-2, 2], zeros shifted in.
    for sample in row:
        shifts = [d for d in range(-2, 3) if torch.equal(sample, torch.where(
            (torch.arange(16) - d >= 0) & (torch.arange(16) - d < 16), (torch.arange(16) - d).float(),
            torch.zeros(16)))]
        assert len(shifts) == 1


def test_diffaugment_uses_the_step_noise_stream():
    x = torch.randn(4, 3, 8, 8)
    a = augment.diff_augment(x, ["color", "translation", "cutout"], torch.Generator().manual_seed(5))
    b = augment.diff_augment(x, ["color", "translation", "cutout"], torch.Generator().manual_seed(5))
    c = augment.diff_augment(x, ["color", "translation", "cutout"], torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ada_probability_follows_the_sign_of_d_on_reals_and_is_saved():
    steps = {}

    def train_step(ada, logits):
        ada.observe(logits, 0)
        steps[ada] = steps.get(ada, 0) + 1
        ada.after_step(steps[ada])

    ada = AdaptiveAugment(target=0.6, interval=2, speed_images=100)
    confident = torch.ones(10)  # E[sign D(real)] = 1 > 0.6: overfitting, more augmentation
    for _ in range(4):
        train_step(ada, confident)
    assert float(ada.p) == pytest.approx(0.4)  # two adjustments of 2 x 10 / 100
    for _ in range(2):
        train_step(ada, -confident)
    assert float(ada.p) == pytest.approx(0.2)
    # Micro-batches: two observations in one step count as one step of 20 images.
    ada.observe(confident[:5], 0)
    ada.observe(confident[:5], 0)
    steps[ada] += 1
    ada.after_step(steps[ada])
    # A checkpoint between adjustments carries the running sums: the next adjustment is the same.
    restored = AdaptiveAugment(target=0.6, interval=2, speed_images=100)
    restored.load_state_dict(ada.state_dict())
    steps[restored] = steps[ada]
    assert float(restored.p) == pytest.approx(0.2)
    for a in (ada, restored):
        train_step(a, -confident)  # mean sign (10 - 10) / 20 = 0 < 0.6: down by 20 / 100
    assert float(ada.p) == float(restored.p) == pytest.approx(0.0)
    x = torch.randn(1000, 1, 8, 8)
    untouched = AdaptiveAugment(policy=["xflip"])  # p = 0: the identity
    assert torch.equal(untouched.augment(x, torch.Generator().manual_seed(0), 0), x)


def test_instance_noise_anneals_to_nothing():
    reg = InstanceNoise(std=0.5, anneal_steps=100)
    x = torch.zeros(20000, 1)
    gen = torch.Generator().manual_seed(0)
    assert reg.augment(x, gen, 0).std().item() == pytest.approx(0.5, rel=0.03)
    assert reg.augment(x, gen, 50).std().item() == pytest.approx(0.25, rel=0.03)
    assert torch.equal(reg.augment(x, gen, 100), x)


# -- terms on D's outputs ----------------------------------------------------------------------


def test_label_smoothing_equals_bce_with_a_soft_target():
    real, fake = torch.tensor([1.5, -0.3, 0.7]), torch.tensor([0.2, -2.0, 1.0])
    from ganforge.losses import NonSaturating

    smoothed = NonSaturating().d_loss(real, fake) + LabelSmoothing(0.9).d_outputs(real, fake)
    expected = F.binary_cross_entropy_with_logits(real, torch.full_like(real, 0.9)) + \
        F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    assert smoothed.item() == pytest.approx(expected.item(), rel=1e-6)


def test_lecam_on_hand_computed_values():
    reg = LeCam(weight=0.3, decay=0.9, start=0)
    reg.after_step(1)  # the term starts once more than `start` steps are done
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    # First call: anchors are the means, 1.0 (real) and 0.0 (fake).
    value = reg.d_outputs(real, fake)
    expected = ((2 - 0) ** 2 + 0) / 2 + ((1 - (-1)) ** 2 + 0) / 2
    assert value.item() == pytest.approx(expected)
    reg.d_outputs(torch.tensor([4.0, 4.0]), torch.tensor([0.0, 0.0]))
    assert reg.anchor_real.item() == pytest.approx(0.9 * 1.0 + 0.1 * 4.0)


def test_top_k_keeps_the_best_rated_fakes_and_decays():
    reg = TopK(keep=0.5, decay=0.5, interval=10)
    logits = torch.tensor([0.1, 3.0, -1.0, 2.0])
    assert torch.equal(reg.g_logits(logits, 0), logits)  # fraction 1 at first
    assert sorted(reg.g_logits(logits, 10).tolist()) == [2.0, 3.0]  # 0.5
    assert sorted(reg.g_logits(logits, 1000).tolist()) == [2.0, 3.0]  # never below keep


def test_orthogonal_regularization_is_zero_for_orthonormal_rows():
    G = nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        G.weight.copy_(torch.linalg.qr(torch.randn(8, 4))[0].T)
    fake = torch.zeros(1)
    assert Orthogonal().g_penalty(G, None, None, None, fake, None).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        G.weight[1] = G.weight[0]
    assert Orthogonal().g_penalty(G, None, None, None, fake, None).item() > 0.5


def test_weight_clipping_clamps_every_weight():
    D = nn.Linear(5, 3)
    with torch.no_grad():
        D.weight.mul_(100)
    WeightClipping(0.01).after_d_step(D)
    assert all(p.abs().max() <= 0.01 for p in D.parameters())


def test_consistency_is_zero_for_an_invariant_discriminator():
    from ganforge.regularizers.discriminator import Consistency

    class Constant(nn.Module):
        def forward(self, x, labels=None):
            return x.new_ones(len(x)) * 3

    class Corner(nn.Module):
        def forward(self, x, labels=None):
            return x[:, 0, 0, 0] * 5

    reg = Consistency()
    x = torch.randn(8, 1, 8, 8)
    gen = torch.Generator().manual_seed(0)
    assert reg.d_penalty(Constant(), x, x, None, None, gen).item() == 0.0
    assert reg.d_penalty(Corner(), x, x, None, None, gen).item() > 0.0


def test_path_length_penalty_on_stylegan2():
    from ganforge.models.stylegan2 import StyleGAN2Generator
    from ganforge.regularizers.generator import PathLength

    torch.manual_seed(0)
    G = StyleGAN2Generator(1, 8, latent_dim=8, w_dim=8, mapping_layers=1, channel_base=32, channel_max=8,
                           style_mixing=1.0)
    reg = PathLength(batch_shrink=1)
    reg.setup(G, None)
    z = torch.randn(4, 8)
    first = reg.g_penalty(G, None, z, None, None, torch.Generator().manual_seed(0))
    assert torch.isfinite(first) and reg.mean is not None and reg.mean > 0
    first.backward()
    assert G.mapping.fc0.weight.grad is not None
    # Its pass is G's training pass, as StyleGAN2-ADA's run_G: the styles are mixed (here always).
    _, ws = G.synthesis_with_styles(z, None)
    assert not torch.equal(ws[:, 0], ws[:, -1]) and torch.equal(ws[:, 0], G.mapping_w(z, None))


# -- combinations and registry -------------------------------------------------------------------


@pytest.mark.parametrize(("regularizers", "loss", "fragments"), [
    ([{"kind": "weight_clipping"}, {"kind": "gradient_penalty"}], "wasserstein",
     ["weight_clipping cannot be combined with regularizer gradient_penalty"]),
    ([{"kind": "label_smoothing"}], "hinge", ["label_smoothing works with bce-shaped losses", "not hinge (margin)"]),
    ([{"kind": "label_smoothing"}], "relativistic_average",
     ["label_smoothing works with bce-shaped losses", "not relativistic_average (relativistic)"]),
    ([{"kind": "diffaugment"}, {"kind": "ada"}], "non_saturating", ["diffaugment cannot be combined with"]),
    ([{"kind": "path_length"}], "non_saturating", ["path_length works with the stylegan2 generator only"]),
    ([{"kind": "ac_gan"}], "non_saturating", ["ac_gan needs a discriminator with an auxiliary classifier"]),
    ([{"kind": "r1"}, {"kind": "r1"}], "non_saturating", ["r1 is listed twice"]),
])
def test_invalid_combinations_are_config_errors_naming_both(tmp_path, regularizers, loss, fragments):
    cfg = tiny_config(tmp_path / "run", regularizers=regularizers, loss={"kind": loss})
    result = run_cli("config", str(write_config(tmp_path, cfg)))
    assert_one_line_error(result, 2, *fragments)


def test_step_and_exponential_schedules():
    step = SCHEDULES.get("step").builder(total_steps=100, every=30, gamma=0.5)
    assert [step(s) for s in (0, 29, 30, 61, 90)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    exp = SCHEDULES.get("exponential").builder(total_steps=100, final=0.01)
    assert exp(0) == 1.0 and exp(50) == pytest.approx(0.1) and exp(100) == pytest.approx(0.01)
    warm = SCHEDULES.get("exponential").builder(total_steps=100, warmup_steps=4, final=0.01)
    assert warm(1) == pytest.approx(0.5 * 0.01 ** 0.01)


def test_ema_ramp_up_shortens_the_horizon_early():
    from ganforge.training.steps import EMA

    ema = EMA(nn.Linear(1, 1), nn.Linear(1, 1), decay=0.999, start=0, rampup=0.05)
    half_life = math.log(0.5) / math.log(0.999)  # ~693 steps
    assert ema.decay_at(100) == pytest.approx(0.5 ** (1 / 5))  # horizon 0.05 x 100 = 5 steps
    assert ema.decay_at(10**6) == pytest.approx(0.5 ** (1 / half_life))


# -- architectures, conditioning ------------------------------------------------------------------


@pytest.mark.parametrize("kind", [kind for kind in GENERATORS.names() if kind in DISCRIMINATORS
                                  and "conditional" in inspect.signature(GENERATORS.get(kind).builder).parameters])
def test_conditional_architectures_use_the_labels(kind):
    from ganforge.build import build_discriminator, build_generator
    from ganforge.data import DataInfo

    info = DataInfo("x", (1, 16, 16), num_classes=10)
    g = {**GENERATORS.tiny(kind), "conditional": True}
    d = {**DISCRIMINATORS.tiny(kind), "conditional": True}
    torch.manual_seed(0)
    G, D = build_generator(Component(kind, g), info).eval(), build_discriminator(Component(kind, d), info)
    with torch.no_grad():  # as after some training: conditional gains start at zero (plain BN)
        for p in [*G.parameters(), *D.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
    assert G.num_classes == 10
    z = torch.randn(3, G.latent_dim)
    a, b = G(z, torch.tensor([0, 0, 0])), G(z, torch.tensor([5, 5, 5]))
    assert a.shape == (3, 1, 16, 16) and not torch.allclose(a, b)  # the class changes the image
    assert not torch.allclose(D(a, torch.tensor([0, 0, 0])), D(a, torch.tensor([5, 5, 5])))
    with pytest.raises(ValueError, match="conditional"):
        G(z, None)


def test_conditional_needs_labelled_data(tmp_path):
    cfg = tiny_config(tmp_path / "run", data={"kind": "image_folder", "path": str(tmp_path)},
                      generator={"kind": "resnet", "conditional": True, "base_width": 4, "max_width": 4},
                      discriminator={"kind": "resnet", "conditional": True, "base_width": 4, "max_width": 4})
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    result = run_cli("config", str(write_config(tmp_path, cfg)))
    assert_one_line_error(result, 2, "generator (resnet)", "conditional needs a labelled data set")


@pytest.mark.parametrize("num", [5, 20, 64, 100, 101])
def test_class_rows_put_one_class_on_each_grid_row(num):
    from ganforge.generation import class_rows, grid_columns

    labels = class_rows(num, 10, torch.device("cpu"))
    cols = grid_columns(num, 10)
    rows = [labels[i:i + cols].tolist() for i in range(0, num, cols)]
    assert all(len(set(row)) == 1 for row in rows[:10])  # every row holds a single class
    assert [row[0] for row in rows[:10]] == list(range(min(10, len(rows))))  # in class order


def test_conditional_run_samples_the_asked_class_and_grids_by_class(cli, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(run, generator={"kind": "biggan", "dim_z": 12, "ch": 2, "shared_dim": 4, "attention": [8]},
                      discriminator={"kind": "biggan", "ch": 2, "attention": [8]},
                      loss={"kind": "hinge"}, samples={"every": 3, "num": 20},
                      regularizers=[{"kind": "orthogonal"}, {"kind": "ac_gan", "weight": 0.5}],
                      )
    cfg["discriminator"]["auxiliary_classifier"] = True
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 0, result.stderr
    grid = Image.open(run / "samples" / "latest.png")
    assert grid.size == (2 * 18 + 2, 10 * 18 + 2)  # 20 samples: one row per class, 2 columns
    from ganforge.generation.drawing import draw, load_generator

    loaded = load_generator(run, device="cpu")
    assert loaded.num_classes == 10
    # `--class 3 --seed 5` writes G(z, 3) for the noise that seed 5 draws: the API's images and
    # the PNG files equal the generator's output computed here (not the grid's one-class-per-row labels).
    z = torch.randn(4, loaded.G.latent_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want, rows = loaded.G(z, torch.full((4,), 3)), loaded.G(z, torch.arange(4))
    assert torch.equal(draw(loaded, 4, seed=5, class_index=3), want)
    out = tmp_path / "three"
    assert cli("sample", str(run), "--class", "3", "--num", "4", "--seed", "5", "--out", str(out)).exit_code == 0
    written = np.stack([np.asarray(Image.open(out / f"{i:06d}.png")) for i in range(4)])
    assert np.array_equal(written, pixels(want)) and not np.array_equal(written, pixels(rows))
    assert_one_line_error(run_cli("sample", str(run), "--class", "10", "--out", str(tmp_path / "x")), 2,
                          "classes 0 to 9")
    assert cli("sample", str(run), "--class", "3", "--num", "4", "--grid", "--out", str(tmp_path / "c.png")
               ).exit_code == 0
    log = (run / "log.jsonl").read_text()
    assert '"ac_gan"' in log and '"ac_gan_g"' in log and '"orthogonal"' in log


def pixels(images: torch.Tensor) -> np.ndarray:
    """Grey images in [-1, 1] as the 8-bit pixels of their PNG files."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()


def test_stylegan2_truncation(cli, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(run, generator={"kind": "stylegan2", "latent_dim": 8, "w_dim": 8, "mapping_layers": 1,
                                      "channel_base": 64, "channel_max": 8},
                      discriminator={"kind": "stylegan2", "channel_base": 64, "channel_max": 8},
                      regularizers=[{"kind": "r1", "weight": 0.1, "every": 2}, {"kind": "path_length", "every": 2},
                                    {"kind": "diffaugment"}])
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    from ganforge.generation.drawing import draw, load_generator

    loaded = load_generator(run, device="cpu")
    G = loaded.G
    assert G.w_avg.abs().max() > 0  # training moved the average w away from its initial zeros
    z = torch.randn(4, G.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ws = G.mapping(z, None).unsqueeze(1).repeat(1, G.num_ws, 1)
        # psi = 0 maps every sample to the average w.
        assert torch.allclose(G.mapping_ws(z, None, truncation=0.0), G.w_avg.expand_as(ws))
        # The truncation trick by its definition, w_avg + psi (w - w_avg); noise drawn inside G
        # (if any) from the seed, as sampling does.
        torch.manual_seed(3)
        want = G.synthesis(G.w_avg + 0.5 * (ws - G.w_avg))
        torch.manual_seed(3)
        untruncated = G.synthesis(ws)
    torch.testing.assert_close(draw(loaded, 4, seed=3, truncation=0.5), want, rtol=0, atol=1e-5)
    out = tmp_path / "t"
    assert cli("sample", str(run), "--truncation", "0.5", "--num", "4", "--seed", "3", "--out", str(out)).exit_code == 0
    written = np.stack([np.asarray(Image.open(out / f"{i:06d}.png")) for i in range(4)]).astype(int)
    assert np.abs(written - pixels(want).astype(int)).max() <= 1  # 8-bit rounding of equal floats
    assert np.abs(written - pixels(untruncated).astype(int)).max() > 1  # psi = 0.5 changed the images


# -- the shipped configs ---------------------------------------------------------------------------


def shipped_overrides(name: str, tmp_path) -> list[str]:
    """Shrink a shipped config to seconds on the CPU, with generated files for downloadable data."""
    from test_data import make_cifar, make_mnist

    cfg, _ = load_config(CONFIGS / name)
    sets = ["train.steps=2", "train.batch_size=8", "train.device=cpu", "train.accumulate=1", "samples.num=8",
            "checkpoint.every=2", "log.every=1", "eval.every=0", f"output.dir={tmp_path / 'run'}"]
    sets += tiny_overrides(cfg)
    data = tmp_path / "data"
    if cfg.data.kind == "cifar10":
        make_cifar(data)
        sets += [f"data.root={data}", "data.download=false"]
    elif cfg.data.kind in ("mnist", "fashion_mnist"):
        make_mnist(data, "MNIST" if cfg.data.kind == "mnist" else "FashionMNIST")
        sets += [f"data.root={data}", "data.download=false"]
    elif cfg.data.kind in ("gaussian_grid", "gaussian_ring"):
        sets += ["data.num_samples=64", "samples.num=64"]
    return sets


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_trains_a_few_steps(cli, tmp_path, name):
    result = cli("train", str(CONFIGS / name), "-q", *[a for s in shipped_overrides(name, tmp_path)
                                                        for a in ("--set", s)])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "run" / "checkpoints" / "step-00000002.pt").is_file()
    assert cli("sample", str(tmp_path / "run"), "--num", "2", "--out", str(tmp_path / "s.npy"
               if "gaussian" in name else tmp_path / "s")).exit_code == 0


def test_list_shows_parameters_and_defaults(cli):
    out = cli("list", "regularizer").stdout
    for name in REGULARIZERS.names():
        assert f"  {name}" in out
    assert "policy: list of one of color|translation|cutout|xflip = ('color', 'translation', 'cutout')" in out
