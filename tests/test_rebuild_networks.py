"""One way to rebuild networks from a checkpoint (ganforge.build.rebuild_networks): it builds what
is asked for and no more, and every loader (`ganforge.load`, `load_generator`, `load_networks`,
and the commands on them) refuses a damaged checkpoint with the same one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ganforge
from ganforge import build
from ganforge.checkpoint import load_checkpoint, serialize
from ganforge.errors import CheckpointError
from ganforge.generation.drawing import load_generator
from ganforge.project import load_networks
from ganforge.run import find_checkpoint

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_run_v1"


def fixture_checkpoint():
    file, sha = find_checkpoint(FIXTURE)
    return load_checkpoint(file, sha)


@pytest.fixture
def counted_builds(monkeypatch):
    """The calls of build_networks (each builds a G and a D) made through rebuild_networks."""
    calls = []
    original = build.build_networks

    def counting(cfg, info):  # noqa: ANN001, ANN202
        calls.append(cfg.generator.kind)
        return original(cfg, info)

    monkeypatch.setattr(build, "build_networks", counting)
    return calls


def test_g_ema_alone_is_built_once_and_nothing_else_is_kept(counted_builds):
    ckpt = fixture_checkpoint()
    nets = build.rebuild_networks(ckpt, FIXTURE, ("G_ema",))
    assert counted_builds == ["dcgan"]
    assert nets.G is None and nets.D is None and nets.G_ema is not None
    stored = ckpt.state["G_ema"]
    assert all(torch.equal(v, stored[k]) for k, v in nets.G_ema.state_dict().items())
    assert not nets.G_ema.training and not any(p.requires_grad for p in nets.G_ema.parameters())
    # sample's path: one build too.
    load_generator(FIXTURE, device="cpu")
    assert counted_builds == ["dcgan", "dcgan"]


def test_g_g_ema_and_d_take_one_build_and_their_own_weights(counted_builds):
    ckpt = fixture_checkpoint()
    nets = ganforge.load(FIXTURE, device="cpu")
    assert counted_builds == ["dcgan"]  # G_ema is a copy of G, not a second build (nor a third)
    assert nets.G is not nets.G_ema and nets.D is not None
    for name in ("G", "G_ema", "D"):
        stored = ckpt.state[name]
        assert all(torch.equal(v, stored[k]) for k, v in getattr(nets, name).state_dict().items()), name
    # The fixture's G and G_ema differ: a G_ema that shared G's tensors would fail the loop above.
    assert not torch.equal(ckpt.state["G"]["net.0.weight"], ckpt.state["G_ema"]["net.0.weight"])


def damaged(tmp_path: Path, how: str) -> Path:
    """A copy of the fixture's checkpoint, damaged as `how` says, as a file of its own."""
    ckpt = fixture_checkpoint()
    if how == "wrong shape":
        ckpt.state["G_ema"]["net.3.weight"] = torch.zeros(16, 8, 3, 3)
    elif how == "missing parameter":
        del ckpt.state["G_ema"]["net.6.bias"]
    elif how == "no G_ema":
        del ckpt.state["G_ema"]
    elif how == "bad config":
        ckpt.config["generator"]["base_width"] = -3
    path = tmp_path / "damaged.pt"
    path.write_bytes(serialize(ckpt.to_dict()))
    return path


EXPECTED = {
    "wrong shape": "G_ema parameter net.3.weight has shape (16, 8, 3, 3) in the file but (16, 8, 4, 4) in the "
                   "network its stored config describes",
    "missing parameter": "G_ema parameter net.6.bias is missing from the file",
    "no G_ema": "holds no G_ema weights",
    "bad config": "its stored config is not valid for this ganforge (config: generator.base_width: must be",
}


@pytest.mark.parametrize("how", list(EXPECTED))
def test_every_loader_refuses_a_damaged_checkpoint_with_the_same_line(tmp_path, cli, how):
    path = damaged(tmp_path, how)
    messages = []
    for load in (lambda: ganforge.load(path, device="cpu"), lambda: load_generator(path, device="cpu"),
                 lambda: load_networks(path, device="cpu")):
        with pytest.raises(CheckpointError) as error:
            load()
        messages.append(str(error.value))
    assert messages[0] == messages[1] == messages[2]
    assert messages[0].startswith(f"{path}: {EXPECTED[how]}") and "\n" not in messages[0]
    result = cli("sample", str(path), "--num", "1", "--out", str(tmp_path / "out"), "--device", "cpu")
    assert result.exit_code == 2 and result.output.strip() == f"error: {messages[0]}"
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_d_loads_with_d_none(tmp_path, cli):
    ckpt = fixture_checkpoint()
    del ckpt.state["D"]  # as `ganforge import` writes a file that had no discriminator
    path = tmp_path / "no_d.pt"
    path.write_bytes(serialize(ckpt.to_dict()))
    assert ganforge.load(path, device="cpu").D is None
    loaded, D = load_networks(path, device="cpu")
    assert D is None and loaded.step == 3
    info = cli("info", str(path))
    assert info.exit_code == 0 and "discrim.     dcgan: not in the checkpoint" in info.output, info.output
