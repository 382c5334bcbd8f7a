"""Fine-tuning: weights copied from a checkpoint into fresh networks, class changes, FreezeD."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import tiny_config, tiny_section, write_config
from ganforge.build import build_discriminator, build_networks, build_optimizer
from ganforge.checkpoint import Checkpoint, load_checkpoint, serialize
from ganforge.config import Component, load_config, parse_config
from ganforge.data import DataInfo
from ganforge.errors import ConfigError
from ganforge.finetune import discriminator_blocks, freeze_d_layers, load_init
from ganforge.registry import DISCRIMINATORS
from ganforge.run import RunDir, find_checkpoint
from ganforge.training.loop import train
from ganforge.training.state import TrainState, create_state

DIGITS16 = DataInfo("digits", (1, 16, 16), num_classes=10)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A trained 6-step tiny DCGAN run: (run folder, config)."""
    folder = tmp_path_factory.mktemp("pretrained")
    # A bias on G's output layer: a tensor whose shape does not depend on the widths (see below).
    generator = {"kind": "dcgan", "latent_dim": 8, "base_width": 8, "bias": True}
    cfg, cfg_dict = load_config(write_config(folder, tiny_config(folder / "run", generator=generator)))
    run = RunDir(cfg.output.dir)
    run.create()
    train(cfg, cfg_dict, run, progress=False)
    run.release_lock()
    return folder / "run", cfg


def fresh_state(cfg, seed: int = 123) -> TrainState:
    torch.manual_seed(seed)
    return create_state(cfg, DIGITS16, torch.device("cpu"))


class Nets:
    """G, D, G_ema built from a config dict (what load_init needs of a TrainState)."""

    def __init__(self, raw: dict, info: DataInfo, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.G, self.D, _ = build_networks(parse_config(raw), info)
        self.G_ema = copy.deepcopy(self.G)


def save_checkpoint(path, nets: Nets, info: DataInfo):
    """A checkpoint file as ganforge writes one, holding these networks."""
    state = {"G": nets.G.state_dict(), "D": nets.D.state_dict(), "G_ema": nets.G_ema.state_dict()}
    ckpt = Checkpoint(step=7, config={}, data_info=info.to_dict(), state=state, data={}, rng={})
    path.write_bytes(serialize(ckpt.to_dict()))
    return path


def assert_equal_state(module, stored):
    current = module.state_dict()
    assert current.keys() == stored.keys()
    for key in current:
        assert torch.equal(current[key], stored[key]), key


def perturb(nets: Nets) -> None:
    """Move every float tensor, so that loaded weights cannot equal a fresh initialisation by chance."""
    with torch.no_grad():
        for net in (nets.G, nets.D, nets.G_ema):
            for t in net.state_dict().values():
                if t.is_floating_point():
                    t.add_(torch.randn_like(t))


# -- load_init ---------------------------------------------------------------------------------


def test_round_trip_copies_every_network_and_leaves_optimizers_fresh(tiny_run):
    folder, cfg = tiny_run
    stored = load_checkpoint(*find_checkpoint(folder)).state
    state = fresh_state(cfg)
    assert not torch.equal(state.G.state_dict()["net.0.weight"], stored["G"]["net.0.weight"])
    assert load_init(state, folder, num_classes=10) == []
    for name in ("G", "D", "G_ema"):
        assert_equal_state(getattr(state, name), stored[name])
    # The run starts over: no optimizer moments, step 0, schedules at their first value.
    assert state.step == 0 and not state.opt_g.state and not state.opt_d.state
    assert state.sched_g.last_epoch == 0 and state.opt_g.param_groups[0]["lr"] == cfg.optim.g.params["lr"]


def test_generator_alone_and_ema_follows_it(tiny_run):
    folder, cfg = tiny_run
    stored = load_checkpoint(*find_checkpoint(folder)).state
    state = fresh_state(cfg)
    d_before = copy.deepcopy(state.D.state_dict())
    load_init(state, folder / "checkpoints" / "step-00000006.pt", num_classes=10, load=("G",))
    assert_equal_state(state.G, stored["G"])
    assert_equal_state(state.G_ema, stored["G"])  # G_ema starts as G, not as the checkpoint's average
    assert_equal_state(state.D, d_before)


def test_shape_mismatch_is_one_line_naming_parameter_and_shapes(tiny_run):
    folder, cfg = tiny_run
    # base_width 16 instead of 8: widths (32, 16) instead of (16, 8); the first layer is a
    # ConvTranspose2d(latent 8 -> widths[0], 4x4): weight (in, out, k, k).
    wider = parse_config({**tiny_config(folder), "generator": {"kind": "dcgan", "latent_dim": 8, "base_width": 16,
                                                               "bias": True}})
    state = fresh_state(wider)
    before = copy.deepcopy(state.G.state_dict())
    with pytest.raises(ConfigError) as e:
        load_init(state, folder, num_classes=10)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("init.checkpoint: G parameter net.0.weight has shape (8, 16, 4, 4) in the checkpoint, "
                              "(8, 32, 4, 4) in this config")
    assert "init.strict_shapes" in message
    assert_equal_state(state.G, before)  # nothing was changed by the failed load
    # Not strict: one warning per network, matching tensors loaded (the last layer's bias: 1 channel).
    warnings = load_init(state, folder, num_classes=10, load=("G",), strict_shapes=False)
    assert len(warnings) == 1 and "kept freshly initialised" in warnings[0]
    stored = load_checkpoint(*find_checkpoint(folder)).state["G"]
    assert torch.equal(state.G.net[-2].bias, stored["net.6.bias"])
    assert torch.equal(state.G.net[0].weight, before["net.0.weight"])


def test_other_architecture_is_one_line_listing_the_keys(tmp_path):
    info16, info32 = DataInfo("digits", (1, 16, 16), 10), DataInfo("digits", (1, 32, 32), 10)
    raw = {"data": {"kind": "digits"}, "generator": {"kind": "dcgan", "latent_dim": 8, "base_width": 4, "bias": True},
           "discriminator": {"kind": "dcgan", "base_width": 4}}
    ckpt = save_checkpoint(tmp_path / "c.pt", Nets(raw, info16), info16)
    # 16 px: convT, BN, ReLU, convT, BN, ReLU, convT (with bias), tanh. 32 px has one more
    # convT-BN-ReLU stage, so its BN is net.7 (5 tensors), the last convT net.9, and net.6 has no bias.
    with pytest.raises(ConfigError) as e:
        load_init(Nets(raw, info32), ckpt, num_classes=10)
    assert str(e.value).startswith(
        "init.checkpoint: G does not match this config's architecture (missing from the checkpoint: net.7.weight, "
        "net.7.bias, net.7.running_mean (and 4 more); only in the checkpoint: net.6.bias); use the checkpoint's "
        "architecture, or set init.strict_shapes: false")


def test_bad_paths_and_names_are_config_errors(tmp_path, tiny_run):
    folder, cfg = tiny_run
    state = fresh_state(cfg)
    with pytest.raises(ConfigError, match="^init.checkpoint: no such checkpoint or run folder"):
        load_init(state, tmp_path / "nothing", num_classes=10)
    with pytest.raises(ConfigError, match="^init.load: unknown network 'E'"):
        load_init(state, folder, num_classes=10, load=("G", "E"))
    damaged = tmp_path / "run" / "checkpoints"
    damaged.mkdir(parents=True)
    for f in (folder / "checkpoints").iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    latest = damaged / "step-00000006.pt"
    latest.write_bytes(latest.read_bytes()[:-100] + bytes(100))
    with pytest.raises(ConfigError, match="^init.checkpoint: .*SHA-256 does not match"):
        load_init(state, tmp_path / "run", num_classes=10)


@pytest.mark.parametrize("arch,g_class_keys,d_class_keys", [
    # BigGAN: a shared nn.Embedding in G, the projection embedding in D (and its spectral norm's u).
    ("biggan", {"shared.weight"}, {"embed.weight", "embed.u0"}),
    # StyleGAN2: one-hot labels through the label embedding of a mapping network (weight: out x
    # classes) in both, as StyleGAN2-ADA.
    ("stylegan2", {"mapping.embed.weight"}, {"mapping.embed.weight"}),
])
def test_class_count_change_reinitialises_the_class_layers(tmp_path, arch, g_class_keys, d_class_keys):
    raw = {"data": {"kind": "digits"}, "generator": tiny_section("generator", arch, conditional=True),
           "discriminator": tiny_section("discriminator", arch, conditional=True)}
    ten, five = DataInfo("digits", (1, 16, 16), 10), DataInfo("folder", (1, 16, 16), 5)
    old = Nets(raw, ten, seed=1)
    perturb(old)
    ckpt = save_checkpoint(tmp_path / "c.pt", old, ten)
    new = Nets(raw, five, seed=2)
    fresh = {n: copy.deepcopy(getattr(new, n).state_dict()) for n in ("G", "D", "G_ema")}
    warnings = load_init(new, ckpt, num_classes=5)
    expected = {"G": g_class_keys, "D": d_class_keys, "G_ema": g_class_keys}
    assert len(warnings) == sum(len(v) for v in expected.values())
    for name, class_keys in expected.items():
        for key in class_keys:
            assert any(w.startswith(f"init.checkpoint: {name} parameter {key} is re-initialised: the checkpoint has "
                                    "10 classes, this config 5") for w in warnings), (name, key, warnings)
        current, stored = getattr(new, name).state_dict(), getattr(old, name).state_dict()
        for key, value in current.items():
            source = fresh[name] if key in class_keys else stored
            assert torch.equal(value, source[key]), (name, key)


def test_unconditional_checkpoint_into_a_conditional_config(tmp_path):
    # A conditional stylegan2 D only adds its label mapping network (embedding and FC layers).
    g = {"kind": "stylegan2", "latent_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 64, "channel_max": 8}
    d = {"kind": "stylegan2", "channel_base": 64, "channel_max": 8}
    info = DataInfo("digits", (1, 16, 16), 10)
    old = Nets({"data": {"kind": "digits"}, "generator": g, "discriminator": d}, info)
    perturb(old)
    ckpt = save_checkpoint(tmp_path / "c.pt", old, info)
    new = Nets({"data": {"kind": "digits"}, "generator": {**g, "conditional": True},
                "discriminator": {**d, "conditional": True}}, info)
    warnings = load_init(new, ckpt, num_classes=10, load=("D",))
    # Its output layer makes the projection's cmap_dim features instead of one logit: fresh too.
    output = [f"init.checkpoint: D parameter b4.out.{p} is re-initialised: its shape depends on conditioning, which "
              f"differs ({a} in the checkpoint, {b} here)" for p, a, b in (("weight", (1, 8), (8, 8)),
                                                                              ("bias", (1,), (8,)))]
    assert warnings == [*output, "init.checkpoint: D class layers differ from the checkpoint's (10 classes there, 10 "
                        "here): initialised fresh: mapping.embed.weight, mapping.embed.bias, mapping.fc0.weight (and "
                        "15 more)"]
    for key, value in old.D.state_dict().items():
        assert torch.equal(new.D.state_dict()[key], value) != key.startswith("b4.out."), key
    # And back: the checkpoint's class layers are left out.
    assert load_init(old, save_checkpoint(tmp_path / "d.pt", new, info), num_classes=10, load=("D",))[-1] == (
        "init.checkpoint: D class layers differ from the checkpoint's (10 classes there, 10 here): "
        "not used: mapping.embed.weight, mapping.embed.bias, mapping.fc0.weight (and 15 more)")


def test_spectral_norm_weights_load_and_a_spectral_norm_mismatch_is_named(tmp_path):
    info = DataInfo("digits", (1, 16, 16), 10)
    raw = {"data": {"kind": "digits"}, "generator": {"kind": "resnet", "latent_dim": 8, "base_width": 4},
           "discriminator": {"kind": "resnet", "base_width": 4},
           "regularizers": [{"kind": "spectral_norm", "discriminator": True, "generator": True}]}
    old = Nets(raw, info, seed=1)
    for _ in range(3):  # power iterations move the u, v buffers
        old.D(torch.randn(4, 1, 16, 16))
    perturb(old)
    ckpt = save_checkpoint(tmp_path / "sn.pt", old, info)
    keys = old.D.state_dict().keys()
    assert "blocks.0.conv1.parametrizations.weight.original" in keys
    assert "blocks.0.conv1.parametrizations.weight.0._u" in keys
    new = Nets(raw, info, seed=2)
    assert load_init(new, ckpt, num_classes=10) == []
    for name in ("G", "D", "G_ema"):
        assert_equal_state(getattr(new, name), getattr(old, name).state_dict())
    # Same effective weight: the parametrized forward (W / sigma) agrees in eval mode.
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(new.D.eval()(x), old.D.eval()(x))
    plain = Nets({**raw, "regularizers": []}, info)
    with pytest.raises(ConfigError, match="spectral_norm differs between the checkpoint's run and this config"):
        load_init(plain, ckpt, num_classes=10)


# -- FreezeD -----------------------------------------------------------------------------------


def test_freeze_counts_dcgan_blocks_from_the_input_side():
    raw = {"data": {"kind": "digits"}, "generator": {"kind": "dcgan", "latent_dim": 8, "base_width": 8},
           "discriminator": {"kind": "dcgan", "base_width": 8, "bias": True}}
    D = Nets(raw, DIGITS16).D  # 16 px: conv(1->8)+lrelu, conv(8->16)+BN+lrelu, conv(16->1)
    assert freeze_d_layers(D, 1) == ["net.0.weight", "net.0.bias"]
    assert [n for n, p in D.named_parameters() if p.requires_grad] == ["net.2.weight", "net.3.weight", "net.3.bias",
                                                                       "net.5.weight", "net.5.bias"]
    D = Nets(raw, DIGITS16).D
    assert freeze_d_layers(D, 2) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.3.weight", "net.3.bias"]
    with pytest.raises(ConfigError, match=r"^init.freeze_d_layers: 3 is more than the 2 blocks of this "
                                          r"DCGANDiscriminator; use 0 to 2$"):
        freeze_d_layers(Nets(raw, DIGITS16).D, 3)
    assert freeze_d_layers(D, 0) == []


def test_freeze_stylegan2_takes_the_first_block_with_its_from_rgb_and_the_optimizer_skips_frozen():
    raw = {"data": {"kind": "digits"},
           "generator": {"kind": "stylegan2", "latent_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 64},
           "discriminator": {"kind": "stylegan2", "channel_base": 64, "channel_max": 16}}
    D = Nets(raw, DIGITS16).D
    assert len(discriminator_blocks(D)) == 2  # 16 -> 8 -> 4
    frozen = freeze_d_layers(D, 1)
    assert {n.split(".")[0] for n in frozen} == {"b16"} and "b16.fromrgb.weight" in frozen
    before = {n: p.detach().clone() for n, p in D.named_parameters()}
    opt = build_optimizer(parse_config({**raw, "optim": {"d": {"kind": "adam", "lr": 0.1}}}).optim.d, D, "optim.d")
    assert sum(len(g["params"]) for g in opt.param_groups) == len(before) - len(frozen)
    D(torch.randn(4, 1, 16, 16)).square().mean().backward()
    opt.step()
    for name, p in D.named_parameters():
        assert torch.equal(p, before[name]) == (name in frozen), name


@pytest.mark.parametrize("kind", DISCRIMINATORS.names())
def test_every_discriminator_has_blocks_and_freezing_all_leaves_only_the_head(kind):
    D = build_discriminator(Component(kind, DISCRIMINATORS.tiny(kind)), DIGITS16)
    blocks = discriminator_blocks(D)
    assert blocks, kind
    names = [n for n, _ in D.named_parameters()]
    frozen = freeze_d_layers(D, len(blocks))
    trainable = [n for n, p in D.named_parameters() if p.requires_grad]
    assert trainable and sorted(frozen + trainable) == sorted(names)
    # Frozen names come first in D's own order: the input side.
    assert names[: len(frozen)] == frozen
