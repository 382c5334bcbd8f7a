"""Per-seed generation (`sample --seeds`) and the truncation trick of every generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, one_line_error, run_cli, tiny_config, write_config
from ganforge.build import build_networks
from ganforge.config import parse_config
from ganforge.data import DataInfo
from ganforge.generation import (
    MAX_SEEDS,
    NoiseStream,
    parse_seeds,
    sample_noise,
    seed_latent,
    truncation_for,
)
from ganforge.generation.drawing import LoadedGenerator, seed_batches


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny digits DCGAN, trained 6 steps."""
    from typer.testing import CliRunner

    from ganforge.cli import app

    tmp = tmp_path_factory.mktemp("seeds")
    result = CliRunner().invoke(app, ["train", str(write_config(tmp, tiny_config(tmp / "run"))), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return tmp / "run"


def pixels(folder: Path, seed: int) -> np.ndarray:
    return np.asarray(Image.open(folder / f"seed{seed:04d}.png"))


def test_a_seeds_image_is_the_same_whatever_else_is_drawn(cli, run, tmp_path):
    # One call asks for 0-5 and 100 in batches of 4; the other for 100, 3 and 1 in batches of 1.
    a, b = tmp_path / "a", tmp_path / "b"
    result = cli("sample", str(run), "--seeds", "0-5,100", "--batch-size", "4", "--out", str(a), "-q", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in a.iterdir()) == [f"seed{s:04d}.png" for s in (0, 1, 2, 3, 4, 5, 100)]
    assert json.loads(result.stdout)["seeds"] == [0, 1, 2, 3, 4, 5, 100]
    assert cli("sample", str(run), "--seeds", "100,3,1", "--batch-size", "1", "--out", str(b), "-q").exit_code == 0
    for seed in (100, 3, 1):
        assert np.array_equal(pixels(a, seed), pixels(b, seed)), seed
    assert not np.array_equal(pixels(a, 1), pixels(a, 3))  # different seeds, different images


def test_seed_latent_is_stylegan2_ada_generate_z():
    # generate.py: z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
    for seed in (0, 7, 2**32 - 1):
        assert torch.equal(seed_latent(seed, 12), torch.from_numpy(np.random.RandomState(seed).randn(1, 12)[0]).float())


def _stylegan2(conditional: bool = False) -> LoadedGenerator:
    raw = {"data": {"kind": "digits", "resolution": 8}, "generator": {"kind": "stylegan2", "latent_dim": 8,
           "w_dim": 8, "channel_base": 64, "channel_max": 8, "mapping_layers": 1, "conditional": conditional},
           "discriminator": {"kind": "stylegan2", "channel_base": 64, "channel_max": 8}}
    info = DataInfo("digits", (1, 8, 8), 10)
    torch.manual_seed(0)
    G = build_networks(parse_config(raw), info)[0].eval().requires_grad_(False)
    for name, p in G.named_parameters():
        if "noise_strength" in name:
            p.fill_(0.5)  # trained strengths (they start at 0): the noise maps show in the images
    return LoadedGenerator(G, info, 0, Path("x.pt"), raw)


def test_stylegan2_random_pixel_noise_is_drawn_per_seed():
    loaded = _stylegan2()
    whole = torch.cat(list(seed_batches(loaded, [4, 9, 2], batch_size=3, noise_mode="random")))
    alone = torch.cat(list(seed_batches(loaded, [2], noise_mode="random")))
    torch.randn(50)  # the caller's random state plays no part
    again = torch.cat(list(seed_batches(loaded, [9, 2], batch_size=1, noise_mode="random")))
    assert torch.equal(whole[2], alone[0]) and torch.equal(whole[1:], again)
    const = torch.cat(list(seed_batches(loaded, [4], noise_mode="const")))
    assert not torch.equal(const[0], whole[0])  # the noise mode is applied
    # w-space truncation at psi = 0 gives w_avg for every seed: with constant noise, one image.
    flat = torch.cat(list(seed_batches(loaded, [1, 2], truncation=0.0)))
    assert torch.allclose(flat[0], flat[1])


def test_seeds_combine_with_class_and_truncation(cli, tmp_path):
    loaded = _stylegan2(conditional=True)
    plain = torch.cat(list(seed_batches(loaded, [5, 6], class_index=3)))
    other = torch.cat(list(seed_batches(loaded, [5, 6], class_index=4)))
    truncated = torch.cat(list(seed_batches(loaded, [5, 6], class_index=3, truncation=0.5)))
    assert not torch.equal(plain, other) and not torch.equal(plain, truncated)
    with pytest.raises(Exception, match="conditional: name the class"):
        list(seed_batches(loaded, [1]))


def test_truncated_normal_redraws_values_beyond_the_threshold():
    t = 0.5
    z = sample_noise(2000, 16, 3, torch.device("cpu"), threshold=t)
    assert z.abs().max() <= t
    # Inside the threshold the truncated normal keeps the normal's shape: more mass near 0 than at
    # the edge (a clamp would pile values at +-t; uniform draws would be flat).
    assert (z.abs() < 0.1).float().mean() > 1.1 * (z.abs() > 0.4).float().mean()
    assert (z.abs() == t).sum() == 0
    # Batch-independent: drawn a few rows at a time, the same rows as in one piece.
    stream = NoiseStream(2000, 16, 3, threshold=t)
    assert torch.equal(torch.cat([stream.take(7), stream.take(993), stream.take(1000)]), z)
    per_seed = seed_latent(11, 64, threshold=0.3)
    assert per_seed.abs().max() <= 0.3
    # The values within the threshold stay those of the plain draw, in order.
    plain = torch.from_numpy(np.random.RandomState(11).randn(64)).float()
    kept = plain[plain.abs() <= 0.3]
    assert torch.equal(per_seed[: len(kept)], kept)


def test_truncation_kinds_and_limits():
    from ganforge.models.dcgan import DCGANGenerator

    G = DCGANGenerator(latent_dim=4, resolution=16, channels=1)
    assert truncation_for(G, 0.7).threshold == 0.7 and truncation_for(G, 0.7).g_kwargs == {}
    sg2 = _stylegan2().G
    assert truncation_for(sg2, 0.0).g_kwargs == {"truncation": 0.0} and truncation_for(sg2, 0.0).threshold is None
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(Exception, match="truncated normal"):
            truncation_for(G, bad)


def test_bad_seeds_and_truncation_are_one_line_errors(cli, run, tmp_path):
    assert parse_seeds("0-3, 7 ,2") == [0, 1, 2, 3, 7]
    cases = [(["--seeds", "5-2"], "runs backwards"), (["--seeds", "x"], "'x' is not a seed"),
             (["--seeds", f"0-{MAX_SEEDS}"], "more than 100,000 seeds"),
             (["--seeds", f"0-{MAX_SEEDS - 1},{MAX_SEEDS + 5}"], "more than 100,000 seeds"),
             (["--seeds", "1-3", "--num", "4"], "without --num and --seed"),
             (["--num", "4", "--truncation", "0"], "threshold must be in (0, 1]")]
    for args, fragment in cases:
        one_line_error(cli("sample", str(run), *args, "--out", str(tmp_path / "x")), 2, fragment)
    # As a user runs it: one line, exit 2, no traceback (click's own range check for > 1).
    assert_one_line_error(run_cli("sample", str(run), "--seeds", "1-3", "--truncation", "1.5", "--out",
                                  str(tmp_path / "x")), 2, "--truncation")
    assert not (tmp_path / "x").exists()


def test_truncation_in_sample_and_eval_is_named_in_their_json(cli, tmp_path):
    # A 2D run: eval's figures (modes) are quick; each command names the truncation it used.
    cfg = {"data": {"kind": "gaussian_ring"}, "generator": {"kind": "mlp", "width": 16, "depth": 2},
           "discriminator": {"kind": "mlp", "width": 16, "depth": 2},
           "train": {"steps": 4, "batch_size": 16, "device": "cpu"}, "log": {"every": 2},
           "samples": {"every": 4}, "checkpoint": {"every": 4}, "eval": {"num_samples": 200},
           "output": {"dir": str(tmp_path / "ring")}}
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    run = tmp_path / "ring"
    out = json.loads(cli("sample", str(run), "--num", "300", "--truncation", "0.2", "--out",
                         str(tmp_path / "p.npy"), "-q", "--json").stdout)
    assert out["truncation"] == 0.2 and "truncated to [-0.2, 0.2]" in out["truncation_rule"]
    narrow, wide = np.load(tmp_path / "p.npy"), None
    cli("sample", str(run), "--num", "300", "--out", str(tmp_path / "w.npy"), "-q")
    wide = np.load(tmp_path / "w.npy")
    assert narrow.std(0).sum() < wide.std(0).sum()  # z near 0: samples gather
    report = json.loads(cli("eval", str(run), "--truncation", "0.5", "--num", "200", "-q", "--json",
                            "--out", str(tmp_path / "e.json")).stdout)
    assert report["truncation"] == 0.5 and "truncated" in report["truncation_rule"]
    assert json.loads((tmp_path / "e.json").read_text())["truncation"] == 0.5
