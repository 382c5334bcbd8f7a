"""Projection (GAN inversion): a target the generator drew is found again; distances, schedule, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from ganforge.build import build_discriminator
from ganforge.cli import app as ganforge_app
from ganforge.config import Component, load_config
from ganforge.data import DataInfo
from ganforge.errors import ConfigError
from ganforge.finetune import discriminator_blocks
from ganforge.imaging import to_pil
from ganforge.project import (
    VGG_FILE,
    DiscriminatorFeatures,
    feature_distance,
    learning_rate_ramp,
    load_lpips,
    load_networks,
    noise_regularization,
    project,
)
from ganforge.registry import DISCRIMINATORS
from ganforge.run import RunDir
from ganforge.training.loop import train

STYLEGAN2 = {"generator": {"kind": "stylegan2", "latent_dim": 8, "w_dim": 16, "mapping_layers": 2, "channel_base": 128,
                           "channel_max": 16},
             "discriminator": {"kind": "stylegan2", "channel_base": 128, "channel_max": 16}}


def trained_run(folder, steps: int, **sections):
    """A tiny digits run (16 px) trained for `steps` steps; returns its folder."""
    cfg, cfg_dict = load_config(write_config(folder, tiny_config(folder / "run", **sections)),
                                [f"train.steps={steps}", "checkpoint.every=1000", "samples.every=1000"])
    run = RunDir(cfg.output.dir)
    run.create()
    train(cfg, cfg_dict, run, progress=False)
    run.release_lock()
    return folder / "run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    # The tiny DCGAN needs some tens of steps before different z give visibly different digits.
    return {"dcgan": trained_run(tmp_path_factory.mktemp("dcgan"), 40),
            "stylegan2": trained_run(tmp_path_factory.mktemp("stylegan2"), 20, **STYLEGAN2)}


def drawn_target(G, seed: int) -> torch.Tensor:
    """An image G draws from a known z (stylegan2: with its fixed noise maps)."""
    z = torch.randn(1, G.latent_dim, generator=torch.Generator().manual_seed(seed))
    extra = {"noise_mode": "const"} if "const" in getattr(G, "noise_modes", ()) else {}
    with torch.no_grad():
        return G(z, **extra)[0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("arch", ["dcgan", "stylegan2"])
def test_a_target_the_generator_drew_is_found_again(runs, arch, seed):
    loaded, D = load_networks(runs[arch], device="cpu")
    target = drawn_target(loaded.G, seed)
    before = {k: v.clone() for k, v in loaded.G.state_dict().items()}
    result = project(loaded.G, D, target, steps=100, w_avg_samples=2000, num_frames=5)
    assert result.initial_error > 1e-4  # the start (z = 0, or w_avg) is visibly another image
    assert result.final_error < 0.2 * result.initial_error, (result.initial_error, result.final_error)
    assert result.final_error == pytest.approx(float((result.image - target).pow(2).mean()), rel=1e-5)
    assert result.frame_steps == [0, 25, 50, 75, 100] and len(result.frames) == 5 and len(result.losses) == 100
    # G itself is untouched (stylegan2's noise buffers are optimised on a copy).
    for k, v in loaded.G.state_dict().items():
        assert torch.equal(v, before[k]), k
    if arch == "stylegan2":
        assert result.space == "w" and result.latent.shape == (1, loaded.G.num_ws, 16)
        assert len(result.noise) == 5  # one map per modulated conv: 4x4, then two per 8x8 and 16x16
        for noise in result.noise.values():  # renormalised after every step
            assert float(noise.mean()) == pytest.approx(0, abs=1e-5)
            assert float(noise.square().mean()) == pytest.approx(1, abs=1e-4)
    else:
        assert result.space == "z" and result.latent.shape == (1, 8) and result.noise == {}


def test_schedule_and_noise_penalty_on_hand_computed_values():
    # Up linearly over the first 5%, flat, then half a cosine over the last 25%.
    assert learning_rate_ramp(0.0) == 0.0
    assert learning_rate_ramp(0.025) == pytest.approx(0.5)
    assert learning_rate_ramp(0.5) == pytest.approx(1.0)
    assert learning_rate_ramp(0.875) == pytest.approx(0.5)  # (1 - cos(pi/2)) / 2
    assert learning_rate_ramp(1.0) == pytest.approx(0.0)
    # A constant map correlates perfectly with its shifts: (mean 1)^2 per axis and per scale.
    assert float(noise_regularization([torch.ones(1, 1, 8, 8)])) == pytest.approx(2.0)
    assert float(noise_regularization([torch.ones(1, 1, 16, 16)])) == pytest.approx(4.0)
    # A checkerboard anticorrelates with its shifts by one: (-1)^2 per axis at 16 px; pooled to 8 it is 0.
    board = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1
    assert float(noise_regularization([board.view(1, 1, 16, 16)])) == pytest.approx(2.0)


def test_feature_distance_uses_unit_feature_vectors():
    a = torch.tensor([[3.0, 4.0]]).view(1, 2, 1, 1)  # unit: (0.6, 0.8)
    b = torch.tensor([[0.0, 2.0]]).view(1, 2, 1, 1)  # unit: (0, 1)
    assert float(feature_distance([a], [b])) == pytest.approx(0.36 + 0.04)
    assert float(feature_distance([a, a], [a * 7, b])) == pytest.approx(0.4 / 2)  # scale-free; mean over layers


@pytest.mark.parametrize("kind", DISCRIMINATORS.names())
def test_discriminator_features_of_every_architecture(kind):
    # Labelled data: conditional discriminators build too.
    D = build_discriminator(Component(kind, DISCRIMINATORS.tiny(kind)), DataInfo("digits", (1, 16, 16), 10))
    features = DiscriminatorFeatures(D)
    x, y = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        fx = features(x)  # no labels needed: the head (where labels enter) never runs
        assert len(fx) == len(discriminator_blocks(D)) >= 1
        assert torch.equal(feature_distance(fx, features(x.clone())), torch.zeros(2))
        assert (feature_distance(fx, features(y)) > 0).all()


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    """Random LPIPS-VGG weights in the two published files' formats: torchvision's VGG-16 state
    dict (features.N.*; the classifier is not needed) and LPIPS' linear heads (lin{k}.model.1.weight)."""
    from torchvision.models.vgg import cfgs, make_layers

    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    features = make_layers(cfgs["D"])
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, folder / VGG_FILE)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(heads, folder / "vgg.pth")
    return folder, features, heads


def test_lpips_matches_its_definition_on_torchvision_vgg(lpips_files):
    folder, features, heads = lpips_files
    net = load_lpips(folder / "vgg.pth")
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    # By hand: LPIPS' input scaling, torchvision's VGG-16 relu1_2, relu2_2, relu3_3, relu4_3,
    # relu5_3 (indices 3, 8, 15, 22, 29), unit channel vectors, weighted squared difference, mean.
    shift, scale = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), torch.tensor([0.458, 0.448, 0.450])
    scale = scale.view(1, 3, 1, 1)

    def taps(img):
        h, out = (img - shift) / scale, []
        for i, layer in enumerate(features[:30]):
            h = layer(h)
            if i in (3, 8, 15, 22, 29):
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    expected = sum((w.view(1, -1, 1, 1) * (a - b).pow(2)).sum(1).mean(dim=(1, 2))
                   for w, a, b in zip(heads.values(), taps(x), taps(y)))
    with torch.no_grad():
        assert torch.allclose(net(x, y), expected, rtol=1e-4)
        assert torch.equal(net(x, x), torch.zeros(2))
        # Grey images are compared as RGB; a 16 px image is upsampled to 64 first.
        g = torch.rand(1, 1, 16, 16)
        assert torch.allclose(net(g, g.flip(-1)), net(g.repeat(1, 3, 1, 1), g.flip(-1).repeat(1, 3, 1, 1)))


def test_projection_with_lpips(runs, lpips_files):
    loaded, D = load_networks(runs["dcgan"], device="cpu")
    target = drawn_target(loaded.G, seed=0)
    result = project(loaded.G, D, target, steps=4, lpips=load_lpips(lpips_files[0]), num_frames=2)
    assert result.distance == "lpips" and len(result.losses) == 4 and all(map(math.isfinite, result.losses))


def test_lpips_files_missing_or_wrong_are_one_line_errors(tmp_path, lpips_files, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"^--lpips: no file .*vgg.pth; LPIPS-VGG needs vgg.pth"):
        load_lpips(tmp_path / "vgg.pth")
    (tmp_path / "vgg.pth").write_bytes((lpips_files[0] / "vgg.pth").read_bytes())
    with pytest.raises(ConfigError) as e:
        load_lpips(tmp_path / "vgg.pth")
    assert str(e.value).startswith(f"--lpips: {VGG_FILE} is in neither {tmp_path} nor {tmp_path / 'hub'}")
    torch.save({"lin0.model.1.weight": torch.ones(1, 3, 1, 1)}, tmp_path / "other.pth")
    (tmp_path / VGG_FILE).write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="could not be read as VGG-16 weights"):
        load_lpips(tmp_path / "vgg.pth")
    with pytest.raises(ConfigError, match=r"is not LPIPS-VGG's linear weights \(lin0.model.1.weight of shape"):
        load_lpips(tmp_path / "other.pth")


# -- the command -------------------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(ganforge_app, list(args), catch_exceptions=False)


def test_project_command_writes_latent_reconstruction_and_progress(runs, tmp_path):
    loaded, _ = load_networks(runs["stylegan2"], device="cpu")
    target = tmp_path / "target.png"
    to_pil(drawn_target(loaded.G, seed=1)).resize((48, 40)).save(target)  # cropped and resized back to 16 px
    out = tmp_path / "out"
    result = invoke("project", str(runs["stylegan2"]), "--target", str(target), "--out", str(out), "--steps", "30",
                    "--frames", "4", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "pixel MSE:" in result.output
    summary = json.loads((out / "projection.json").read_text())
    assert summary["space"] == "w" and summary["distance"] == "pixels + D features" and summary["steps"] == 30
    assert np.load(out / "latent.npy").shape == (1, 6, 16)  # 16 px: 1 + 2 x 2 modulated convs + the last RGB
    assert len(np.load(out / "noise.npz").files) == 5
    assert Image.open(out / "projection.png").size == (16, 16)
    # The strip: target + 4 frames of 16 px with 2 px gaps, enlarged 4x (to at least 64 px per image).
    assert Image.open(out / "progress.png").size == ((5 * 18 + 2) * 4, (18 + 2) * 4)
    assert math.isfinite(summary["pixel_mse_end"])


def test_project_command_errors_are_one_line(runs, tmp_path):
    result = invoke("project", str(runs["dcgan"]), "--target", str(tmp_path / "none.png"), "--out",
                    str(tmp_path / "o"), "--device", "cpu")
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"error: --target: no image file at {tmp_path / 'none.png'}"]
    (tmp_path / "bad.png").write_text("not an image")
    result = invoke("project", str(runs["dcgan"]), "--target", str(tmp_path / "bad.png"), "--out",
                    str(tmp_path / "o"), "--device", "cpu")
    assert result.exit_code == 2 and "could not be read as an image" in result.output
    Image.new("L", (16, 16)).save(tmp_path / "t.png")
    result = invoke("project", str(runs["dcgan"]), "--target", str(tmp_path / "t.png"), "--out",
                    str(tmp_path / "o"), "--lpips", str(tmp_path / "vgg.pth"), "--device", "cpu")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "error: --lpips: no file" in result.output and "Traceback" not in result.output
