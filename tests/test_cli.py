"""The CLI as a user runs it: train, watch it stop on a signal, resume, sample, list, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import CONFIGS, assert_one_line_error, run_cli, tiny_config, write_config
from ganforge.checkpoint import load_checkpoint


def test_train_then_sample_from_a_fresh_process(tmp_path):
    config = write_config(tmp_path, tiny_config(tmp_path / "run"))
    result = run_cli("train", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert "samples:" in result.stdout and str(run / "samples" / "latest.png") in result.stdout
    # Output layout.
    assert (run / "config.yaml").is_file() and not (run / ".lock").exists()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert {"d_loss", "g_loss", "lr_g", "lr_d", "img_per_s"} <= set(records[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["latest.png", "step-00000003.png",
                                                                  "step-00000006.png"]
    grid = Image.open(run / "samples" / "latest.png")
    assert grid.size == (4 * 18 + 2, 4 * 18 + 2)  # 16 samples of 16x16, 2 px padding
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    assert index["latest"] == "step-00000006.pt"

    # Sample from the run folder, with no config file, from another directory.
    out = tmp_path / "generated"
    result = run_cli("sample", str(run), "--num", "5", "--out", str(out), "--seed", "3", cwd=tmp_path / "run")
    assert result.returncode == 0, result.stderr
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (16, 16) and Image.open(files[0]).mode == "L"
    # Sampling loads no more than it needs: torchvision's model zoo (for the FID Inception) stays out.
    code = ("import sys; from ganforge.cli import main; sys.argv = ['ganforge', 'sample', sys.argv[1], '--num', '2', "
            "'--out', sys.argv[2], '-q']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torchvision.models' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(run), str(tmp_path / "lean")], capture_output=True,
                            text=True)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr
    assert len(list((tmp_path / "lean").iterdir())) == 2


def test_sample_grid_seed_and_ema_choice(cli, tmp_path):
    config = write_config(tmp_path, tiny_config(tmp_path / "run"))
    assert cli("train", str(config), "-q").exit_code == 0
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000006.pt"
    a, b, c, d = (tmp_path / f"{n}.png" for n in "abcd")
    assert cli("sample", str(ckpt), "--num", "9", "--grid", "--out", str(a), "--seed", "1").exit_code == 0
    assert cli("sample", str(ckpt), "--num", "9", "--grid", "--out", str(b), "--seed", "1",
               "--batch-size", "2").exit_code == 0
    assert cli("sample", str(ckpt), "--num", "9", "--grid", "--out", str(c), "--seed", "2").exit_code == 0
    assert cli("sample", str(ckpt), "--num", "9", "--grid", "--out", str(d), "--seed", "1", "--no-ema").exit_code == 0
    pixels = {n: np.asarray(Image.open(p)) for n, p in zip("abcd", (a, b, c, d))}
    assert np.array_equal(pixels["a"], pixels["b"])  # same seed, any batch size: same images
    assert not np.array_equal(pixels["a"], pixels["c"])
    assert not np.array_equal(pixels["a"], pixels["d"])


def test_sample_2d_writes_npy_and_scatter(cli, tmp_path):
    cfg = tiny_config(tmp_path / "run", data={"kind": "gaussian_ring", "num_samples": 200},
                      generator={"kind": "mlp", "width": 8}, discriminator={"kind": "mlp", "width": 8},
                      samples={"every": 3, "num": 100})
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    assert Image.open(tmp_path / "run" / "samples" / "latest.png").size == (512, 512)
    out = tmp_path / "points.npy"
    assert cli("sample", str(tmp_path / "run"), "--num", "300", "--out", str(out)).exit_code == 0
    points = np.load(out)
    assert points.shape == (300, 2) and np.isfinite(points).all()
    assert (tmp_path / "points.png").is_file()


def test_sigterm_checkpoints_and_resume_continues_exactly(cli, tmp_path):
    steps = 400
    cfg = tiny_config(tmp_path / "run", train={"steps": steps, "batch_size": 8, "seed": 0, "device": "cpu"},
                      log={"every": 10}, checkpoint={"every": 1000, "keep": 3}, samples={"every": 1000, "num": 4})
    config = write_config(tmp_path, cfg)
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "train", str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"ganforge train --resume {tmp_path / 'run'}" in stderr
    index = json.loads((tmp_path / "run" / "checkpoints" / "index.json").read_text())
    stopped_at = index["checkpoints"][-1]["step"]
    assert 0 < stopped_at < steps
    log_before = log.read_bytes()
    assert json.loads(log_before.decode().splitlines()[-1])["step"] == stopped_at  # logged at the stop

    result = run_cli("train", "--resume", str(tmp_path / "run"), "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resuming {tmp_path / 'run'} at step {stopped_at}" in result.stdout
    # A continuation (a rerun from step 0 would end with the same weights): the records up to the
    # stop are kept byte for byte, and the resumed process logged only the later steps.
    log_after = log.read_bytes()
    assert log_after.startswith(log_before)
    assert [json.loads(x)["step"] for x in log_after[len(log_before):].decode().splitlines()] == \
        [s for s in range(10, steps + 1, 10) if s > stopped_at]
    # Each session's command line as typed (`python -m ganforge`, not the path of __main__.py).
    sessions = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert [(s["step"], s["command"]) for s in sessions] == [
        (0, f"python -m ganforge train {config}"),
        (stopped_at, f"python -m ganforge train --resume {tmp_path / 'run'} -q")]
    resumed = load_checkpoint(tmp_path / "run" / "checkpoints" / f"step-{steps:08d}.pt").state

    reference = write_config(tmp_path, {**cfg, "output": {"dir": str(tmp_path / "ref")}}, "ref.yaml")
    assert cli("train", str(reference), "-q").exit_code == 0  # in this process: no second start-up
    expected = load_checkpoint(tmp_path / "ref" / "checkpoints" / f"step-{steps:08d}.pt").state
    import torch

    for net in ("G", "D", "G_ema"):
        assert all(torch.equal(resumed[net][k], expected[net][k]) for k in expected[net]), net


def ctrl_c_during_step(monkeypatch, step, executed):
    """Make the generator update that leads to `step` send this process a SIGINT (a Ctrl+C)."""
    from ganforge.training import loop

    original = loop.generator_step

    def update(state, *args, **kwargs):
        executed.append(state.step)
        if state.step + 1 == step:
            os.kill(os.getpid(), signal.SIGINT)
        return original(state, *args, **kwargs)

    monkeypatch.setattr(loop, "generator_step", update)


@pytest.fixture
def sigint_guard():
    """SIGINTs that reach this handler were not taken by the CLI's (instead of ending pytest)."""
    missed = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: missed.append(signum))
    yield missed
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_finishes_the_step_checkpoints_and_exits_130(cli, tmp_path, monkeypatch, sigint_guard):
    run = tmp_path / "run"
    cfg = tiny_config(run, train={"steps": 100, "batch_size": 8, "seed": 0, "device": "cpu"}, log={"every": 5},
                      checkpoint={"every": 50, "keep": 3}, samples={"every": 50, "num": 4})
    executed = []
    ctrl_c_during_step(monkeypatch, 7, executed)
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 130 and not sigint_guard, result.stderr
    assert executed == list(range(7))  # the step under way finished; no other started
    assert "SIGINT: finishing this step and saving a checkpoint (Ctrl+C again to quit at once)" in result.stderr
    path = run / "checkpoints" / "step-00000007.pt"  # not a checkpoint.every multiple: written for the stop
    assert f"stopped at step 7 of 100; checkpoint: {path}" in result.stderr
    assert load_checkpoint(path).step == 7
    assert json.loads((path.parent / "index.json").read_text())["latest"] == path.name
    assert f"continue with: ganforge train --resume {run}" in result.stderr
    assert "Traceback" not in result.stderr and not (run / ".lock").exists()


def test_a_second_ctrl_c_quits_at_once_even_mid_checkpoint(cli, tmp_path, monkeypatch, sigint_guard):
    import ganforge.checkpoint

    class SlowWrite:
        """The checkpoint file of the stop: a second Ctrl+C arrives while it is written, and the
        write would take a minute more."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(60)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def slow_open(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        return SlowWrite(f) if ".step-" in str(file) and "w" in mode else f

    monkeypatch.setattr(ganforge.checkpoint, "open", slow_open, raising=False)
    run = tmp_path / "run"
    cfg = tiny_config(run, train={"steps": 100, "batch_size": 8, "seed": 0, "device": "cpu"},
                      checkpoint={"every": 50, "keep": 3}, samples={"every": 50, "num": 4})
    ctrl_c_during_step(monkeypatch, 7, [])
    started = time.time()
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert time.time() - started < 30, "the second Ctrl+C waited for the checkpoint write"
    assert result.exit_code == 130 and not sigint_guard, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("interrupted")]
    # The cut-short write was the first checkpoint: nothing to resume from, and the line says so.
    assert line == "interrupted before the first checkpoint, so there is nothing to resume; start over with --overwrite"
    assert "Traceback" not in result.stderr
    assert list((run / "checkpoints").iterdir()) == []  # the cut-short write left no file behind
    assert not (run / ".lock").exists()


def test_resume_longer_and_refused_changes(cli, tmp_path):
    config = write_config(tmp_path, tiny_config(tmp_path / "run"))
    assert cli("train", str(config), "-q").exit_code == 0
    done = cli("train", "--resume", str(tmp_path / "run"))
    assert done.exit_code == 0 and "is complete (step 6 of 6)" in done.stdout
    longer = cli("train", "--resume", str(tmp_path / "run"), "--set", "train.steps=8", "--set", "checkpoint.every=4",
                 "-q")
    assert longer.exit_code == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000008.pt").step == 8
    refused = run_cli("train", "--resume", str(tmp_path / "run"), "--set", "generator.base_width=16")
    assert_one_line_error(refused, 2, "generator.base_width", "cannot change when resuming")


def test_existing_run_folder_is_not_overwritten_by_accident(cli, tmp_path):
    config = write_config(tmp_path, tiny_config(tmp_path / "run"))
    assert cli("train", str(config), "-q").exit_code == 0
    again = run_cli("train", str(config), "-q")
    assert_one_line_error(again, 2, "already holds a run", "--resume", "--overwrite")
    assert cli("train", str(config), "-q", "--overwrite").exit_code == 0


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train"], ["give a config file"]),
        (["sample", "/nonexistent/run"], ["no such checkpoint or run folder"]),
        (["list", "losses"], ["unknown section 'losses'"]),
    ],
)
def test_bad_commands_are_one_line_errors(args, fragments):
    assert_one_line_error(run_cli(*args), 2, *fragments)


def test_unknown_component_from_cli(tmp_path):
    config = write_config(tmp_path, tiny_config(tmp_path / "run"))
    result = run_cli("train", str(config), "--set", "loss.kind=hinj")
    assert_one_line_error(result, 2, "loss.kind", "did you mean 'hinge'", "valid:")


def test_list_shows_every_component(cli):
    from ganforge.registry import ALL_REGISTRIES

    out = cli("list").stdout
    for registry in ALL_REGISTRIES.values():
        for entry in registry.entries():
            assert f"  {entry.name}" in out and entry.description in out
    assert "latent_dim: integer" in out


def test_list_shows_what_each_component_declares(cli):
    from ganforge.metrics.catalog import declared
    from ganforge.registry import LOSSES, METRICS

    out = cli("list").stdout.splitlines()

    def declarations(section: str, name: str) -> str:
        """The line under `name`'s in `section`: what it declares."""
        start = out.index(f"{section}:")
        entry = next(i for i in range(start, len(out)) if out[i].startswith(f"  {name} "))
        return out[entry + 1].strip()

    assert declarations("metric", "fid") == "images; figures: fid (lower)"
    assert declarations("metric", "ppl") == ("images, at least 32x32; figures: ppl_wend (lower), ppl_zfull (lower); "
                                             "needs the run's generator and LPIPS weights")
    assert declarations("metric", "ifid").startswith("images, labelled;")
    assert declarations("metric", "modes").startswith("vectors; figures: modes (higher),")
    assert declarations("generator", "dcgan") == "images, 16 to 128 px (powers of two); output in [-1, 1]"
    assert declarations("generator", "stylegan2").endswith("; output unbounded")
    assert declarations("regularizer", "label_smoothing") == "losses: bce"
    assert declarations("regularizer", "path_length") == "networks: generator stylegan2, discriminator stylegan2"
    assert declarations("regularizer", "ada") == "images, 1 or 3 channels"
    assert declarations("regularizer", "r1") == "also puts D(real) in the D step"
    assert declarations("regularizer", "ac_gan").endswith("; also puts classify(real) in the D step, "
                                                         "classify(fake) in the G step")
    # Every metric's figures with the way each is better, every loss's shape, as registered.
    for name in METRICS.names():
        line = declarations("metric", name)
        assert all(f"{figure} ({better})" in line for figure, better in declared(name).figures.items()), line
    for entry in LOSSES.entries():
        assert declarations("loss", entry.name) == f"shape: {entry.properties['shape']}"


def test_help_does_not_import_torch():
    code = "import sys; from ganforge.cli import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_quickstart_config_is_offline_digits():
    import yaml

    data = yaml.safe_load((CONFIGS / "quickstart.yaml").read_text())
    assert data["data"]["kind"] == "digits" and data["generator"]["kind"] == "dcgan"
