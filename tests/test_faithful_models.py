"""The architectures against their references: BigGAN's attention placement, layouts, plain shared
embedding, spectral norm and BatchNorm layouts (ajbrock/BigGAN-PyTorch BigGAN.py, layers.py; its
weights and outputs: test_parity_biggan.py), the WGAN-GP critic's mean pooling
(igul222 gan_cifar_resnet.py), StyleGAN2's noise modes, per-batch style mixing, block layout and
widths (stylegan2-ada-pytorch networks.py, loss.py), MLPs on images, and what data each
architecture declares it accepts."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from conftest import CONFIGS, tiny_config, write_config
from ganforge.build import build_discriminator, build_generator, build_networks
from ganforge.config import Component, load_config
from ganforge.data import DataInfo
from ganforge.errors import ConfigError, GanforgeError
from ganforge.registry import DISCRIMINATORS, GENERATORS


def block_outputs(D: nn.Module, x: torch.Tensor) -> list[tuple[int, int]]:
    """(channels, side) after each residual block of a biggan D, in order, from a forward pass."""
    from ganforge.models.biggan import DBlock

    seen: list[tuple[int, int]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append((out.shape[1], out.shape[-1])))
             for m in D.modules() if isinstance(m, DBlock)]
    with torch.no_grad():
        D(x, torch.zeros(len(x), dtype=torch.long))
    for h in hooks:
        h.remove()
    return seen


def attention_inputs(net: nn.Module, run) -> list[int]:
    """The side of the feature map each self-attention layer of `net` sees during `run()`."""
    from ganforge.models.biggan import Attention

    sides: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, inp, _o: sides.append(inp[0].shape[-1]))
             for m in net.modules() if isinstance(m, Attention)]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return sides


# -- BigGAN self-attention -----------------------------------------------------------------------


def test_biggan_attention_at_64_is_built_right_after_the_first_block_at_128px():
    info = DataInfo("img", (3, 128, 128), num_classes=4)
    D = build_discriminator(Component("biggan", {"ch": 8, "attention": [64]}), info)  # 8 channels at 64
    G = build_generator(Component("biggan", {"ch": 4, "dim_z": 12, "shared_dim": 4, "attention": [64]}), info)
    x = torch.randn(2, 3, 128, 128)
    # BigGAN's D at 128 px: its first block halves 128 to 64, and attention follows it (blocks.0.1).
    assert attention_inputs(D, lambda: D(x, torch.zeros(2, dtype=torch.long))) == [64]
    assert type(D.blocks[0][1]).__name__ == "Attention"
    G.eval()
    assert attention_inputs(G, lambda: G(torch.randn(2, 12), torch.zeros(2, dtype=torch.long))) == [64]


def test_biggan_default_attention_is_at_64_where_a_block_has_it():
    from ganforge.models.biggan import Attention

    def attention_layers(resolution: int) -> tuple[int, int]:
        info = DataInfo("img", (1, resolution, resolution), num_classes=4)
        D = build_discriminator(Component("biggan", {"ch": 8}), info)
        G = build_generator(Component("biggan", {"ch": 4, "dim_z": 60, "shared_dim": 4}), info)  # 4-6 chunks
        return tuple(sum(isinstance(m, Attention) for m in net.modules()) for net in (G, D))

    # 64 px: G's last block outputs 64, D's blocks 32 and below; 32 px: neither (BigGAN's G_attn='64').
    assert [attention_layers(r) for r in (128, 64, 32)] == [(1, 1), (1, 0), (0, 0)]


def test_biggan_d_attention_follows_the_reference_table_at_32px():
    """D_arch[32] gives every block resolution 16, whatever it outputs: attention "at 16" follows
    all four blocks (a state dict of BigGAN-PyTorch with --D_attn 16 has blocks.0.1 to blocks.3.1)."""
    D = build_discriminator(Component("biggan", {"ch": 2, "attention": [16]}), DataInfo("img", (3, 32, 32), 4))
    sides = attention_inputs(D, lambda: D(torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)))
    assert sides == [16, 8, 8, 8]
    with pytest.raises(ConfigError, match="attention 8 matches no block; blocks are at 16 "):
        build_discriminator(Component("biggan", {"ch": 2, "attention": [8]}), DataInfo("img", (3, 32, 32), 4))


@pytest.mark.parametrize("part", ["generator", "discriminator"])
def test_an_attention_resolution_that_matches_no_block_is_refused(part):
    info = DataInfo("img", (3, 128, 128), num_classes=4)
    params = {"ch": 1, "attention": [48]}
    if part == "generator":
        params.update(dim_z=12, shared_dim=4)
    build = build_generator if part == "generator" else build_discriminator
    # D's table (D_arch[128]): 64, 32, 16, 8, 4, 4; G's (G_arch[128]): 8, 16, 32, 64, 128.
    listed = "64, 32, 16, 8, 4" if part == "discriminator" else "8, 16, 32, 64, 128"
    with pytest.raises(ConfigError, match=f"{part} \\(biggan\\): attention 48 matches no block; "
                                          f"blocks are at {listed} \\(an empty list: no attention\\)"):
        build(Component("biggan", params), info)
    at = 64 if part == "discriminator" else 128  # where ch 1 gives one channel
    with pytest.raises(ConfigError, match=f"attention at {at} needs at least 8 channels there \\(it has 1\\)"):
        build(Component("biggan", {**params, "attention": [at]}), info)


# -- BigGAN's architecture: BigGAN.py G_arch / D_arch ---------------------------------------------


@pytest.mark.parametrize(("resolution", "d_layout", "g_widths"), [
    # (channels in units of ch, side) after each D block, read off D_arch; G widths from G_arch.
    (16, [(4, 8), (4, 8), (4, 8)], [4, 4, 4]),  # ganforge's extrapolation of the 32 px layout
    (32, [(4, 16), (4, 8), (4, 8), (4, 8)], [4, 4, 4, 4]),
    (64, [(1, 32), (2, 16), (4, 8), (8, 4), (16, 4)], [16, 16, 8, 4, 2]),
    (128, [(1, 64), (2, 32), (4, 16), (8, 8), (16, 4), (16, 4)], [16, 16, 8, 4, 2, 1]),
    (256, [(1, 128), (2, 64), (4, 32), (8, 16), (8, 8), (16, 4), (16, 4)], [16, 16, 8, 8, 4, 2, 1]),
])
def test_biggan_follows_the_reference_layout(resolution, d_layout, g_widths):
    ch = 1
    info = DataInfo("img", (3, resolution, resolution), num_classes=4)
    D = build_discriminator(Component("biggan", {"ch": ch, "attention": []}), info)
    G = build_generator(Component("biggan", {"ch": ch, "attention": [], "dim_z": 4 * len(g_widths),
                                             "shared_dim": 4}), info)
    x = torch.randn(2, 3, resolution, resolution)
    assert block_outputs(D, x) == [(c * ch, side) for c, side in d_layout]
    assert G.widths == [c * ch for c in g_widths]


def test_biggan_cifar10_config_builds_the_cifar_script_networks():
    cfg, _ = load_config(CONFIGS / "biggan_cifar10.yaml")
    info = DataInfo("cifar10", (3, 32, 32), num_classes=10)
    torch.manual_seed(0)
    G, D, regs = build_networks(cfg, info)
    # G_ch = D_ch = 64: 4 x 64 = 256 channels in every block (G_arch[32], D_arch[32]).
    assert G.widths == [256] * 4 and not hasattr(G, "shared") and not G.hier and G.latent_dim == 128
    assert block_outputs(D, torch.randn(2, 3, 32, 32)) == [(256, 16), (256, 8), (256, 8), (256, 8)]
    assert regs == []  # spectral norm built in; --G_ortho 0.0: no orthogonal regularization
    # Without --G_shared the BN gains are per-class embeddings of the class index.
    assert type(G.blocks[0][0].bn1.gain) is nn.Embedding and G.blocks[0][0].bn1.gain.num_embeddings == 10
    # N02 init: the raw weights have std 0.02.
    for conv in (G.blocks[1][0].conv1, D.blocks[2][0].conv2):
        assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert G.blocks[1][0].conv1.sn_eps == 1e-8 and G.blocks[0][0].bn1.eps == 1e-5  # --SN_eps, --BN_eps defaults


# -- BigGAN's own spectral norm and BatchNorm -----------------------------------------------------


def test_biggan_spectral_norm_divides_by_the_power_iteration_estimate():
    from ganforge.models.biggan import SNLinear

    torch.manual_seed(0)
    layer = SNLinear(6, 4, num_svs=1, num_itrs=1, eps=1e-12)
    for _ in range(50):  # training-mode passes: the power iteration converges on the top singular value
        layer(torch.randn(2, 6))
    sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
    assert layer.sv0.item() == pytest.approx(sigma.item(), rel=1e-5)
    layer.eval()
    u = layer.u0.clone()
    x = torch.randn(3, 6)
    assert torch.allclose(layer(x), x @ (layer.weight / sigma).T + layer.bias, atol=1e-6)
    assert torch.equal(layer.u0, u)  # eval mode: u stays


def test_biggan_keeps_the_shared_embedding_plain_and_refuses_a_second_spectral_norm(tmp_path):
    from ganforge.models.biggan import SNEmbedding, SNLinear

    info = DataInfo("img", (1, 16, 16), num_classes=10)
    G = build_generator(Component("biggan", {"ch": 2, "dim_z": 12, "shared_dim": 4}), info)
    D = build_discriminator(Component("biggan", {"ch": 2}), info)
    # BigGAN applies no spectral norm to G's shared embedding; its BN gains and D's projection have it.
    assert type(G.shared) is nn.Embedding and "shared.u0" not in G.state_dict()
    assert isinstance(G.blocks[0][0].bn1.gain, SNLinear) and isinstance(D.embed, SNEmbedding)
    cfg = tiny_config(tmp_path / "run", generator={"kind": "biggan", "ch": 2, "dim_z": 12, "shared_dim": 4},
                      discriminator={"kind": "biggan", "ch": 2}, loss={"kind": "hinge"},
                      regularizers=[{"kind": "spectral_norm", "discriminator": True, "generator": False}])
    cfg_path = write_config(tmp_path, cfg)
    with pytest.raises(ConfigError, match="^regularizers.0 \\(spectral_norm\\): the discriminator has its own "
                                          "spectral norm built in \\(biggan: BigGAN-PyTorch's"):
        build_networks(load_config(cfg_path)[0], info)


def test_orthogonal_regularization_leaves_the_shared_embedding_out():
    from ganforge.regularizers.generator import Orthogonal

    G = build_generator(Component("biggan", {"ch": 2, "dim_z": 12, "shared_dim": 4}),
                        DataInfo("img", (1, 16, 16), num_classes=10))
    term = Orthogonal(weight=1.0).g_term(0, G, None, None, None, torch.zeros(1), None)
    term.loss.backward()
    assert G.shared.weight.grad is None  # BigGAN-PyTorch: blacklist=G.shared.parameters()
    assert G.blocks[0][0].bn1.gain.weight.grad.abs().sum() > 0 and G.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("layout", ["stored", "mybn", "cross_replica"])
def test_standing_statistics_average_every_pass_in_each_batchnorm_layout(layout):
    """Standing statistics of a biggan G: each BN layer's statistics become the mean over the
    passes of its batch mean (and variance), whichever of the reference's layouts keeps them."""
    from ganforge.generation import standing_stats

    flags = {"mybn": layout == "mybn", "cross_replica": layout == "cross_replica"}
    G = build_generator(Component("biggan", {"ch": 2, "dim_z": 12, "shared_dim": 4, **flags}),
                        DataInfo("img", (1, 16, 16), num_classes=10)).eval()
    bn = G.blocks[1][0].bn2
    seen: list[torch.Tensor] = []
    hook = bn.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    assert standing_stats(G, batches=3, batch_size=8, seed=1)
    hook.remove()
    assert len(seen) == 3 and not G.training
    expected_mean = torch.stack([x.mean((0, 2, 3)) for x in seen]).mean(0)
    expected_var = torch.stack([x.var((0, 2, 3), unbiased=layout != "mybn") for x in seen]).mean(0)
    owner = bn if layout == "stored" else bn.bn
    prefix = "running_" if layout == "cross_replica" else "stored_"
    mean, var = (getattr(owner, prefix + what) for what in ("mean", "var"))
    assert torch.allclose(mean, expected_mean, atol=1e-5) and torch.allclose(var, expected_var, rtol=1e-4)


def test_biggan_state_dict_names_follow_the_batchnorm_layout():
    info = DataInfo("img", (3, 32, 32), num_classes=10)
    keys = {layout: set(build_generator(Component("biggan", {"ch": 2, "dim_z": 16, "shared_dim": 4, **flags}),
                                        info).state_dict())
            for layout, flags in {"stored": {}, "mybn": {"mybn": True}, "cross": {"cross_replica": True}}.items()}
    assert {"blocks.0.0.bn1.stored_mean", "output_layer.0.stored_var", "output_layer.0.gain"} <= keys["stored"]
    assert {"blocks.0.0.bn1.bn.stored_mean", "blocks.0.0.bn1.bn.accumulation_counter"} <= keys["mybn"]
    assert {"blocks.0.0.bn1.bn.running_mean", "blocks.0.0.bn1.bn.num_batches_tracked"} <= keys["cross"]
    with pytest.raises(ConfigError, match="cross_replica and mybn are two BatchNorm layouts; choose one"):
        build_generator(Component("biggan", {"ch": 2, "dim_z": 16, "mybn": True, "cross_replica": True}), info)


def test_sync_batchnorm_needs_the_cross_replica_layout(tmp_path):
    from ganforge.training.state import create_state

    info = DataInfo("digits", (1, 16, 16), num_classes=10)
    for cross_replica in (False, True):
        cfg = tiny_config(tmp_path / "run", generator={"kind": "biggan", "ch": 2, "dim_z": 12, "shared_dim": 4,
                                                       "cross_replica": cross_replica},
                          discriminator={"kind": "biggan", "ch": 2}, loss={"kind": "hinge"})
        cfg = load_config(write_config(tmp_path, cfg))[0]
        if cross_replica:  # torch's BatchNorm2d: converted to SyncBatchNorm
            state = create_state(cfg, info, torch.device("cpu"), sync_batchnorm=True)
            assert isinstance(state.G.blocks[0][0].bn1.bn, nn.SyncBatchNorm)
        else:
            with pytest.raises(ConfigError, match="^train.sync_batchnorm: the generator's layer blocks.0.0.bn1 keeps "
                                                  "BatchNorm statistics in a layout SyncBatchNorm cannot take over; "
                                                  "set generator.cross_replica: true"):
                create_state(cfg, info, torch.device("cpu"), sync_batchnorm=True)


def test_hierarchical_z_must_split_evenly_and_needs_the_shared_embedding():
    info = DataInfo("img", (3, 128, 128), num_classes=10)
    with pytest.raises(ConfigError, match="dim_z 128 does not split into 6 equal chunks .* BigGAN-PyTorch would use "
                                          "126"):
        build_generator(Component("biggan", {"ch": 1, "dim_z": 128, "attention": []}), info)
    with pytest.raises(ConfigError, match="hier needs shared: true"):
        build_generator(Component("biggan", {"ch": 1, "dim_z": 12, "shared": False, "attention": []}), info)


EARLIER = ("generator.latent_dim: biggan has no such parameter: use dim_z; the biggan networks now follow "
           "BigGAN-PyTorch's layout and parameter names; a checkpoint of the earlier biggan cannot be loaded "
           "(retrain it)")


def test_a_checkpoint_of_the_earlier_biggan_is_refused_in_one_line_saying_why(cli, tmp_path):
    """tests/fixtures/earlier_biggan: a run of ganforge's biggan before it took BigGAN-PyTorch's layout."""
    from conftest import ROOT

    run = ROOT / "tests" / "fixtures" / "earlier_biggan"
    for args in (["sample", str(run), "--num", "2", "--out", str(tmp_path / "out")], ["info", str(run)]):
        result = cli(*args)
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
        assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert EARLIER in errors[0]
    # Fine-tuning from it: the same reason, not a list of keys that differ.
    cfg = tiny_config(tmp_path / "new", generator={"kind": "biggan", "ch": 2, "dim_z": 12, "shared_dim": 4},
                      discriminator={"kind": "biggan", "ch": 2}, loss={"kind": "hinge"}, init={"checkpoint": str(run)})
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 2 and f"error: init.checkpoint: {run / 'checkpoints' / 'step-00000001.pt'}: " \
        f"{EARLIER}" in result.stderr


# -- ResNet D pooling ------------------------------------------------------------------------------


def test_mean_pooling_is_sum_pooling_over_the_number_of_positions():
    info = DataInfo("img", (3, 32, 32))
    torch.manual_seed(0)
    summed = build_discriminator(Component("resnet", {"base_width": 4, "max_width": 8}), info)
    mean = build_discriminator(Component("resnet", {"base_width": 4, "max_width": 8, "pool": "mean"}), info)
    mean.load_state_dict(summed.state_dict())
    x = torch.randn(3, 3, 32, 32)
    positions = 8 * 8  # SNGAN's CIFAR D ends at 8x8
    with torch.no_grad():
        assert torch.allclose(mean.features(x) * positions, summed.features(x), rtol=1e-5, atol=1e-6)
        assert torch.allclose(mean(x) * positions, summed(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "pool"), [("wgan_gp_cifar10.yaml", "mean"), ("wgan_gp_digits.yaml", "mean"),
                                            ("sngan_cifar10.yaml", "sum")])
def test_the_wgan_gp_critic_averages_and_sngan_sums(name, pool):
    cfg, _ = load_config(CONFIGS / name)
    res = cfg.data.params["resolution"]
    params = {**cfg.discriminator.params, "base_width": 2, "max_width": 4}
    D = build_discriminator(Component(cfg.discriminator.kind, params), DataInfo("img", (3, res, res)))
    assert D.pool == pool


# -- StyleGAN2 noise modes -----------------------------------------------------------------------


def noisy_stylegan2() -> nn.Module:
    torch.manual_seed(0)
    G = build_generator(Component("stylegan2", {"channel_base": 64, "channel_max": 8, "latent_dim": 8, "w_dim": 8,
                                                "mapping_layers": 1, "style_mixing": 0.0}),
                        DataInfo("img", (1, 16, 16)))
    set_noise_strength(G, 1.0)  # as after training: the noise shows in the image
    return G


@torch.no_grad()
def set_noise_strength(G: nn.Module, value: float) -> None:
    for name, p in G.named_parameters():
        if name.endswith("noise_strength"):
            p.fill_(value)


def test_stylegan2_noise_modes_do_not_depend_on_train_or_eval():
    G = noisy_stylegan2()
    z = torch.randn(3, 8)
    with torch.no_grad():
        for training in (True, False):
            G.train(training)
            G.w_avg.zero_()
            # random: fresh noise every call, repeating with the global seed
            torch.manual_seed(1)
            a = G(z)
            b = G(z)
            torch.manual_seed(1)
            assert not torch.allclose(a, b) and torch.equal(G(z), a)
            # const: the same image every call; none: as with every noise strength at zero
            assert torch.equal(G(z, noise_mode="const"), G(z, noise_mode="const"))
            assert not torch.allclose(G(z, noise_mode="const"), G(z, noise_mode="none"))
            silent = G(z, noise_mode="none")
            set_noise_strength(G, 0.0)
            assert torch.allclose(G(z), silent, atol=1e-6)
            set_noise_strength(G, 1.0)
    with pytest.raises(ValueError, match="noise_mode 'fixed'"):
        G(z, noise_mode="fixed")


def test_generate_sets_the_noise_mode_for_the_call_and_ignores_it_without_noise():
    from ganforge.generation import generate

    G = noisy_stylegan2().eval()
    z = torch.randn(5, 8)
    const = generate(G, z, None, batch_size=2, noise_mode="const")
    assert torch.allclose(const, generate(G, z, None, batch_size=5, noise_mode="const"), atol=1e-5)
    assert not torch.allclose(generate(G, z, None), generate(G, z, None))  # random by default
    with pytest.raises(GanforgeError, match="--noise-mode fixed"):
        generate(G, z, None, noise_mode="fixed")
    dcgan = build_generator(Component("dcgan", {"base_width": 2, "latent_dim": 8}), DataInfo("img", (1, 16, 16)))
    dcgan.eval()
    assert torch.equal(generate(dcgan, z, None, noise_mode="const"), generate(dcgan, z, None))


def test_sample_uses_seeded_random_noise_and_leaves_the_global_generator_alone(tmp_path):
    from ganforge.generation.drawing import LoadedGenerator, draw

    loaded = LoadedGenerator(noisy_stylegan2().eval(), DataInfo("img", (1, 16, 16)), 0, tmp_path, {})
    state = torch.get_rng_state()
    a, b, c = draw(loaded, 4, seed=3), draw(loaded, 4, seed=3), draw(loaded, 4, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # The same z with const noise differs from the random-noise sample only by the noise.
    const = draw(loaded, 4, seed=3, noise_mode="const")
    assert not torch.allclose(a, const)
    assert torch.equal(const, draw(loaded, 4, seed=3, noise_mode="const"))


# -- StyleGAN2: what the parity fixtures (test_parity_stylegan2.py) do not show -----------------------


def test_stylegan2_style_mixing_draws_one_coin_and_cutoff_per_batch():
    """StyleGAN2-ADA's run_G: with probability style_mixing the whole batch takes another z's
    styles from one cut-off layer on; otherwise no sample is mixed."""
    torch.manual_seed(0)
    G = build_generator(Component("stylegan2", {"channel_base": 64, "channel_max": 8, "latent_dim": 8, "w_dim": 8,
                                                "mapping_layers": 1, "style_mixing": 0.5}),
                        DataInfo("img", (1, 16, 16))).train()
    z = torch.randn(6, 8)
    cutoffs = []
    with torch.no_grad():
        for _ in range(40):
            ws = G.mapping_ws(z, None)
            w = G.mapping_w(z, None)
            mixed = ~torch.isclose(ws, w[:, None].expand_as(ws)).all(dim=2)  # (samples, layers)
            per_sample = {int(m.int().argmax()) if m.any() else G.num_ws for m in mixed}
            assert len(per_sample) == 1  # every sample of the batch alike
            cutoffs.append(per_sample.pop())
            assert mixed.any() == (cutoffs[-1] < G.num_ws) and mixed[:, cutoffs[-1]:].all()
    assert 10 < sum(c < G.num_ws for c in cutoffs) < 30  # about half of the batches
    assert set(cutoffs) - {G.num_ws} == set(range(1, G.num_ws))  # any layer after the first


def test_stylegan2_discriminator_blocks_are_blurred_strided_convs_and_a_skip_without_bias():
    D = build_discriminator(Component("stylegan2", {"channel_base": 64, "channel_max": 8}), DataInfo("x", (1, 16, 16)))
    block = D.b16
    assert block.skip.bias is None and block.skip.down == 2 and block.conv1.down == 2 and block.conv0.down == 1
    # conv1 halves the resolution: the [1, 3, 3, 1] blur, a stride-2 convolution, then bias and
    # leaky ReLU (gain sqrt 2), in that order.
    from ganforge.models.resample import upfirdn2d

    with torch.no_grad():
        x = torch.randn(2, 4, 16, 16)
        blurred = upfirdn2d(x, block.conv1.resample_filter, pad=(2, 2, 2, 2))
        conv = torch.nn.functional.conv2d(blurred, block.conv1.weight * block.conv1.weight_gain, stride=2)
        expected = torch.nn.functional.leaky_relu(conv + block.conv1.bias[None, :, None, None], 0.2) * 2**0.5
        torch.testing.assert_close(block.conv1(x), expected)
        assert expected.shape == (2, 8, 8, 8)
    orig = build_discriminator(Component("stylegan2", {"channel_base": 64, "channel_max": 8, "architecture": "orig"}),
                               DataInfo("x", (1, 16, 16)))
    assert not hasattr(orig.b16, "skip") and not hasattr(orig.b8, "fromrgb")
    skip = build_discriminator(Component("stylegan2", {"channel_base": 64, "channel_max": 8, "architecture": "skip"}),
                               DataInfo("x", (1, 16, 16)))
    assert hasattr(skip.b8, "fromrgb") and hasattr(skip.b4, "fromrgb")


def test_stylegan2_channel_base_gives_the_reference_widths():
    """min(channel_base / resolution, channel_max): StyleGAN2-ADA's cifar config is 512 everywhere."""
    cfg, _ = load_config(CONFIGS / "stylegan2_cifar10.yaml")
    info = DataInfo("cifar10", (3, 32, 32), 10)
    G = build_generator(cfg.generator, info)
    D = build_discriminator(cfg.discriminator, info)
    assert {b.conv1.weight.shape[0] for b in G.synthesis.blocks()} == {512}
    assert {b.conv0.weight.shape[0] for b in D.blocks()} == {512} and D.b4.conv.weight.shape[0] == 512
    assert D.b4.mbstd.group_size == 32 and D.b32.architecture == "orig" and G.synthesis.b32.architecture == "skip"
    small = build_generator(Component("stylegan2", {"channel_base": 512, "channel_max": 64, "latent_dim": 8,
                                                    "w_dim": 8}), DataInfo("x", (1, 16, 16)))
    assert [b.conv1.weight.shape[0] for b in small.synthesis.blocks()] == [64, 64, 32]


def test_a_checkpoint_of_the_earlier_bilinear_stylegan2_is_refused_in_one_line(cli, tmp_path):
    """tests/fixtures/stylegan2_bilinear: a checkpoint that ganforge wrote before stylegan2 was
    StyleGAN2-ADA's network (its config.yaml says how)."""
    old = CONFIGS.parent / "tests" / "fixtures" / "stylegan2_bilinear" / "step-00000001.pt"
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    (run / old.name).write_bytes(old.read_bytes())
    for args in (["sample", str(old), "--out", str(tmp_path / "s")], ["info", str(old)],
                 ["train", "--resume", str(run.parent)]):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "earlier ganforge" in errors[0] and "bilinear" in errors[0], result.output
    assert not (tmp_path / "s").exists()


# -- MLP on images -----------------------------------------------------------------------------------


def test_mlp_on_images_reshapes_flattens_and_trains(cli, tmp_path):
    info = DataInfo("digits", (1, 16, 16), num_classes=10)
    G = build_generator(Component("mlp", {"latent_dim": 4, "width": 8}), info)
    D = build_discriminator(Component("mlp", {"width": 8}), info)
    z = torch.randn(5, 4) * 100  # large inputs: the tanh keeps the images in range
    fake = G(z)
    assert fake.shape == (5, 1, 16, 16) and fake.abs().max() <= 1
    assert D(fake).shape == (5,)
    assert D.net[0].in_features == 256 and G.net[-1].out_features == 256
    cfg = tiny_config(tmp_path / "run", generator={"kind": "mlp", "latent_dim": 4, "width": 16},
                      discriminator={"kind": "mlp", "width": 16})
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    assert (tmp_path / "run" / "checkpoints" / "step-00000006.pt").is_file()


# -- what data each architecture declares ----------------------------------------------------------


@pytest.mark.parametrize("registry", [GENERATORS, DISCRIMINATORS], ids=["generator", "discriminator"])
def test_declared_data_match_what_builds(registry):
    """Every architecture builds, with its declared tiny settings, from exactly the data its
    declaration accepts: image sides around its declared range build where it takes them, and
    elsewhere the constructor itself refuses them (not only the config-time check) with
    "resolution R is not supported"; vector data build where it takes vectors."""
    for entry in registry.entries():
        declared, params = entry.accepts, {**entry.tiny, "conditional": False}
        params = {k: v for k, v in params.items() if k in inspect.signature(entry.builder).parameters}
        low, high = declared.min_resolution, declared.max_resolution or 2 * declared.min_resolution
        for side in sorted({low // 2, low, low + low // 2, high, 2 * high} - {0}):
            info = DataInfo("img", (1, side, side))
            if declared.takes_resolution(side):
                assert declared.problem(info) is None, (entry.name, side)
                assert entry.builder(channels=1, resolution=side, **params) is not None
            elif declared.images:
                assert declared.problem(info) is not None, (entry.name, side)
                with pytest.raises(ValueError, match=f"resolution {side} is not supported"):
                    entry.builder(channels=1, resolution=side, **params)
        vectors = DataInfo("vec", (2,))
        if declared.vectors:
            build = build_generator if registry is GENERATORS else build_discriminator
            build(Component(entry.name, params), vectors)
        else:
            assert declared.problem(vectors) is not None, entry.name
