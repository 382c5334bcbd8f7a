"""Old checkpoints keep working: a run stopped at step 3 by ganforge 0.x (format 1) still samples
and resumes. The fixture in tests/fixtures/tiny_run_v1 stands for files users already have; if a
test here fails, the new code no longer reads them (do not regenerate the fixture to pass)."""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from ganforge.checkpoint import Checkpoint, CheckpointIndex, IndexEntry, load_checkpoint, serialize
from ganforge.config import config_to_dict, parse_config
from ganforge.data import DataInfo
from ganforge.errors import CheckpointError
from ganforge.generation.drawing import draw, load_generator
from ganforge.run import RunDir, find_checkpoint, load_latest_good
from ganforge.training import loop
from ganforge.training.state import TrainState, create_state

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_run_v1"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A writable copy of the fixture run (training writes into its folder)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "tiny_run_v1"))


def test_fixture_is_a_format_1_checkpoint_at_step_3() -> None:
    file, sha = find_checkpoint(FIXTURE)
    # Checkpoint's fields are the file's top-level keys, header first, as format 1 has them.
    raw = torch.load(file, map_location="cpu", weights_only=True)
    assert list(raw) == [f.name for f in fields(Checkpoint)]
    ckpt = load_checkpoint(file, sha)  # the index's SHA-256 is checked too
    assert ckpt.format == "ganforge-checkpoint" and ckpt.format_version == 1
    assert ckpt.step == 3 and ckpt.config["train"]["steps"] == 6
    assert ckpt.data_info == {"name": "digits", "shape": [1, 16, 16], "num_classes": 10}
    assert list(ckpt.state) == list(raw["state"]) and ckpt.to_dict().keys() == raw.keys()


@pytest.mark.parametrize("use_ema", [True, False])
def test_old_checkpoint_samples(use_ema: bool) -> None:
    loaded = load_generator(FIXTURE, use_ema=use_ema, device="cpu")
    assert loaded.step == 3 and loaded.info.shape == (1, 16, 16) and loaded.config["train"]["steps"] == 6
    images = draw(loaded, 8, seed=0)
    assert images.shape == (8, 1, 16, 16) and torch.isfinite(images).all()
    if use_ema:
        # The same checkpoint and seed give the same images as when the fixture was written.
        torch.testing.assert_close(images, torch.load(FIXTURE / "expected_samples.pt", weights_only=True),
                                   rtol=0, atol=1e-6)


def test_old_checkpoint_samples_from_the_cli(cli, tmp_path: Path) -> None:
    result = cli("sample", str(FIXTURE), "--num", "4", "--out", str(tmp_path / "out"), "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    assert "(step 3)" in result.output and len(list((tmp_path / "out").glob("*.png"))) == 4


def test_old_checkpoint_resumes_to_completion(old_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = load_latest_good(old_run)
    cfg = parse_config(ckpt.config)
    cfg_dict = config_to_dict(cfg)
    executed = []
    original = loop.generator_step

    def counted(state, *args, **kwargs):  # noqa: ANN001, ANN202
        executed.append(state.step)
        return original(state, *args, **kwargs)

    monkeypatch.setattr(loop, "generator_step", counted)
    run = RunDir(old_run)
    run.open_existing()
    try:
        result = loop.train(cfg, cfg_dict, run, resume=ckpt, progress=False)
    finally:
        run.release_lock()
    # A continuation from step 3, not a new run.
    assert executed == [3, 4, 5] and result.step == result.total_steps == 6 and not result.interrupted
    final = load_checkpoint(*find_checkpoint(old_run))
    assert final.step == 6 and final.data == {"epoch": 0, "cursor": 6 * 8, "items": 1797}
    assert list(final.state) == list(ckpt.state)
    assert load_generator(old_run, device="cpu").step == 6


def test_old_run_resumes_from_the_cli(cli, old_run: Path) -> None:
    result = cli("train", "--resume", str(old_run), "-q")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "at step 3 of 6" in result.output and "done: 6 steps" in result.output
    assert load_checkpoint(*find_checkpoint(old_run)).step == 6


def assert_same(a, b, where: str = "") -> None:  # noqa: ANN001
    """Equal nested dicts, lists and tensors (tensors bit for bit)."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def fixture_state() -> tuple[TrainState, Checkpoint]:
    """A fresh TrainState for the fixture's config, and the fixture."""
    ckpt = load_checkpoint(*find_checkpoint(FIXTURE))
    state = create_state(parse_config(ckpt.config), DataInfo.from_dict(ckpt.data_info), torch.device("cpu"))
    return state, ckpt


def test_train_state_round_trips_through_its_state_dict() -> None:
    state, ckpt = fixture_state()
    state.load_state_dict(ckpt.state)
    assert state.step == 3
    assert_same(state.state_dict(), ckpt.state)


def test_state_of_an_early_format_1_checkpoint_takes_the_defaults() -> None:
    # Checkpoints written before rollbacks, learning-rate scale, best and regularizer states existed.
    state, ckpt = fixture_state()
    state.rollbacks, state.lr_scale, state.best = 2, 0.25, {"figure": "fid", "value": 1.0, "step": 9}
    later = ("rollbacks", "lr_scale", "best", "regularizers")
    state.load_state_dict({k: v for k, v in ckpt.state.items() if k not in later})
    assert (state.step, state.rollbacks, state.lr_scale, state.best) == (3, 0, 1.0, None)
    with pytest.raises(KeyError, match="opt_d"):  # what every checkpoint has is required
        state.load_state_dict({k: v for k, v in ckpt.state.items() if k != "opt_d"})


def test_an_incomplete_checkpoint_is_refused_naming_what_it_lacks(tmp_path: Path) -> None:
    raw = torch.load(find_checkpoint(FIXTURE)[0], map_location="cpu", weights_only=True)
    del raw["rng"]
    path = tmp_path / "incomplete.pt"
    path.write_bytes(serialize(raw))
    with pytest.raises(CheckpointError, match="incomplete ganforge checkpoint .*no 'rng'"):
        load_checkpoint(path)


def test_the_index_is_rewritten_byte_for_byte(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(FIXTURE / "checkpoints", tmp_path / "checkpoints"))
    before = (folder / "index.json").read_bytes()
    index = CheckpointIndex(folder)
    assert index.entries == [IndexEntry(file="step-00000003.pt", step=3, sha256=index.entries[0].sha256,
                                        bytes=140513)]
    index.save()
    assert (folder / "index.json").read_bytes() == before


def test_the_best_entry_keeps_its_keys_in_order() -> None:
    best = IndexEntry(file="best.pt", step=3, figure="fid", value=12.5, sha256="ab", bytes=10)
    assert list(best.to_dict()) == ["file", "step", "figure", "value", "sha256", "bytes"]
    assert IndexEntry.from_dict(best.to_dict()) == best
    assert IndexEntry.from_dict({"file": "step-00000003.pt", "step": "3"}).step == 3  # no checksum: unchecked


def test_an_index_entry_without_a_file_is_a_damaged_index(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text('{"latest": null, "checkpoints": [], "best": {"step": 3}}')
    with pytest.raises(CheckpointError, match="damaged"):
        CheckpointIndex(tmp_path)
