"""The run folder: RunDir names its files; readers open it read-only and leave it as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from ganforge.checkpoint import load_checkpoint
from ganforge.errors import RunFolderError
from ganforge.generation.drawing import load_generator
from ganforge.report import build_report
from ganforge.run import RunDir, find_checkpoint, load_latest_good
from ganforge.runinfo import checkpoint_details, find_runs, read_log, summarize

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_run_v1"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path in `folder` (the folder too) with its size and modification time in ns."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in [folder, *folder.rglob("*")]}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A copy of the fixture run (step 3 of 6: config, log, a sample grid, a checkpoint and its index)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "runs" / "tiny"))


def test_readers_leave_a_run_folder_as_it_was(run, cli, tmp_path):
    before = snapshot(run)
    folder = RunDir(run, read_only=True)
    assert not folder.is_writer
    assert folder.config_file.is_file() and folder.log_file.is_file() and folder.index_file.is_file()
    assert folder.sample_files() == [run / "samples" / "step-00000003.png"]
    assert folder.checkpoint_files() == [run / "checkpoints" / "step-00000003.pt"] == [folder.checkpoint_file(3)]
    assert folder.latest_checkpoint() == folder.checkpoint_file(3)
    # What `eval` writes next to a checkpoint goes into the run that holds it.
    assert RunDir.of_checkpoint(folder.checkpoint_file(3)).eval_file(3) == run / "eval" / "step-00000003.json"
    assert RunDir.of_checkpoint(tmp_path / "loose.pt").path == tmp_path

    # Everything info, runs, report, sample and resume read.
    assert [r["step"] for r in read_log(run)] and summarize(run).step == 3
    assert find_runs(tmp_path / "runs") == [run]
    assert checkpoint_details(run)["step"] == 3
    assert "<html" in build_report(run)
    assert find_checkpoint(run)[0] == folder.checkpoint_file(3) and load_latest_good(run).step == 3
    assert load_generator(run, device="cpu").step == 3
    assert cli("info", str(run)).exit_code == 0 and cli("runs", str(tmp_path / "runs")).exit_code == 0
    assert cli("report", str(run), "--out", str(tmp_path / "report.html")).exit_code == 0
    assert cli("sample", str(run), "--num", "2", "--out", str(tmp_path / "samples"), "-q").exit_code == 0
    assert snapshot(run) == before


def test_a_read_only_run_folder_refuses_every_write(run):
    before = snapshot(run)
    folder = RunDir(run, read_only=True)
    ckpt = load_checkpoint(*find_checkpoint(run))
    writes = {
        "create a run": lambda: folder.create(overwrite=True),
        "continue the run": folder.open_existing,
        "lock the run": folder.acquire_lock,
        "write the config": lambda: folder.write_config("train: {steps: 1}\n"),
        "start TensorBoard": lambda: folder.start_tensorboard(""),
        "append to the log": lambda: folder.append_log({"step": 4}),
        "save a sample grid": lambda: folder.save_sample(Image.new("L", (4, 4)), 4),
        "save a checkpoint": lambda: folder.save_checkpoint(ckpt, keep=1),
        "save the best checkpoint": lambda: folder.save_best(ckpt, "fid", 1.0),
        "rewind the run": lambda: folder.rewind(0),
    }
    for what, write in writes.items():
        with pytest.raises(RunFolderError, match=f"is open read-only: cannot {what}$"):
            write()
    folder.release_lock()  # it holds nothing to give up
    assert snapshot(run) == before


def test_pruning_deletes_what_the_index_forgot_and_nothing_else(run, tmp_path):
    """Pruning compares the folder with the index: an older checkpoint the index does not name
    (a kill between an index update and the deletion) goes; best.pt, skipped and newer
    unindexed files, other names and the run's own init checkpoint stay."""
    folder = RunDir(run)
    ckpt = load_checkpoint(folder.checkpoint_file(3))
    source = folder.checkpoint_file(3).read_bytes()
    for name in ("step-00000001.pt", "step-00000002.pt", "step-00000002.pt.skipped", "step-00000009.pt",
                 "best.pt", "pretrained.pt", "step-1b.pt"):
        (folder.checkpoints / name).write_bytes(source)
    ckpt.config = {**ckpt.config, "init": {**ckpt.config["init"], "checkpoint": str(folder.checkpoints /
                                                                                   "step-00000001.pt")}}
    ckpt.step = 6
    folder.save_checkpoint(ckpt, keep=1)  # drops step 3 from the index, as keep=1 asks
    assert sorted(p.name for p in folder.checkpoints.iterdir() if p.name != "index.json") == [
        "best.pt", "pretrained.pt", "step-00000001.pt", "step-00000002.pt.skipped", "step-00000006.pt",
        "step-00000009.pt", "step-1b.pt"]
