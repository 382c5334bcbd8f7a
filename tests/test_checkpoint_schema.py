"""Old checkpoints keep working: a run stopped at step 3 by ganforge 0.x (format 1) still samples
and resumes. The fixture in tests/fixtures/tiny_run_v1 stands for files users already have; if a
test here fails, the new code no longer reads them (do not regenerate the fixture to pass)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import ganforge.train as train_module
from ganforge.checkpoint import find_checkpoint, load_checkpoint, load_latest_good
from ganforge.config import config_to_dict, parse_config
from ganforge.run import RunDir
from ganforge.sample import load_generator, sample

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_run_v1"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A writable copy of the fixture run (training writes into its folder)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "tiny_run_v1"))


def test_fixture_is_a_format_1_checkpoint_at_step_3() -> None:
    payload = load_checkpoint(*find_checkpoint(FIXTURE))  # the index's SHA-256 is checked too
    assert payload["format"] == "ganforge-checkpoint" and payload["format_version"] == 1
    assert payload["step"] == 3 and payload["config"]["train"]["steps"] == 6
    assert payload["data_info"] == {"name": "digits", "shape": [1, 16, 16], "num_classes": 10}


@pytest.mark.parametrize("use_ema", [True, False])
def test_old_checkpoint_samples(use_ema: bool) -> None:
    loaded = load_generator(FIXTURE, use_ema=use_ema, device="cpu")
    assert loaded.step == 3 and loaded.info.shape == (1, 16, 16) and loaded.config["train"]["steps"] == 6
    images = sample(loaded, 8, seed=0)
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
    payload = load_latest_good(old_run)
    cfg = parse_config(payload["config"])
    cfg_dict = config_to_dict(cfg)
    executed = []
    original = train_module.generator_step

    def counted(state, *args, **kwargs):  # noqa: ANN001, ANN202
        executed.append(state.step)
        return original(state, *args, **kwargs)

    monkeypatch.setattr(train_module, "generator_step", counted)
    run = RunDir(old_run)
    run.open_existing()
    try:
        result = train_module.train(cfg, cfg_dict, run, resume=payload, progress=False)
    finally:
        run.release_lock()
    # A continuation from step 3, not a new run.
    assert executed == [3, 4, 5] and result.step == result.total_steps == 6 and not result.interrupted
    final = load_checkpoint(*find_checkpoint(old_run))
    assert final["step"] == 6 and final["data"] == {"epoch": 0, "cursor": 6 * 8}
    assert set(final["state"]) == set(payload["state"])
    assert load_generator(old_run, device="cpu").step == 6


def test_old_run_resumes_from_the_cli(cli, old_run: Path) -> None:
    result = cli("train", "--resume", str(old_run), "-q")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "at step 3 of 6" in result.output and "done: 6 steps" in result.output
    assert load_checkpoint(*find_checkpoint(old_run))["step"] == 6
