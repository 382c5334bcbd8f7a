"""Two CPU processes with gloo through torchrun: rank 0 alone writes, and the weights match a
single process that takes the same global batch in two accumulation steps."""

from __future__ import annotations

import json

from conftest import run_cli, write_config
from ganforge.checkpoint import load_checkpoint

CONFIG = {
    "data": {"kind": "digits", "resolution": 16},
    "generator": {"kind": "dcgan", "latent_dim": 8, "base_width": 8},
    "discriminator": {"kind": "dcgan", "base_width": 8},
    # R1 needs a second backward pass through D: it must work under DDP too.
    "regularizers": [{"kind": "r1", "weight": 1.0, "every": 2}],
    "train": {"steps": 8, "batch_size": 16, "seed": 0, "device": "cpu"},
    "log": {"every": 2},
    "samples": {"every": 4, "num": 16},
    "checkpoint": {"every": 4, "keep": 5},
}

# Summation order differs (an all-reduce vs accumulated gradients), nothing else: float32 rounding.
TOLERANCE = 1e-6


def params(path):
    state = load_checkpoint(path).state
    return {net: {k: v for k, v in state[net].items() if "running" not in k and "num_batches" not in k}
            for net in ("G", "D", "G_ema")}


def max_difference(a, b) -> float:
    return max((a[net][k] - b[net][k]).abs().max().item() for net in a for k in a[net])


def test_two_processes_match_one_process_with_accumulation(tmp_path):
    config = write_config(tmp_path, CONFIG)
    ddp = run_cli("train", str(config), "--nproc", "2", "--set", f"output.dir={tmp_path / 'ddp'}", "-q",
                  cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr
    assert "Traceback" not in ddp.stderr and "warning" not in ddp.stderr.lower()
    # Rank 0 alone wrote: one log record per log step, one sample grid per sample step.
    records = [json.loads(x) for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert sorted(p.name for p in (tmp_path / "ddp" / "samples").iterdir()) == \
        ["latest.png", "step-00000004.png", "step-00000008.png"]
    assert ddp.stdout.count("done: 8 steps") == 1

    single = run_cli("train", str(config), "--set", f"output.dir={tmp_path / 'single'}", "--set",
                     "train.accumulate=2", "-q", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    a = params(tmp_path / "ddp" / "checkpoints" / "step-00000008.pt")
    b = params(tmp_path / "single" / "checkpoints" / "step-00000008.pt")
    assert max_difference(a, b) < TOLERANCE
    # Losses are averaged over ranks in the log: the same figures as the single process.
    single_records = [json.loads(x) for x in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    for r, s in zip(records, single_records):
        assert abs(r["d_loss"] - s["d_loss"]) < 1e-5 and abs(r["g_loss"] - s["g_loss"]) < 1e-5

    # A checkpoint written by two processes resumes in one (and continues the same run).
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    (resumed_dir / "checkpoints").mkdir()
    for name in ("step-00000004.pt", "index.json"):
        (resumed_dir / "checkpoints" / name).write_bytes((tmp_path / "ddp" / "checkpoints" / name).read_bytes())
    index = json.loads((resumed_dir / "checkpoints" / "index.json").read_text())
    index["checkpoints"] = [e for e in index["checkpoints"] if e["step"] == 4]
    index["latest"] = "step-00000004.pt"
    (resumed_dir / "checkpoints" / "index.json").write_text(json.dumps(index))
    resumed = run_cli("train", "--resume", str(resumed_dir), "--set", "train.accumulate=2", "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    c = params(resumed_dir / "checkpoints" / "step-00000008.pt")
    assert max_difference(a, c) < TOLERANCE


def test_separate_lazy_phases_and_a_larger_g_batch_match_one_process(tmp_path):
    # The lazy phase runs the plain D, whose gradients DDP does not average: the loop does.
    config = write_config(tmp_path, {**CONFIG, "train": {**CONFIG["train"], "steps": 4, "g_batch_size": 32,
                                                         "lazy": "separate"}})
    ddp = run_cli("train", str(config), "--nproc", "2", "--set", f"output.dir={tmp_path / 'ddp'}", "-q", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr
    single = run_cli("train", str(config), "--set", f"output.dir={tmp_path / 'single'}", "--set", "train.accumulate=2",
                     "-q", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    a = params(tmp_path / "ddp" / "checkpoints" / "step-00000004.pt")
    assert max_difference(a, params(tmp_path / "single" / "checkpoints" / "step-00000004.pt")) < TOLERANCE


def test_batch_that_does_not_split_is_a_config_error(tmp_path):
    config = write_config(tmp_path, {**CONFIG, "train": {**CONFIG["train"], "batch_size": 15}})
    result = run_cli("train", str(config), "--nproc", "2", "--set", f"output.dir={tmp_path / 'x'}", "-q",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "train.batch_size=15 does not split over 2 processes x 1 micro-batches (train.accumulate)" in result.stderr
    assert "Traceback" not in result.stderr
