"""Mixed precision: every registered architecture runs forward and backward under autocast with
finite results while its float32 buffers stay float32, and each shipped *_digits recipe trains
a step with train.precision bf16 or fp16 (StyleGAN2's w_avg update used to stop the first step)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import CONFIGS, tiny_overrides
from ganforge.build import build_discriminator, build_generator
from ganforge.config import Component, component_params
from ganforge.data import DataInfo
from ganforge.registry import DISCRIMINATORS, GENERATORS
from ganforge.regularizers.networks import apply_spectral_norm

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # CPU autocast takes both in torch >= 2.3

# On top of each architecture's declared tiny settings, where it has the parameter: the parts
# that reduced precision touches (self-attention; stylegan2's 16 and 8 px blocks in the reduced
# precision, 4 px not, and its clamp; a minibatch-std group that divides the batch).
AUTOCAST = {"attention": [8], "mbstd_group": 2, "num_fp16_res": 2, "conv_clamp": 256.0}


def variants(registry) -> list[tuple[str, DataInfo, bool]]:
    """(kind, data, conditional) for every registered architecture: digits-like 1x16x16 images
    (vectors too where accepted), and the conditional variant where there is one."""
    out = []
    for kind in registry.names():
        params = {p.name for p in component_params(registry.get(kind).builder, registry.injected)}
        accepts = registry.get(kind).accepts
        datas = [DataInfo("digits", (1, 16, 16), num_classes=10), DataInfo("vec", (2,), num_classes=0)]
        for info in [info for info in datas if accepts.problem(info) is None]:
            out.append((kind, info, False))
            if "conditional" in params and info.num_classes:
                out.append((kind, info, True))
    return out


def build(registry, kind: str, info: DataInfo, conditional: bool) -> nn.Module:
    names = {p.name for p in component_params(registry.get(kind).builder, registry.injected)}
    params = {**registry.tiny(kind), **{k: v for k, v in AUTOCAST.items() if k in names}}
    if "conditional" in names:
        params["conditional"] = conditional
    make = build_generator if registry is GENERATORS else build_discriminator
    return make(Component(kind, params), info)


def float_buffers(*nets: nn.Module) -> dict[str, torch.dtype]:
    return {f"{i}.{name}": b.dtype for i, net in enumerate(nets) for name, b in net.named_buffers()
            if b.is_floating_point()}


def labels_for(net: nn.Module, info: DataInfo, n: int) -> torch.Tensor | None:
    return torch.arange(n) % info.num_classes if info.num_classes else None


@pytest.mark.parametrize("precision", sorted(DTYPES))
@pytest.mark.parametrize(("kind", "info", "conditional"), variants(GENERATORS),
                         ids=lambda v: getattr(v, "name", str(v)))
def test_every_generator_under_autocast(kind, info, conditional, precision):
    torch.manual_seed(0)
    G = build(GENERATORS, kind, info, conditional)
    apply_spectral_norm(G)  # its power-iteration vectors are float32 buffers updated in the forward
    for p in G.parameters():  # as after some training (zero-initialised gains, noise strengths)
        p.data.add_(0.05 * torch.randn_like(p))
    before = float_buffers(G)
    z = torch.randn(4, G.latent_dim)
    y = labels_for(G, info, 4) if conditional else None
    with torch.autocast("cpu", dtype=DTYPES[precision]):
        out = G(z, y)
    assert out.shape == (4, *info.shape)
    assert torch.isfinite(out.float()).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() and g.dtype == torch.float32 for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert float_buffers(G) == before and set(before.values()) <= {torch.float32}
    if getattr(G, "supports_truncation", False):  # truncation reads the float32 average w
        G.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=DTYPES[precision]):
            assert torch.isfinite(G(z, y, truncation=0.5).float()).all()


@pytest.mark.parametrize("precision", sorted(DTYPES))
@pytest.mark.parametrize(("kind", "info", "conditional"), variants(DISCRIMINATORS),
                         ids=lambda v: getattr(v, "name", str(v)))
def test_every_discriminator_under_autocast(kind, info, conditional, precision):
    torch.manual_seed(0)
    D = build(DISCRIMINATORS, kind, info, conditional)
    apply_spectral_norm(D)
    before = float_buffers(D)
    x = torch.randn(4, *info.shape, requires_grad=True)
    y = labels_for(D, info, 4) if conditional else None
    with torch.autocast("cpu", dtype=DTYPES[precision]):
        logits = D(x, y)
    assert logits.shape == (4,) and torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() and g.dtype == torch.float32 for g in grads)
    assert float_buffers(D) == before and set(before.values()) <= {torch.float32}


def test_stylegan2_tracks_w_avg_in_float32_under_autocast():
    """w_avg <- lerp(w_avg, mean w, 1 - beta) in float32, as StyleGAN2-ADA."""
    torch.manual_seed(0)
    G = build(GENERATORS, "stylegan2", DataInfo("digits", (1, 16, 16)), False).train()
    z = torch.randn(6, G.latent_dim)
    with torch.no_grad():
        w = G.mapping(z, None)  # float32, outside autocast
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        G(z)
    expected = (1 - G.w_avg_beta) * w.mean(0)  # from w_avg = 0
    assert G.w_avg.dtype == torch.float32
    assert torch.allclose(G.w_avg, expected, rtol=1e-5, atol=1e-7)


def test_stylegan2_runs_only_its_num_fp16_res_highest_resolutions_in_reduced_precision():
    """StyleGAN2-ADA's num_fp16_res: here 1 of 16, 8 and 4 px; the rest, the mapping networks, the
    styles and D's epilogue stay float32, and the image accumulates in float32."""
    from ganforge.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    torch.manual_seed(0)
    G = StyleGAN2Generator(1, 16, 3, latent_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8,
                           num_fp16_res=1, conv_clamp=256, conditional=True)
    D = StyleGAN2Discriminator(1, 16, 3, channel_base=64, channel_max=8, num_fp16_res=1, conditional=True)
    seen: dict[str, torch.dtype] = {}
    modules = {"G.b4": G.synthesis.b4, "G.b16": G.synthesis.b16, "G.b16.conv1.affine": G.synthesis.b16.conv1.affine,
               "D.b16": D.b16, "D.b8": D.b8, "D.b4": D.b4, "D.mapping": D.mapping, "G.mapping": G.mapping}
    def record(name: str):  # noqa: ANN202
        def hook(_module: nn.Module, _inputs: object, out: object) -> None:
            seen[name] = (out[0] if isinstance(out, tuple) else out).dtype
        return hook

    for name, m in modules.items():
        m.register_forward_hook(record(name))
    labels = torch.tensor([0, 1, 2, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        image = G(torch.randn(4, 8), labels)
        logits = D(image, labels)
    assert image.dtype == logits.dtype == torch.float32
    assert seen["G.b16"] == seen["D.b16"] == torch.bfloat16
    assert {seen[k] for k in ("G.b4", "D.b8", "D.b4", "D.mapping", "G.mapping", "G.b16.conv1.affine")} == \
        {torch.float32}


def digits_overrides(name: str, out) -> list[str]:
    """A shipped *_digits config shrunk to a two-step CPU run."""
    from ganforge.config import load_config

    cfg, _ = load_config(CONFIGS / name)
    sets = ["train.steps=2", "train.batch_size=8", "train.device=cpu", "samples.num=8", "checkpoint.every=2",
            "log.every=1", "eval.every=0", f"output.dir={out}"]
    return sets + tiny_overrides(cfg)


DIGITS = sorted(p.name for p in CONFIGS.glob("*_digits.yaml"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", DIGITS)
def test_shipped_digits_recipes_train_in_mixed_precision(cli, tmp_path, name, precision):
    run = tmp_path / "run"
    args = [a for s in digits_overrides(name, run) + [f"train.precision={precision}"] for a in ("--set", s)]
    result = cli("train", str(CONFIGS / name), "-q", *args)
    assert result.exit_code == 0, result.stderr
    ckpt = torch.load(run / "checkpoints" / "step-00000002.pt", map_location="cpu", weights_only=True)
    for net in ("G", "D", "G_ema"):
        for key, t in ckpt["state"][net].items():
            if t.is_floating_point():
                assert t.dtype == torch.float32 and torch.isfinite(t).all(), (net, key)


def test_the_sweep_covers_every_registered_architecture():
    assert {k for k, _, _ in variants(GENERATORS)} == set(GENERATORS.names())
    assert {k for k, _, _ in variants(DISCRIMINATORS)} == set(DISCRIMINATORS.names())
    assert len(DIGITS) >= 4
