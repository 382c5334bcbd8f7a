"""The architectures against their references: BigGAN's attention placement, plain shared
embedding and CIFAR layout (ajbrock/BigGAN-PyTorch BigGAN.py), the WGAN-GP critic's mean pooling
(igul222 gan_cifar_resnet.py), StyleGAN2's noise modes (stylegan2-ada-pytorch networks.py), MLPs
on images, and what data each architecture declares it accepts."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from conftest import CONFIGS, tiny_config, write_config
from ganforge.accepts import accepts_of
from ganforge.build import build_discriminator, build_generator, build_networks
from ganforge.config import Component, load_config
from ganforge.data import DataInfo
from ganforge.errors import ConfigError, GanforgeError
from ganforge.registry import DISCRIMINATORS, GENERATORS

TINY = {"base_width": 1, "max_width": 64}


def block_outputs(D: nn.Module, x: torch.Tensor, kind: type) -> list[tuple[int, int]]:
    """(channels, side) after each module of type `kind` in D.blocks, in order, from a forward pass."""
    seen: list[tuple[int, int]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append((out.shape[1], out.shape[-1])))
             for m in D.blocks if isinstance(m, kind)]
    with torch.no_grad():
        D(x, torch.zeros(len(x), dtype=torch.long))
    for h in hooks:
        h.remove()
    return seen


def attention_inputs(net: nn.Module, run) -> list[int]:
    """The side of the feature map each self-attention layer of `net` sees during `run()`."""
    from ganforge.models.resnet import SelfAttention

    sides: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, inp, _o: sides.append(inp[0].shape[-1]))
             for m in net.modules() if isinstance(m, SelfAttention)]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return sides


# -- BigGAN self-attention -----------------------------------------------------------------------


def test_biggan_attention_at_64_is_built_right_after_the_first_block_at_128px():
    info = DataInfo("img", (3, 128, 128), num_classes=4)
    widths = {"base_width": 8, "max_width": 32}  # attention needs channels // 8 >= 1
    D = build_discriminator(Component("biggan", {**widths, "attention_resolution": 64}), info)
    G = build_generator(Component("biggan", {**widths, "latent_dim": 12, "shared_dim": 4,
                                             "attention_resolution": 64}), info)
    x = torch.randn(2, 3, 128, 128)
    # BigGAN's D at 128 px: its first block halves 128 to 64, and attention follows it.
    assert attention_inputs(D, lambda: D(x, torch.zeros(2, dtype=torch.long))) == [64]
    assert type(D.blocks[1]).__name__ == "SelfAttention"
    G.eval()
    assert attention_inputs(G, lambda: G(torch.randn(2, 12), torch.zeros(2, dtype=torch.long))) == [64]


def test_biggan_default_attention_is_at_64_where_a_block_has_it():
    from ganforge.models.resnet import SelfAttention

    def attention_layers(resolution: int) -> tuple[int, int]:
        info = DataInfo("img", (1, resolution, resolution), num_classes=4)
        widths = {"base_width": 8, "max_width": 16}
        D = build_discriminator(Component("biggan", widths), info)
        G = build_generator(Component("biggan", {**widths, "latent_dim": 60, "shared_dim": 4}), info)  # 4-6 chunks
        return tuple(sum(isinstance(m, SelfAttention) for m in net.modules()) for net in (G, D))

    # 64 px: G's last block outputs 64, D's blocks 32 and below; 32 px: neither (BigGAN's G_attn='64').
    assert [attention_layers(r) for r in (128, 64, 32)] == [(1, 1), (1, 0), (0, 0)]


@pytest.mark.parametrize("part", ["generator", "discriminator"])
def test_an_attention_resolution_that_matches_no_block_is_refused(part):
    info = DataInfo("img", (3, 128, 128), num_classes=4)
    params = {**TINY, "attention_resolution": 48}
    if part == "generator":
        params.update(latent_dim=12, shared_dim=4)
    build = build_generator if part == "generator" else build_discriminator
    # D's blocks output 64, 32, 16, 8, 4, 4 (BigGAN's D_arch[128]); G's 8, 16, 32, 64, 128.
    listed = "64, 32, 16, 8, 4" if part == "discriminator" else "8, 16, 32, 64, 128"
    with pytest.raises(ConfigError, match=f"{part} \\(biggan\\): attention_resolution 48 matches no block; "
                                          f"blocks output {listed}"):
        build(Component("biggan", params), info)


# -- BigGAN's architecture: BigGAN.py G_arch / D_arch ---------------------------------------------


@pytest.mark.parametrize(("resolution", "d_layout", "g_widths"), [
    # (channels in units of ch, side) after each D block, read off D_arch; G widths from G_arch.
    (32, [(4, 16), (4, 8), (4, 8), (4, 8)], [4, 4, 4, 4]),
    (64, [(1, 32), (2, 16), (4, 8), (8, 4), (16, 4)], [16, 16, 8, 4, 2]),
    (128, [(1, 64), (2, 32), (4, 16), (8, 8), (16, 4), (16, 4)], [16, 16, 8, 4, 2, 1]),
])
def test_biggan_follows_the_reference_layout(resolution, d_layout, g_widths):
    from ganforge.models.resnet import DBlock

    ch = 2
    info = DataInfo("img", (3, resolution, resolution), num_classes=4)
    params = {"base_width": ch, "max_width": 1024, "attention_resolution": 0}
    D = build_discriminator(Component("biggan", params), info)
    G = build_generator(Component("biggan", {**params, "latent_dim": 4 * len(g_widths), "shared_dim": 4}), info)
    x = torch.randn(2, 3, resolution, resolution)
    assert block_outputs(D, x, DBlock) == [(c * ch, side) for c, side in d_layout]
    assert G.widths == [c * ch for c in g_widths]


def test_biggan_cifar10_config_builds_the_cifar_script_networks():
    cfg, _ = load_config(CONFIGS / "biggan_cifar10.yaml")
    info = DataInfo("cifar10", (3, 32, 32), num_classes=10)
    torch.manual_seed(0)
    G, D, regs = build_networks(cfg, info)
    # G_ch = D_ch = 64: 4 x 64 = 256 channels in every block (G_arch[32], D_arch[32]).
    assert G.widths == [256] * 4 and G.shared is None and not G.hierarchical
    from ganforge.models.resnet import DBlock

    assert block_outputs(D, torch.randn(2, 3, 32, 32), DBlock) == [(256, 16), (256, 8), (256, 8), (256, 8)]
    assert [kind for kind, _ in regs] == ["spectral_norm"]  # --G_ortho 0.0: no orthogonal regularization
    # N02 init: the raw weights (spectral norm keeps them as `original`) have std 0.02.
    for conv in (G.blocks[1].conv1, D.blocks[2].conv2):
        assert conv.parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.05)


# -- spectral norm leaves BigGAN's shared embedding alone -------------------------------------


def test_spectral_norm_skips_the_shared_embedding_but_not_the_conditional_bn_layers():
    from ganforge.models.resnet import ConditionalBatchNorm2d
    from ganforge.regularizers.networks import SpectralNorm

    info = DataInfo("img", (1, 16, 16), num_classes=10)
    G = build_generator(Component("biggan", {"base_width": 2, "max_width": 8, "latent_dim": 12, "shared_dim": 4,
                                             "attention_resolution": 0}), info)
    D = build_discriminator(Component("biggan", {"base_width": 2, "max_width": 8, "attention_resolution": 0}), info)
    SpectralNorm(discriminator=True, generator=True).setup(G, D)  # spectral_norm: {generator: true}
    assert isinstance(G.shared, nn.Embedding)
    assert not parametrize.is_parametrized(G.shared)
    cbn = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(cbn) == 4  # two per block, two blocks at 16 px
    for m in cbn:
        assert parametrize.is_parametrized(m.gain, "weight") and parametrize.is_parametrized(m.bias, "weight")
    assert parametrize.is_parametrized(G.linear, "weight") and parametrize.is_parametrized(D.embed, "weight")


def test_per_class_bn_gains_stay_plain_as_the_reference_embeddings():
    """Without the shared embedding (BigGAN's CIFAR script) the gains are per-class nn.Embedding
    rows in the reference: never spectrally normalised."""
    from ganforge.models.resnet import ConditionalBatchNorm2d
    from ganforge.regularizers.networks import apply_spectral_norm

    info = DataInfo("img", (1, 16, 16), num_classes=10)
    G = build_generator(Component("biggan", {"base_width": 2, "max_width": 8, "latent_dim": 12, "shared_dim": 0,
                                             "hierarchical": False, "attention_resolution": 0}), info)
    apply_spectral_norm(G)
    cbn = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert G.shared is None and cbn
    assert not any(parametrize.is_parametrized(m.gain) for m in cbn)


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
    G = build_generator(Component("stylegan2", {"base_width": 4, "max_width": 8, "latent_dim": 8, "w_dim": 8,
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
    from ganforge.sample import LoadedGenerator, sample

    loaded = LoadedGenerator(noisy_stylegan2().eval(), DataInfo("img", (1, 16, 16)), 0, tmp_path, {})
    state = torch.get_rng_state()
    a, b, c = sample(loaded, 4, seed=3), sample(loaded, 4, seed=3), sample(loaded, 4, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # The same z with const noise differs from the random-noise sample only by the noise.
    const = sample(loaded, 4, seed=3, noise_mode="const")
    assert not torch.allclose(a, const)
    assert torch.equal(const, sample(loaded, 4, seed=3, noise_mode="const"))


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
    """Image architectures refuse vectors and build from their declared smallest resolution, not
    below it; the MLPs take both."""
    build = build_generator if registry is GENERATORS else build_discriminator
    tiny = {"base_width": 2, "max_width": 4, "latent_dim": 12, "w_dim": 4, "shared_dim": 4, "attention_resolution": 0,
            "width": 8, "conditional": False}
    vectors = DataInfo("vec", (2,))
    for kind in registry.names():
        declared = accepts_of(registry.get(kind).builder)
        params = {k: v for k, v in tiny.items() if k in inspect.signature(registry.get(kind).builder).parameters}
        smallest = DataInfo("img", (1, declared.min_resolution, declared.min_resolution))
        assert declared.images and declared.problem(smallest) is None, kind
        build(Component(kind, params), smallest)
        if declared.vectors:
            build(Component(kind, params), vectors)
            continue
        assert declared.problem(vectors) is not None, kind
        half = declared.min_resolution // 2  # the constructor itself refuses it (not only the declaration)
        with pytest.raises(ValueError, match=f"resolution {half} is not supported"):
            registry.get(kind).builder(channels=1, resolution=half, **params)
    assert accepts_of(registry.get("mlp").builder).vectors
