"""Sharing a generator: the safetensors model folder and its card, MP4 walks, the run's
environment record, and the run lock's liveness test on Windows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_line_error, stand_in_inception_state, tiny_config, write_config
from ganforge.checkpoint import load_checkpoint
from ganforge.liveness import STILL_ACTIVE, process_alive
from ganforge.model_folder import FILES, read_model_folder
from ganforge.run import find_checkpoint


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny conditional digits run (so the card shows classes) with a 2D evaluation-free setup,
    trained in-process, and its safetensors export."""
    from typer.testing import CliRunner

    from ganforge.cli import app

    tmp = tmp_path_factory.mktemp("share")
    cfg = tiny_config(tmp / "run", generator={"kind": "resnet", "latent_dim": 8, "base_width": 8,
                                              "conditional": True},
                      discriminator={"kind": "resnet", "base_width": 8, "conditional": True})
    runner = CliRunner()
    args = ["train", str(write_config(tmp, cfg)), "-q"]
    with mock.patch.object(sys, "argv", ["ganforge", *args]):  # as the console script sees it
        result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    out = tmp / "shared"
    result = runner.invoke(app, ["export", str(tmp / "run"), "--format", "safetensors", "--out", str(out), "--json"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return tmp, tmp / "run", out


def test_the_weights_load_with_safetensors_alone(world):
    tmp, run, out = world
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    # A process that never imports ganforge: the tensors as the safetensors library reads them.
    script = textwrap.dedent(f"""
        import sys, torch
        from safetensors.torch import load_file
        from safetensors import safe_open
        tensors = load_file({str(out / "model.safetensors")!r})
        with safe_open({str(out / "model.safetensors")!r}, "pt") as f:
            meta = f.metadata()
        ours = [m for m in sys.modules if m.startswith("ganforge")]
        torch.save({{"tensors": tensors, "meta": meta, "ganforge": ours}}, {str(tmp / "read.pt")!r})
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp, timeout=120)
    read = torch.load(tmp / "read.pt", weights_only=True)
    assert read["ganforge"] == [] and read["meta"]["network"] == "G_ema" and read["meta"]["step"] == "6"
    file, sha = find_checkpoint(run)
    state = load_checkpoint(file, sha).state["G_ema"]
    assert set(read["tensors"]) == set(state)
    for name, tensor in state.items():
        assert torch.equal(read["tensors"][name], tensor), name


def test_sample_reads_the_folder_as_it_reads_the_run(cli, world, tmp_path):
    _, run, out = world
    for source, folder in ((run, tmp_path / "from-run"), (out, tmp_path / "from-folder")):
        assert cli("sample", str(source), "--seeds", "0-2", "--class", "4", "--out", str(folder), "-q").exit_code == 0
    for seed in range(3):
        name = f"seed{seed:04d}.png"
        assert np.array_equal(np.asarray(Image.open(tmp_path / "from-run" / name)),
                              np.asarray(Image.open(tmp_path / "from-folder" / name)))
    shared = read_model_folder(out)
    assert shared.step == 6 and shared.meta["network"] == "G_ema" and shared.G.num_classes == 10
    one_line_error(cli("sample", str(out), "--no-ema", "--num", "2", "--out", str(tmp_path / "x")), 2,
                   "holds G_ema only")


def test_ganforge_load_reads_the_folder_as_the_card_shows(world):
    """The card's Python example: ganforge.load(folder).generate(seeds=..., labels=...) gives the
    run's G_ema images; truncation draws those seeds' z from the truncated normal (resnet: in z)."""
    import ganforge
    from ganforge.errors import GanforgeError
    from ganforge.generation import seed_latent

    _, run, out = world
    shared, trained = ganforge.load(out, device="cpu"), ganforge.load(run, device="cpu")
    assert shared.G is None and shared.D is None and shared.num_classes == 10
    images = shared.generate(seeds=range(3), labels=4)
    assert images.shape == (3, 1, 16, 16)
    torch.testing.assert_close(images, trained.generate(seeds=range(3), labels=4), rtol=0, atol=0)
    truncated = shared.generate(seeds=range(3), labels=4, truncation=0.5)
    z = torch.stack([seed_latent(s, 8, 0.5) for s in range(3)])
    assert float(z.abs().max()) <= 0.5 and not torch.equal(truncated, images)
    torch.testing.assert_close(truncated, shared.G_ema(z, torch.full((3,), 4)).clamp(-1, 1), rtol=0, atol=1e-6)
    with pytest.raises(GanforgeError, match="G_ema only"):
        shared.generate(seeds=[0], labels=0, ema=False)
    with pytest.raises(GanforgeError, match="truncated in z"):
        shared.generate(z=torch.zeros(1, 8), labels=0, truncation=0.5)


def test_the_card_states_data_training_versions_and_licence(world):
    _, run, out = world
    card = (out / "README.md").read_text()
    meta = json.loads((out / "config.json").read_text())
    for fact in ("library_name: ganforge", "# run: a resnet generator trained on digits", "![Samples",
                 "samples.png", "| kind | `digits` |", "| resolution | 16x16 px, 1 channel |", "| samples | 1,797 |",
                 "| classes | 10 (the generator is conditioned on them) |",
                 "| length | 6 generator steps, 48 real images through D |", "No evaluation was recorded",
                 "```yaml\ndata: {kind: digits, resolution: 16, xflip: false, dequantize: false}", "## Licence", "TODO",
                 "trained with | ganforge",
                 "from step 0 | CPU ("):
        assert fact in card, fact
    assert meta["config"]["generator"]["kind"] == "resnet" and meta["data_info"]["num_classes"] == 10
    grid = Image.open(out / "samples.png")
    assert grid.size[0] > 8 * 64 and grid.size[1] > 10 * 64  # 8 seeds x a row per class, enlarged


def test_the_card_gives_metrics_with_their_protocol(cli, tmp_path):
    cfg = {"data": {"kind": "gaussian_ring"}, "generator": {"kind": "mlp", "width": 16, "depth": 2},
           "discriminator": {"kind": "mlp", "width": 16, "depth": 2},
           "train": {"steps": 4, "batch_size": 16, "device": "cpu"}, "log": {"every": 2},
           "samples": {"every": 4}, "checkpoint": {"every": 4},
           "eval": {"every": 2, "metrics": ["modes"], "num_samples": 300}, "output": {"dir": str(tmp_path / "ring")}}
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    assert cli("export", str(tmp_path / "ring"), "--format", "safetensors", "--out", str(tmp_path / "o"),
               "--no-ema").exit_code == 0
    card = (tmp_path / "o" / "README.md").read_text()
    log = [json.loads(line) for line in (tmp_path / "ring" / "log.jsonl").read_text().splitlines()]
    figures = [r for r in log if "eval" in r][-1]["eval"]
    for name, value in figures.items():
        assert f"| {name} | {value:.6g} |" in card
    for fact in ("| step | 4 (the exported weights) |", "| generated samples | 300 |", "raw 2D points",
                 "gaussian_ring", "raw G", "| read from | log.jsonl (during training) |"):
        assert fact in card, fact
    assert json.loads((tmp_path / "o" / "config.json").read_text())["network"] == "G"


def test_the_card_gives_fid_with_its_extractor_and_reference_data(cli, tmp_path):
    """An image metric: the FID of the exported step (through the stand-in Inception), with the
    extractor and its weights, the resize and protocol, and the real data it was measured against."""
    weights = tmp_path / "pt_inception-stand-in.pth"
    torch.save(stand_in_inception_state(), weights)
    cfg = tiny_config(tmp_path / "run", eval={"every": 6, "metrics": ["fid"], "num_samples": 4, "real_samples": 5,
                                              "extractor": {"kind": "inception", "weights": str(weights)},
                                              "cache_dir": str(tmp_path / "cache")})
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    assert cli("export", str(tmp_path / "run"), "--format", "safetensors", "--out", str(tmp_path / "o")).exit_code == 0
    card = (tmp_path / "o" / "README.md").read_text()
    record = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
              if "eval" in line][-1]
    assert record["step"] == 6 and set(record["eval"]) == {"fid"} and record["eval"]["fid"] > 0
    evaluation = card.split("## Evaluation")[1].split("## Config")[0]
    for fact in (f"| fid | {record['eval']['fid']:.6g} |", "| step | 6 (the exported weights) |",
                 "| network | G_ema |", "| generated samples | 4 |", "| real samples (reference) | 5 |",
                 '| reference data | `{"kind": "digits", "resolution": 16, "xflip": false, "dequantize": false}` |',
                 # The weights by file name: the evaluating machine's folders stay off a shared card.
                 f"| feature extractor | inception-v3-fid ({weights.name}, resize legacy) |",
                 '"resize": "legacy", "protocol": "pytorch-fid"', "| noise seed | 0 |",
                 "| read from | log.jsonl (during training) |"):
        assert fact in evaluation, (fact, evaluation)
    assert str(weights.parent) not in evaluation


def test_export_refuses_a_folder_that_is_not_empty(cli, world, tmp_path):
    _, run, out = world
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    one_line_error(cli("export", str(run), "--format", "safetensors", "--out", str(busy)), 2,
                   "is a folder that is not empty", "--overwrite")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    assert cli("export", str(run), "--format", "safetensors", "--out", str(busy), "--overwrite").exit_code == 0
    assert (busy / "notes.txt").read_text() == "mine" and (busy / "model.safetensors").is_file()
    one_line_error(cli("export", str(run), "--format", "safetensors", "--out", str(busy / "notes.txt")), 2,
                   "is a file")
    one_line_error(cli("export", str(run), "--format", "safetensors", "--out", str(tmp_path / "t"), "-t", "0.5"),
                   2, "holds the weights alone")
    one_line_error(cli("export", str(out), "--format", "safetensors", "--out", str(tmp_path / "again")), 2,
                   "already a safetensors export")


def test_interpolate_writes_an_mp4_of_the_frames_asked(cli, world, tmp_path):
    import av

    _, run, _ = world
    video = tmp_path / "walk.mp4"
    result = cli("interpolate", str(run), "--out", str(video), "--num-frames", "9", "--rows", "1", "--cols", "2",
                 "--class", "3", "--truncation", "0.6", "-q")
    assert result.exit_code == 0, result.output
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 9 and stream.codec_context.name == "h264"
    assert frames[0].shape[0] % 2 == 0 and frames[0].shape[1] % 2 == 0
    assert not np.array_equal(frames[0], frames[4])  # the walk moves


def test_the_run_records_its_environment_and_info_shows_it(cli, world):
    _, run, _ = world
    sessions = json.loads((run / "environment.json").read_text())
    assert len(sessions) == 1
    s = sessions[0]
    assert s["step"] == 0 and s["command"] == f"ganforge train {run.parent / 'run.yaml'} -q"
    assert s["torch"] == torch.__version__
    assert {"cuda", "cudnn", "gpus", "cpu", "host", "git", "ganforge"} <= set(s)
    info = json.loads(cli("info", str(run), "--json").stdout)
    assert info["environment"] == sessions
    table = cli("info", str(run)).stdout
    assert f"host {s['host']}" in table and "ran from step 0" in table


def test_git_commit_of_the_config_folder(tmp_path):
    from ganforge.runinfo import git_commit

    assert git_commit(tmp_path) is None
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.yaml").write_text("x: 1\n")
    subprocess.run([*git, "add", "a.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit(tmp_path) == {"commit": head, "dirty": False, "root": str(tmp_path)}
    (tmp_path / "a.yaml").write_text("x: 2\n")
    assert git_commit(tmp_path)["dirty"] is True


class ProcKernel32:
    """The three Win32 calls the Windows branch makes, answered from this machine's /proc about
    real processes (a zombie is a process that ended while a handle holds it)."""

    ERROR_INVALID_PARAMETER = 87

    def __init__(self, denied: set[int] = frozenset()) -> None:
        self.denied, self.last_error, self.open = denied, 0, set()

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:  # noqa: N802 (Win32 names)
        if pid in self.denied:
            self.last_error = 5
            return 0
        if not os.path.exists(f"/proc/{pid}"):
            self.last_error = self.ERROR_INVALID_PARAMETER
            return 0
        self.open.add(pid)
        return pid

    def GetLastError(self) -> int:  # noqa: N802
        return self.last_error

    def GetExitCodeProcess(self, handle: int, code) -> bool:  # noqa: N802
        state = open(f"/proc/{handle}/stat").read().rsplit(")", 1)[1].split()[0]
        code._obj.value = 0 if state == "Z" else STILL_ACTIVE
        return True

    def CloseHandle(self, handle: int) -> bool:  # noqa: N802
        self.open.discard(handle)
        return True


def test_windows_liveness_asks_without_signalling():
    kernel = ProcKernel32(denied={1})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid, platform="win32", kernel32=kernel)
        assert child.poll() is None  # asking did not end it (os.kill would have, on Windows)
        assert process_alive(1, platform="win32", kernel32=kernel)  # another user's: it exists
        os.kill(child.pid, signal.SIGKILL)
        import time

        deadline = time.monotonic() + 10
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not process_alive(child.pid, platform="win32", kernel32=kernel)  # ended, handle still held
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid, platform="win32", kernel32=kernel)  # gone
    assert kernel.open == set()  # every handle closed
    assert process_alive(os.getpid()) and not process_alive(child.pid) and not process_alive(0)
