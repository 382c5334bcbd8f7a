"""Recipes and components as published (issue 29): each full-size recipe against its reference
config, each component's default against its reference code, on values computed by hand from the
reference formulas, and the loop's new step shapes (G's batch, G's noise, separate lazy phases)."""

from __future__ import annotations

import copy
import json
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from conftest import CONFIGS, ROOT, tiny_config, write_config
from ganforge.build import build_discriminator, build_generator, build_regularizers
from ganforge.config import Component, load_config, parse_config
from ganforge.config.upgrade import upgrade_stored_config
from ganforge.data import DataInfo, TensorBatches
from ganforge.distributed import Dist
from ganforge.errors import ConfigError
from ganforge.losses import NonSaturating
from ganforge.models import count_parameters
from ganforge.registry import DISCRIMINATORS, GENERATORS, LOSSES, METRICS, REGULARIZERS
from ganforge.regularizers import Regularizer
from ganforge.regularizers.augmentation import AdaptiveAugment
from ganforge.regularizers.discriminator import AuxiliaryClassifier, Consistency, LeCam
from ganforge.regularizers.generator import PathLength, TopK
from ganforge.regularizers.penalties import R1
from ganforge.training.state import TrainState, create_state
from ganforge.training.steps import G_PHASE, discriminator_step, generator_step

sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402

README = ROOT / "README.md"

# -- the full-size recipes against their reference configs ------------------------------------


@pytest.mark.parametrize("name", sorted(reproduce.RECIPES))
def test_each_cifar_recipe_holds_its_reference_values(name):
    written = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    _, resolved = load_config(CONFIGS / f"{name}.yaml")
    assert reproduce.settings_problems(name, written, resolved) == []


def test_a_drifting_value_or_an_unlisted_key_is_caught():
    written = yaml.safe_load((CONFIGS / "sngan_cifar10.yaml").read_text())
    _, resolved = load_config(CONFIGS / "sngan_cifar10.yaml", ["train.g_batch_size=64", "train.precision=bf16"])
    written["train"]["precision"] = "bf16"
    problems = reproduce.settings_problems("sngan_cifar10", written, resolved)
    assert any(p.startswith("train.g_batch_size: the config holds 64") for p in problems)
    assert any(p.startswith("train.precision: the config names it") for p in problems)


def test_docs_recipes_is_what_the_script_prints():
    assert (ROOT / "docs" / "recipes.md").read_text() == reproduce.settings_markdown()


def test_the_readme_recipe_table_is_what_the_script_prints():
    assert reproduce.markdown_table() in README.read_text()


# -- resnet: the references' initialisation, and SNGAN's D without an output bias -------------


def test_resnet_glorot_init_has_the_references_scale():
    info = DataInfo("img", (3, 32, 32))
    torch.manual_seed(0)
    G = build_generator(Component("resnet", {"base_width": 128, "max_width": 128}), info)
    D = build_discriminator(Component("resnet", {"base_width": 128, "max_width": 128}), info)
    # 3x3 convs in the blocks: uniform with std sqrt(2) sqrt(2 / (fan_in + fan_out)) = sqrt(4 / 2304) = 0.0417
    # (PyTorch's default gives 1 / sqrt(3 fan_in) = 0.017).
    for conv in (G.blocks[0].conv1, G.blocks[1].conv2, D.blocks[1].conv1):
        assert conv.weight.std().item() == pytest.approx(math.sqrt(4 / (1152 + 1152)), rel=0.02)
        assert conv.weight.abs().max().item() <= math.sqrt(12 / 2304) + 1e-7
        assert torch.count_nonzero(conv.bias) == 0
    # Gain 1 on the shortcuts and on G's input and output layers: std sqrt(2 / (fan_in + fan_out)).
    assert G.blocks[0].skip.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.03)
    assert G.linear.weight.std().item() == pytest.approx(math.sqrt(2 / (128 + 2048)), rel=0.02)
    assert G.out.weight.std().item() == pytest.approx(math.sqrt(2 / (1152 + 27)), rel=0.05)
    assert D.linear.bias is None  # SNGAN's l5: SNLinear(ch, 1, nobias=True)
    pytorch = build_generator(Component("resnet", {"base_width": 128, "max_width": 128, "init": "default"}), info)
    assert pytorch.blocks[0].conv1.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 1152), rel=0.02)
    # igul222's name for the same scheme builds the same weights from the same seed.
    for build in (build_generator, build_discriminator):
        nets = []
        for scheme in ("glorot", "he_uniform"):
            torch.manual_seed(1)
            nets.append(build(Component("resnet", {"base_width": 32, "max_width": 32, "init": scheme}), info))
        assert all(torch.equal(a, b) for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()))


# -- dcgan: no bias where pytorch/examples has none ------------------------------------------------


def test_dcgan_has_the_parameters_of_pytorch_examples():
    info = DataInfo("img", (3, 64, 64))
    G = build_generator(Component("dcgan", {"latent_dim": 100}), info)
    D = build_discriminator(Component("dcgan", {}), info)
    # pytorch/examples dcgan/main.py at nz 100, ngf = ndf = 64, nc 3: bias-free convolutions and
    # BatchNorm gains and biases.
    g_convs = 16 * (100 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 * 3)
    d_convs = 16 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 512 + 512 * 1)
    assert count_parameters(G) == g_convs + 2 * (512 + 256 + 128 + 64)
    assert count_parameters(D) == d_convs + 2 * (128 + 256 + 512)
    biased = build_discriminator(Component("dcgan", {"bias": True}), info)
    assert count_parameters(biased) == count_parameters(D) + 64 + 1


# -- the loop: G's batch and noise ----------------------------------------------------------------


class RecordingG(nn.Module):
    """A linear G on 4-vectors that records the noise of every call."""

    latent_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.calls: list[torch.Tensor] = []

    def forward(self, z, labels=None):
        self.calls.append(z.detach().clone())
        return self.lin(z)


class TanhD(nn.Module):
    """D(x) = v . tanh(W x): input gradients differ from point to point."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.hidden = nn.Linear(4, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x, labels=None):
        return self.out(torch.tanh(self.hidden(x))).squeeze(1)


def vector_step(train: dict, regularizers=(), D: nn.Module | None = None, G: nn.Module | None = None,
                adam: bool = False):
    """A TrainState and the Runtime that make_runtime builds for `train`, around G (RecordingG) and D (TanhD)."""
    from ganforge.training.steps import make_runtime

    G, D = G or RecordingG(), D or TanhD()
    cfg = parse_config({"data": {"kind": "gaussian_grid"}, "generator": {"kind": "mlp"},
                        "discriminator": {"kind": "mlp"}, "train": {"device": "cpu", **train}})

    def opt(net):
        return torch.optim.Adam(net.parameters(), lr=0.1, betas=(0.5, 0.9)) if adam else \
            torch.optim.SGD(net.parameters(), lr=0.0)

    opt_g, opt_d = opt(G), opt(D)
    constant = torch.optim.lr_scheduler.LambdaLR
    state = TrainState(G, D, G, opt_g, opt_d, constant(opt_g, lambda s: 1.0), constant(opt_d, lambda s: 1.0),
                       torch.amp.GradScaler("cpu", enabled=False), torch.amp.GradScaler("cpu", enabled=False),
                       torch.zeros(1, 3), None, regularizers=list(regularizers))
    return state, make_runtime(cfg, state, Dist(), torch.device("cpu"))


def test_g_batch_size_sets_how_many_fakes_g_learns_from():
    state, rt = vector_step({"batch_size": 64, "g_batch_size": 128, "accumulate": 2})
    real = torch.randn(64, 4)
    discriminator_step(state, rt, NonSaturating(), [], real, None, d_update=0, phase=0)
    generator_step(state, rt, NonSaturating(), [], None, real, phase=G_PHASE)
    # Two micro-batches each: 32 fakes against 32 reals in D's update, 64 in G's.
    assert [len(z) for z in state.G.calls] == [32, 32, 64, 64]


@pytest.mark.parametrize("noise", ["fresh", "d_step"])
def test_g_noise_d_step_reuses_the_last_d_steps_noise(noise):
    state, rt = vector_step({"batch_size": 8, "d_steps_per_g_step": 2, "g_noise": noise})
    real = torch.randn(8, 4)
    for phase in range(2):
        discriminator_step(state, rt, NonSaturating(), [], real, None, d_update=phase, phase=phase)
    generator_step(state, rt, NonSaturating(), [], None, real, phase=G_PHASE)
    first_d, last_d, g = state.G.calls
    assert not torch.equal(first_d, last_d)
    assert torch.equal(g, last_d) == (noise == "d_step")  # pytorch/examples' G step reuses the D step's fakes


def test_a_g_batch_that_does_not_split_is_one_line_naming_both_keys(cli, tmp_path):
    cfg = write_config(tmp_path, tiny_config(tmp_path / "run"))
    result = cli("train", str(cfg), "--dry-run", "--set", "train.g_batch_size=10", "--set", "train.accumulate=4")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.g_batch_size=10" in errors[0] and "train.accumulate" in errors[0]
    result = cli("train", str(cfg), "--dry-run", "--set", "train.g_batch_size=16", "--set", "train.g_noise=d_step")
    assert result.exit_code == 2 and "g_batch_size (16) must equal batch_size (8)" in result.stderr


# -- data.dequantize -----------------------------------------------------------------------------


def test_dequantized_pixels_fill_their_bin_as_the_references_do():
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).repeat(4, 1, 1, 1)
    stream = TensorBatches(levels, None, batch_size=4, seed=3, device=torch.device("cpu"), dequantize=True)
    x, _ = next(stream)
    # x/128 - 1 + U(0, 1/128): 128 (x + 1) lies in [level, level + 1).
    scaled = (x + 1) * 128
    assert torch.equal(scaled.floor(), levels.float()) and x.min() >= -1 and x.max() < 1
    assert (scaled - levels).mean().item() == pytest.approx(0.5, abs=0.03)
    again = TensorBatches(levels, None, batch_size=4, seed=3, device=torch.device("cpu"), dequantize=True)
    assert torch.equal(next(again)[0], x)  # from (seed, epoch, position): a resumed run sees the same noise
    plain = next(TensorBatches(levels, None, 4, 3, torch.device("cpu")))[0]
    assert plain.max().item() == 1.0  # x/127.5 - 1 without it


# -- AC-GAN: D's classifier on reals -----------------------------------------------------------------


class Logits(nn.Module):
    """classify(x) = x: the inputs are the class logits."""

    def classify(self, x):
        return x


def test_ac_gan_trains_d_s_classifier_on_reals_only_by_default():
    real, labels = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 2])
    fake, fake_labels = torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([1])
    ce_real = (math.log(1 + 2 * math.exp(-2)) + math.log(2 + math.e)) / 2  # -log softmax of the asked class
    ce_fake = math.log(2 + math.exp(3))
    reals_only = AuxiliaryClassifier().d_penalty(Logits(), real, fake, labels, fake_labels, None)
    assert reals_only.item() == pytest.approx(ce_real, rel=1e-6)
    paper = AuxiliaryClassifier(fake_weight=1.0).d_penalty(Logits(), real, fake, labels, fake_labels, None)
    assert paper.item() == pytest.approx(ce_real + ce_fake, rel=1e-6)


# -- LeCam: google/lecam-gan's decay 0.9 and start 1000 --------------------------------------------


def test_lecam_copies_for_1000_steps_then_averages_and_adds_the_term_after_step_1000():
    reg = LeCam()
    assert (reg.weight, reg.decay, reg.start) == (0.3, 0.9, 1000)
    anchor_real = None
    for step in range(1002):
        reg.after_step(step)  # the loop's count of finished steps when step `step` runs
        real, fake = torch.tensor([step / 1000]), torch.tensor([-step / 1000])
        value = reg.d_outputs(real, fake)
        # ema_losses.update: decay 0 before start_itr, 0.9 from it; the term only when itr > start_itr.
        decay = 0.9 if step >= 1000 else 0.0
        anchor_real = step / 1000 if anchor_real is None else decay * anchor_real + (1 - decay) * step / 1000
        assert reg.anchor_real.item() == pytest.approx(anchor_real, rel=1e-6)
        assert (value is None) == (step <= 1000)
    # At step 1001: relu(D(real) - anchor_fake)^2 + relu(anchor_real - D(fake))^2 with anchor_fake = -anchor_real.
    assert value.item() == pytest.approx(2 * (1.001 + anchor_real) ** 2, rel=1e-5)
    restored = LeCam()
    restored.load_state_dict(reg.state_dict())
    assert restored.steps == 1001 and restored.anchor_real.item() == reg.anchor_real.item()


# -- bCR: StudioGAN's flip and reflect-padded translation -----------------------------------------------


def test_consistency_translation_reflects_at_the_border():
    from ganforge import augment

    x = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16)
    out = augment.translation(x, torch.Generator().manual_seed(4), padding="reflect")
    g = torch.Generator().manual_seed(4)  # the shifts it drew: up to 16 / 8 = 2 pixels
    dy, dx = torch.randint(-2, 3, (2,), generator=g), torch.randint(-2, 3, (2,), generator=g)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")  # StudioGAN's random_translation
    for i in range(2):
        top, left = 2 - int(dy[i]), 2 - int(dx[i])
        assert torch.equal(out[i], padded[i, :, top : top + 16, left : left + 16])


def test_consistency_compares_the_steps_own_outputs_with_the_shaken_images():
    calls = []

    def D(x, labels=None):
        calls.append(x)
        return x.flatten(1).sum(1)

    real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    real_out, fake_out = D(real), D(fake)
    calls.clear()
    term = Consistency().d_term(0, D, real, fake, None, None, real_out, fake_out, torch.Generator().manual_seed(0))
    assert len(calls) == 2  # only the flipped and translated copies go through D: StudioGAN reuses its pass
    expected = 10 * ((real_out - calls[0].flatten(1).sum(1)) ** 2).mean() + \
        10 * ((fake_out - calls[1].flatten(1).sum(1)) ** 2).mean()
    assert term.loss.item() == pytest.approx(expected.item(), rel=1e-6)


# -- top-k: StudioGAN's truncation, decayed after the step that ends an epoch ---------------------------


def test_top_k_truncates_k_as_studiogan():
    reg, logits = TopK(), torch.arange(64, dtype=torch.float32)
    # adjust_k: k = max(k x 0.99, int(0.5 x 64)); the loss takes int(k): 63.36 -> 63, 62.73 -> 62 (rounding: 63).
    assert [len(reg.g_logits(logits, 0, epoch=e)) for e in (0, 1, 2, 3, 60, 69, 500)] == [64, 63, 62, 62, 35, 32, 32]


@pytest.fixture
def scoped_registry(monkeypatch):
    """Registrations of a test go into a copy of the regularizers' entries."""
    REGULARIZERS.names()
    monkeypatch.setattr(REGULARIZERS, "_entries", dict(REGULARIZERS._entries))


def test_the_loop_calls_after_step_after_g_and_top_k_sees_the_epoch_the_step_began_in(scoped_registry, cli,
                                                                                         tmp_path):
    events: list[tuple] = []

    @REGULARIZERS.register("spy")
    class Spy(Regularizer):
        def g_logits(self, fake_logits, step, epoch=0):
            events.append(("g", step, epoch))
            return fake_logits

        def after_step(self, step):
            events.append(("after", step))

    # 1,797 digits at batch 512: three batches an epoch, the fourth step's D batch opens epoch 1.
    cfg = tiny_config(tmp_path / "run", regularizers=[{"kind": "spy"}])
    cfg["train"].update(steps=5, batch_size=512)
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    assert events == [("g", 0, 0), ("after", 1), ("g", 1, 0), ("after", 2), ("g", 2, 0), ("after", 3),
                      ("g", 3, 0), ("after", 4), ("g", 4, 1), ("after", 5)]


# -- ADA: the reference's adjustment ----------------------------------------------------------------------


def test_ada_p_is_clamped_at_zero_only_and_moves_after_each_interval_of_steps():
    ada = AdaptiveAugment(initial_p=1.0)
    for step in range(1, 4):
        ada.observe(torch.ones(64), step - 1)
        ada.after_step(step)
    assert float(ada.p) == 1.0  # no adjustment before 4 steps are done
    ada.observe(torch.ones(64), 3)
    ada.after_step(4)
    assert float(ada.p) == pytest.approx(1.0 + 4 * 64 / 500_000)  # above 1, as the reference lets it


class SumD(nn.Module):
    """D(x) = w x the sum of x's pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x, labels=None):
        return x.flatten(1).sum(1) * self.w


class DarkG(RecordingG):
    """Fakes of -1 everywhere: D(fake) < 0."""

    def forward(self, z, labels=None):
        return self.lin.weight.sum() * 0 - torch.ones(len(z), 1, 4, 4)


def test_ada_counts_the_signs_of_a_lazy_r1_pass_but_not_its_images():
    ada = AdaptiveAugment(target=0.6, interval=2)
    regs = [("r1", R1(weight=1.0, every=2)), ("ada", ada)]
    state, rt = vector_step({"batch_size": 6}, regs, D=SumD(), G=DarkG())
    bright = torch.ones(6, 1, 4, 4)
    discriminator_step(state, rt, NonSaturating(), regs, bright, None, d_update=0, phase=0)  # R1 due: its pass too
    discriminator_step(state, rt, NonSaturating(), regs, -bright, None, d_update=1, phase=0)
    # Signs of D(real): +6 (update 0), +6 (R1's own pass on the same reals), -6 (update 1): mean 1/3 < 0.6, so
    # p falls, by the 12 real images of the two updates / 500k (not by the 18 signs).
    ada.p = torch.tensor(0.5)
    ada.after_step(2)
    assert float(ada.p) == pytest.approx(0.5 - 12 / 500_000)


# -- lazy regularization in separate phases ---------------------------------------------------------


def test_separate_lazy_phases_scale_adam_as_stylegan2_ada(tmp_path):
    cfg, _ = load_config(write_config(tmp_path, tiny_config(tmp_path / "run")),
                         ["train.lazy=separate", "regularizers=[{kind: r1, weight: 1.0, every: 16}]"])
    state = create_state(cfg, DataInfo("digits", (1, 16, 16), 10), torch.device("cpu"))
    d_group, g_group = state.opt_d.param_groups[0], state.opt_g.param_groups[0]
    # mb_ratio = 16/17: lr x 16/17, betas ** (16/17); G has no lazy term, so no G phase and no scaling.
    assert d_group["lr"] == pytest.approx(2e-4 * 16 / 17)
    assert d_group["betas"] == pytest.approx((0.5 ** (16 / 17), 0.999 ** (16 / 17)))
    assert state.sched_d.base_lrs == [pytest.approx(2e-4 * 16 / 17)]
    assert (g_group["lr"], tuple(g_group["betas"])) == (2e-4, (0.5, 0.999))


def test_a_separate_lazy_phase_is_a_second_adam_step_on_the_penalty_alone():
    regs = [("r1", R1(weight=1.0, every=2))]
    state, rt = vector_step({"batch_size": 8, "lazy": "separate"}, regs, adam=True)
    folded_state, folded_rt = vector_step({"batch_size": 8}, regs, adam=True)
    D0 = copy.deepcopy(state.D)
    real = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    discriminator_step(state, rt, NonSaturating(), regs, real, None, d_update=0, phase=0)
    discriminator_step(folded_state, folded_rt, NonSaturating(), regs, real, None, d_update=0, phase=0)
    # By hand: Adam on D's loss; then Adam on 2 x (1/2) mean ||grad_x D(x)||^2 at the updated weights.
    fake = state.G.lin(state.G.calls[0]).detach()
    opt = torch.optim.Adam(D0.parameters(), lr=0.1, betas=(0.5, 0.9))
    (F.softplus(-D0(real)).mean() + F.softplus(D0(fake)).mean()).backward()
    opt.step()
    opt.zero_grad()
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D0(x).sum(), x, create_graph=True)
    (2 * 0.5 * grad.pow(2).sum(1).mean()).backward()
    opt.step()
    for mine, theirs in zip(state.D.parameters(), D0.parameters()):
        assert torch.allclose(mine, theirs, atol=1e-6)
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(folded_state.D.parameters(), D0.parameters()))
    assert state.opt_d.state[next(state.D.parameters())]["step"].item() == 2  # two optimizer steps


def test_separate_lazy_phases_need_one_interval_per_player(tmp_path):
    cfg, _ = load_config(write_config(tmp_path, tiny_config(tmp_path / "run")),
                         ["train.lazy=separate", "regularizers=[{kind: r1, every: 16}, {kind: r2, every: 8}]"])
    with pytest.raises(ConfigError, match="r1 every 16, r2 every 8"):
        build_regularizers(cfg)


# -- old checkpoints keep the networks they trained ------------------------------------------------------


def test_a_stored_config_without_the_new_keys_gets_what_its_run_did():
    stored = {"generator": {"kind": "dcgan", "latent_dim": 8}, "discriminator": {"kind": "resnet"},
              "regularizers": []}
    upgraded = upgrade_stored_config(stored)
    assert upgraded["generator"]["bias"] is True
    assert upgraded["discriminator"] == {"kind": "resnet", "init": "default", "output_bias": True}
    assert "bias" not in stored["generator"]  # the checkpoint's own dict is left alone
    written_now = {"generator": {"kind": "dcgan", "bias": False}, "discriminator": {"kind": "dcgan", "bias": False}}
    assert upgrade_stored_config(written_now) == written_now


# -- the README's table names every component ----------------------------------------------------------


def test_every_registered_component_has_a_row_in_the_readme_table():
    text = README.read_text()
    table = text[text.index("### What each component follows"):]
    table = table[: table.index("\n\n**", table.index("| component |"))]
    named = {name for row in table.splitlines() if row.startswith("| `")
             for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    registered = {*REGULARIZERS.names(), *LOSSES.names(), *GENERATORS.names(), *DISCRIMINATORS.names(),
                  *METRICS.names()}
    assert registered - named == set()


# -- reproduce.py: each recipe's protocol, on a run trained for one step ---------------------------------


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory):
    """A resnet run on digits trained one step (G with BatchNorm, an EMA), and stand-in Inception weights."""
    from typer.testing import CliRunner

    from ganforge.cli import app
    from ganforge.metrics.inception import FIDInception

    tmp = tmp_path_factory.mktemp("protocols")
    torch.manual_seed(0)
    weights = tmp / "pt_inception-random.pth"
    torch.save(FIDInception().net.state_dict(), weights)
    cfg = tiny_config(tmp / "run", generator={"kind": "resnet", "latent_dim": 8, "base_width": 4, "max_width": 4},
                      discriminator={"kind": "resnet", "base_width": 4, "max_width": 4})
    cfg["train"].update(steps=1)
    result = CliRunner().invoke(app, ["train", str(write_config(tmp, cfg)), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return tmp / "run", weights


@pytest.mark.parametrize("name", sorted(reproduce.RECIPES))
def test_each_protocol_scores_the_generator_its_paper_scored(name, one_step_run, cli, tmp_path):
    run, weights = one_step_run
    protocol = reproduce.RECIPES[name].protocol
    commands = reproduce.eval_commands(protocol, reproduce.RECIPES[name].metrics, num=10, real=10)
    scored = set()
    for names, options in commands:
        out = tmp_path / f"{'-'.join(names)}.json"
        result = cli("eval", str(run), *options, "--inception-weights", str(weights), "--cache-dir",
                     str(weights.parent), "--out", str(out), "-q")
        assert result.exit_code == 0, result.stderr
        report = json.loads(out.read_text())
        assert report["ema"] == (protocol.generator == "ema")
        assert report["batch_stats"] == (protocol.batchnorm == "batch")
        assert report["num_samples"] == 10 and set(names) <= set(report["metrics"])
        # The TensorFlow Inception Score every paper reported, as torch-fidelity reproduces it.
        assert ("is" in names) == (report["settings"].get("protocol") == "torch-fidelity"), report["settings"]
        scored |= set(names)
    assert scored == set(reproduce.RECIPES[name].metrics)
    cfg, _ = load_config(run / "config.yaml")
    lines = [d for m in scored for d in reproduce.default_differences(protocol, m, cfg)]
    assert any("metric code" in line for line in lines)
    assert any("truncated" in line for line in lines) == (protocol.pixels == "truncate")
    if protocol.batchnorm == "batch":
        assert any("each batch of" in line for line in lines)


def test_batch_statistics_change_what_a_batchnorm_generator_draws(one_step_run):
    from ganforge.generation import batch_statistics
    from ganforge.generation.drawing import load_generator

    G = load_generator(one_step_run[0], use_ema=False, device="cpu").G.eval()
    z = torch.randn(16, G.latent_dim, generator=torch.Generator().manual_seed(0))
    before = [b.clone() for b in G.buffers()]
    with torch.no_grad():
        running = G(z)
        with batch_statistics(G):
            per_batch = G(z)
            by_hand = copy.deepcopy(G).train()(z)
    assert torch.allclose(per_batch, by_hand) and not torch.allclose(per_batch, running, atol=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, G.buffers())) and not G.training


def test_batch_statistics_reach_biggans_own_batchnorm_layers():
    # biggan keeps its statistics in layers of its own (stored_mean / stored_var), not torch's
    # _BatchNorm: `eval --batch-stats` must switch them too.
    from ganforge.generation import batch_statistics

    torch.manual_seed(0)
    G = build_generator(Component("biggan", {"ch": 4, "dim_z": 8, "shared": False, "hier": False, "attention": []}),
                        DataInfo("digits", (1, 16, 16), num_classes=10)).eval()
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(16) % 10
    before = {k: v.clone() for k, v in G.state_dict().items()}
    with torch.no_grad():
        running = G(z, y)
        with batch_statistics(G):
            per_batch = G(z, y)
            half = G(z[:8], y[:8])
    # Per-batch statistics: a sample's image depends on the rest of its batch; running ones: not.
    assert not torch.allclose(per_batch, running, atol=1e-3)
    assert not torch.allclose(per_batch[:8], half, atol=1e-3)
    assert torch.allclose(G(z[:8], y[:8]), running[:8], atol=1e-6)
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items()) and not G.training


# -- bCR pins StudioGAN's reflect padding; path length's pass and mean as StyleGAN2-ADA's --------------


def test_consistency_feeds_d_reflect_padded_copies():
    # With zeros shifted in, a moved copy would hold pixels (0) that its image does not have.
    seen = []

    def D(x, labels=None):
        seen.append(x)
        return x.flatten(1).sum(1)

    real = torch.arange(1, 8 * 16 * 16 + 1, dtype=torch.float32).view(8, 1, 16, 16)
    fake = real + 0.5
    real_out, fake_out = D(real), D(fake)
    seen.clear()
    Consistency().terms(D, real, fake, None, None, torch.Generator().manual_seed(0), real_out, fake_out)
    for images, shaken in zip((real, fake), seen):
        moved = [i for i in range(8) if not (torch.equal(shaken[i], images[i])
                                             or torch.equal(shaken[i], images[i].flip(-1)))]
        assert moved  # some copies were shifted
        for i in range(8):
            assert set(shaken[i].flatten().tolist()) <= set(images[i].flatten().tolist())


def test_path_length_penalty_keeps_the_gradient_of_the_means_batch_share():
    # StyleGAN2-ADA's loss.py: pl_mean = lerp(pl_mean, lengths.mean(), decay) is detached only where
    # it is stored; the penalty (lengths - pl_mean)^2 differentiates through its decay x mean share.
    scale = torch.tensor(1.0, requires_grad=True)

    class Styles(nn.Module):
        def synthesis_with_styles(self, z, labels):
            w = z[:, None, :].expand(-1, 3, -1).clone().requires_grad_(True)  # (n, layers=3, dim)
            return scale * w[:, :, :1].sum(1).view(-1, 1, 1, 1).expand(-1, 1, 4, 4), w

    decay = 0.5
    reg = PathLength(decay=decay, batch_shrink=1)
    penalty = reg.g_penalty(Styles(), None, torch.randn(6, 5), None, None, torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(penalty, scale)
    noise = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(3)) / 4.0
    a = noise.flatten(1).sum(1).abs()  # each length is |scale| x |noise sum|
    mean = decay * a.mean()  # the mean starts at 0
    assert penalty.item() == pytest.approx(((a - mean) ** 2).mean().item(), rel=1e-5)
    # d/ds mean((s a - decay s mean(a))^2) at s = 1 (with the mean detached: 2 mean((a - mean) a)).
    assert grad.item() == pytest.approx((2 * (a - mean) * (a - decay * a.mean())).mean().item(), rel=1e-4)


def test_path_length_pass_mixes_styles_as_training_does():
    torch.manual_seed(0)
    G = build_generator(Component("stylegan2", {"latent_dim": 8, "w_dim": 8, "mapping_layers": 1,
                                                "channel_base": 64, "channel_max": 8, "style_mixing": 1.0}),
                        DataInfo("img", (1, 16, 16))).train()
    seen = []
    G.synthesis.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    penalty = PathLength(batch_shrink=1).g_penalty(G, None, torch.randn(4, 8), None, None,
                                                   torch.Generator().manual_seed(0))
    (ws,) = seen
    # run_G's style mixing: the layers from a cut-off on take the styles of other z.
    assert not torch.equal(ws, ws[:, :1].expand_as(ws))
    assert torch.isfinite(penalty)
