"""Faults injected on the CPU: every one ends in a one-line message, and no run is lost.

Each test checks the exit code, the one message line, the absence of a traceback, and that
the checkpoint from before the fault still loads and samples.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, run_cli, tiny_config, write_config
from ganforge.checkpoint import load_checkpoint
from ganforge.training import loop
from ganforge.training.steps import Runtime


def error_lines(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]


def assert_run_still_samples(cli, run, tmp_path, step=None):
    """The newest good checkpoint of `run` loads and generates."""
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    if step is not None:
        assert index["latest"] == f"step-{step:08d}.pt"
    out = tmp_path / f"check-{index['latest']}.png"
    result = cli("sample", str(run), "--num", "4", "--grid", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert Image.open(out).size[0] > 0


def poison_after(monkeypatch, step_to_poison: int, target: str = "G", times: int = 1):
    """Make generator_step put a NaN into a network's weights after `step_to_poison` steps."""
    original = loop.generator_step
    hits = {"n": 0}

    def step(state, *args, **kwargs):
        out = original(state, *args, **kwargs)
        if state.step + 1 == step_to_poison and hits["n"] < times:
            hits["n"] += 1
            with torch.no_grad():
                next(getattr(state, target).parameters()).view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(loop, "generator_step", step)
    return hits


# -- non-finite values -------------------------------------------------------------------------


def test_nan_in_losses_stops_with_one_line_and_keeps_the_checkpoint(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = write_config(tmp_path, tiny_config(run, train={"steps": 12, "batch_size": 8, "device": "cpu"},
                                                log={"every": 2}, checkpoint={"every": 3, "keep": 3}))
    poison_after(monkeypatch, 5, target="D")
    result = cli("train", str(config), "-q")
    assert result.exit_code == 1
    [line] = error_lines(result)
    assert "step 6" in line and "d_loss" in line and "non-finite" in line
    assert "step-00000003.pt" in line and "lower learning rate" in line
    assert "Traceback" not in result.stderr
    assert_run_still_samples(cli, run, tmp_path, step=3)
    assert torch.isfinite(load_checkpoint(run / "checkpoints" / "step-00000003.pt").state["D"]["net.0.weight"]).all()


def test_nan_in_weights_is_never_written_over_a_good_checkpoint(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    # Logging rarely: the weights check before the checkpoint is what catches it.
    config = write_config(tmp_path, tiny_config(run, train={"steps": 12, "batch_size": 8, "device": "cpu"},
                                                log={"every": 100}, checkpoint={"every": 3, "keep": 3}))
    poison_after(monkeypatch, 5, target="G_ema")
    result = cli("train", str(config), "-q")
    assert result.exit_code == 1
    [line] = error_lines(result)
    assert "step 6: G_ema weights became non-finite" in line and "step-00000003.pt" in line
    assert not (run / "checkpoints" / "step-00000006.pt").exists()
    assert_run_still_samples(cli, run, tmp_path, step=3)


def test_rollback_reloads_scales_lr_and_continues(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = tiny_config(run, train={"steps": 12, "batch_size": 8, "device": "cpu", "on_nonfinite": "rollback",
                                  "rollback_lr_factor": 0.5, "max_rollbacks": 2},
                      log={"every": 1}, checkpoint={"every": 3, "keep": 5})
    poison_after(monkeypatch, 5, target="D")
    seeds: dict[int, list[int]] = {}  # step -> seeds of its noise streams, in the order drawn
    noise = Runtime.noise

    def recording_noise(self, micro, step, phase, rollbacks=0):
        gen = noise(self, micro, step, phase, rollbacks)
        seeds.setdefault(step, []).append(gen.initial_seed())
        return gen

    monkeypatch.setattr(Runtime, "noise", recording_noise)
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 0, result.stderr
    assert "rolled back to step 3" in result.stderr and "rollback 1 of 2" in result.stderr
    # The updates that became steps 4-6 ran twice: the second time (after the rollback) on fresh
    # noise, not a replay; the others ran once.
    once = len(seeds[0])
    assert once > 0 and all(len(seeds[s]) == once for s in (1, 2, 6, 11)) and 12 not in seeds
    for s in (3, 4, 5):
        first, second = seeds[s][:once], seeds[s][once:]
        assert len(first) == len(second) == once and not set(first) & set(second)
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["step"] == 3 and events[0]["from_step"] == 6
    assert [r["step"] for r in records if "event" not in r] == list(range(1, 13))  # continuation, no gap
    last = records[-1]
    assert last["lr_g"] == pytest.approx(1e-4) and last["lr_d"] == pytest.approx(1e-4)  # 2e-4 x 0.5
    final = load_checkpoint(run / "checkpoints" / "step-00000012.pt").state
    assert final["rollbacks"] == 1 and final["lr_scale"] == 0.5
    assert all(torch.isfinite(v).all() for v in final["D"].values() if v.is_floating_point())


def test_rollback_gives_up_after_the_limit(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = tiny_config(run, train={"steps": 12, "batch_size": 8, "device": "cpu", "on_nonfinite": "rollback",
                                  "max_rollbacks": 2}, log={"every": 1}, checkpoint={"every": 3, "keep": 5})
    poison_after(monkeypatch, 5, target="D", times=100)
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 1
    [line] = error_lines(result)
    assert "after 2 rollbacks" in line and "step-00000003.pt" in line
    assert_run_still_samples(cli, run, tmp_path, step=3)


# -- disk full, folders gone ------------------------------------------------------------------


def test_disk_full_during_checkpoint_keeps_previous_one(cli, tmp_path, monkeypatch):
    import ganforge.checkpoint as ckpt

    run = tmp_path / "run"
    config = write_config(tmp_path, tiny_config(run))
    real_open = open
    calls = {"n": 0}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[:100])  # part of it lands, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(tuple(f".tmp-{os.getpid()}" for _ in [0])) and ".pt." in str(path):
            calls["n"] += 1
            if calls["n"] >= 2:  # the second checkpoint write fails
                return FullDisk(f)
        return f

    monkeypatch.setattr(ckpt, "open", fake_open, raising=False)
    result = cli("train", str(config), "-q")
    assert result.exit_code == 1
    [line] = error_lines(result)
    assert "could not write checkpoint" in line and "disk full" in line and "MiB needed" in line
    assert str(run / "checkpoints" / "step-00000006.pt") in line and "previous checkpoint is intact" in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["index.json", "step-00000003.pt"]
    monkeypatch.undo()
    assert_run_still_samples(cli, run, tmp_path, step=3)


def test_failed_sample_grid_write_warns_and_training_goes_on(cli, tmp_path, monkeypatch):
    import ganforge.run as run_module

    def broken_copy(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(run_module.shutil, "copyfile", broken_copy)
    run = tmp_path / "run"
    result = cli("train", str(write_config(tmp_path, tiny_config(run))), "-q")
    assert result.exit_code == 0
    warnings_ = [ln for ln in result.stderr.splitlines() if "could not write sample grid" in ln]
    assert warnings_ and "training goes on" in warnings_[0]
    assert (run / "checkpoints" / "step-00000006.pt").exists()


def test_run_folder_removed_while_training(cli, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    original = loop.generator_step

    def step(state, *args, **kwargs):
        if state.step == 4:
            shutil.rmtree(run)
        return original(state, *args, **kwargs)

    monkeypatch.setattr(loop, "generator_step", step)
    result = cli("train", str(write_config(tmp_path, tiny_config(run))), "-q")
    assert result.exit_code == 1
    [line] = error_lines(result)
    assert "could not write checkpoint" in line and str(run) in line
    assert "Traceback" not in result.stderr


# -- checkpoint integrity -----------------------------------------------------------------------


def trained_run(cli, tmp_path, steps=6):
    tmp_path.mkdir(exist_ok=True)
    run = tmp_path / "run"
    cfg = tiny_config(run, train={"steps": steps, "batch_size": 8, "device": "cpu"})
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    return run


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_latest_checkpoint_resume_falls_back(cli, tmp_path, damage):
    run = trained_run(cli, tmp_path)
    latest = run / "checkpoints" / "step-00000006.pt"
    data = bytearray(latest.read_bytes())
    if damage == "truncate":
        latest.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        latest.write_bytes(bytes(data))
    # sample on the damaged file: one line, exit 2, from the checksum recorded in index.json (not
    # from torch.load failing on the bytes, which a flipped byte need not make it do).
    checksum = "SHA-256 does not match the one recorded in index.json"
    result = run_cli("sample", str(latest), "--num", "2", "--out", str(tmp_path / "x"))
    assert_one_line_error(result, 2, str(latest), f"is corrupted: its {checksum}")
    # resume: warn, name the file and the checksum, continue from step 3.
    result = run_cli("train", "--resume", str(run), "-q")
    assert result.returncode == 0, result.stderr
    assert f"skipping {latest}: {latest} is corrupted: its {checksum}" in result.stderr
    assert "Traceback" not in result.stderr
    assert f"resuming {run} at step 3" in result.stdout
    assert load_checkpoint(latest).step == 6  # rewritten by the continuation


def test_skipped_checkpoint_never_displaces_a_good_one(cli, tmp_path):
    run = trained_run(cli, tmp_path)
    damaged = run / "checkpoints" / "step-00000006.pt"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    # Resume from step 3 with checkpoints at 4 and 8, keeping one: the damaged step-6 file (newer
    # than step 4) must not take the one place and push out the checkpoint just written.
    result = run_cli("train", "--resume", str(run), "--set", "train.steps=8", "--set", "checkpoint.every=4",
                     "--set", "checkpoint.keep=1", "-q")
    assert result.returncode == 0, result.stderr
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    assert index["latest"] == "step-00000008.pt" and [e["file"] for e in index["checkpoints"]] == [index["latest"]]
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == [
        "step-00000006.pt.skipped", "step-00000008.pt"]
    assert load_checkpoint(run / "checkpoints" / "step-00000008.pt").step == 8
    assert_run_still_samples(cli, run, tmp_path, step=8)


def test_damaged_index_resume_falls_back_to_the_files(cli, tmp_path):
    run = trained_run(cli, tmp_path)
    index = run / "checkpoints" / "index.json"
    index.write_text('{"checkpoints": [')  # cut short
    result = run_cli("train", "--resume", str(run), "--set", "train.steps=9", "-q")
    assert result.returncode == 0, result.stderr
    assert "index.json is damaged" in result.stderr and "Traceback" not in result.stderr
    assert f"resuming {run} at step 6" in result.stdout
    assert (run / "checkpoints" / "index.json.damaged").read_text() == '{"checkpoints": ['
    assert_run_still_samples(cli, run, tmp_path, step=9)


def test_export_that_cannot_be_written_is_one_line(cli, tmp_path, monkeypatch):
    run = trained_run(cli, tmp_path)
    import ganforge.export

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ganforge.export, "atomic_write_bytes", full_disk)
    out = tmp_path / "g.pt"
    result = cli("export", str(run), "--format", "torchscript", "--out", str(out))
    assert result.exit_code == 2 and not out.exists()
    [line] = error_lines(result)
    assert f"cannot write {out}" in line and "No space left" in line


def test_crafted_pickle_is_refused_and_never_runs(cli, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "ganforge-checkpoint", "format_version": 1, "state": Payload()}, evil)
    result = run_cli("sample", str(evil), "--num", "2", "--out", str(tmp_path / "x"))
    assert_one_line_error(result, 2, "was refused", "could run code")
    assert not marker.exists()
    # The same file as a run's latest checkpoint: resume skips it, and never runs it.
    run = trained_run(cli, tmp_path)
    (run / "checkpoints" / "step-00000006.pt").write_bytes(evil.read_bytes())
    result = run_cli("train", "--resume", str(run), "-q")
    assert result.returncode == 0 and "SHA-256 does not match" in result.stderr  # the checksum catches it
    # Even with its checksum recorded too, the payload is refused by the loader itself.
    run = trained_run(cli, tmp_path / "second")
    (run / "checkpoints" / "step-00000006.pt").write_bytes(evil.read_bytes())
    index_path = run / "checkpoints" / "index.json"
    index = json.loads(index_path.read_text())
    index["checkpoints"][-1]["sha256"] = hashlib.sha256(evil.read_bytes()).hexdigest()
    index_path.write_text(json.dumps(index))
    result = run_cli("train", "--resume", str(run), "-q")
    assert result.returncode == 0 and "was refused" in result.stderr
    assert not marker.exists()


def test_newer_format_and_other_files_are_named(tmp_path):
    newer = tmp_path / "newer.pt"
    torch.save({"format": "ganforge-checkpoint", "format_version": 99, "ganforge_version": "9.9.0"}, newer)
    assert_one_line_error(run_cli("sample", str(newer), "--out", str(tmp_path / "x")), 2,
                          "written by ganforge 9.9.0", "upgrade ganforge")
    plain = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    assert_one_line_error(run_cli("sample", str(plain), "--out", str(tmp_path / "x")), 2,
                          "PyTorch file but not a ganforge checkpoint")
    png = tmp_path / "picture.pt"
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    assert_one_line_error(run_cli("sample", str(png), "--out", str(tmp_path / "x")), 2,
                          "not a ganforge checkpoint")


# -- one writer per run folder ----------------------------------------------------------------


def test_second_writer_is_refused_and_dead_lock_is_taken_over(cli, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(run, train={"steps": 100000, "batch_size": 8, "device": "cpu"}, log={"every": 5},
                      checkpoint={"every": 20, "keep": 2})
    config = write_config(tmp_path, cfg)
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "train", str(config), "-q"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "checkpoints" / "index.json").exists():
            time.sleep(0.2)
        result = run_cli("train", "--resume", str(run), "-q")
        assert_one_line_error(result, 2, f"being written by process {proc.pid}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The killed process left its lock behind: the next writer takes it over with a warning.
    assert (run / ".lock").exists()
    reached = json.loads((run / "checkpoints" / "index.json").read_text())["checkpoints"][-1]["step"]
    result = run_cli("train", "--resume", str(run), "--set", f"train.steps={reached + 5}", "-q")
    assert result.returncode == 0, result.stderr
    assert f"left by process {proc.pid}, which is no longer running" in result.stderr
    assert not (run / ".lock").exists()


# -- out of memory -------------------------------------------------------------------------------


def test_out_of_memory_names_batch_size(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    original = loop.generator_step

    def step(state, *args, **kwargs):
        if state.step == 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(state, *args, **kwargs)

    monkeypatch.setattr(loop, "generator_step", step)
    result = cli("train", str(write_config(tmp_path, tiny_config(run))), "-q")
    assert result.exit_code == 1
    [line] = error_lines(result)
    assert "out of GPU memory at step 4" in line and "train.batch_size=8" in line
    assert "step-00000003.pt" in line
    assert_run_still_samples(cli, run, tmp_path, step=3)


# -- bad data ------------------------------------------------------------------------------------


def image_folder_config(tmp_path, run, **data):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (20, 20), (i * 20, 100, 50)).save(folder / f"{i:02d}.png")
    (folder / "05.png").write_bytes(b"not an image at all")
    return tiny_config(run, data={"kind": "image_folder", "path": str(folder), "resolution": 16,
                                  "num_workers": 0, **data})


def test_corrupt_image_is_skipped_and_counted(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("train", str(write_config(tmp_path, image_folder_config(tmp_path, run))), "-q")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert records[-1]["skipped_images"] >= 1


def test_corrupt_image_as_error_by_option(tmp_path):
    run = tmp_path / "run"
    cfg = image_folder_config(tmp_path, run, on_bad_image="error")
    result = run_cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert_one_line_error(result, 2, "05.png", "data.on_bad_image=skip")


def test_a_json_report_that_cannot_be_written_is_one_error_naming_the_file(tmp_path):
    from ganforge.commands_common import write_json
    from ganforge.errors import GanforgeError

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(GanforgeError, match=f"cannot write {blocker / 'eval.json'}"):
        write_json(blocker / "eval.json", {"fid": 1.0})
    write_json(tmp_path / "deep" / "eval.json", {"fid": 1.0})
    assert json.loads((tmp_path / "deep" / "eval.json").read_text()) == {"fid": 1.0}
