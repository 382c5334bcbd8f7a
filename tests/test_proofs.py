"""Resume is a continuation, not a rerun. Training is deterministic, so a `--resume` that silently
started again from step 0 would also end bit-identical: every test here fails for such a rerun.
The resumed process must run only the missing steps, leave what the run recorded before the
checkpoint untouched, and depend on the checkpoint's contents (a perturbed tensor changes the
result); SIGKILLs at random moments and in the middle of each file write resume bit-identically."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import threading

import pytest
import torch
from test_resume import assert_same_weights

from conftest import ROOT, tiny_config, write_config
from ganforge.checkpoint import load_checkpoint, serialize, sha256_of
from ganforge.config import load_config
from ganforge.run import RunDir, find_checkpoint, load_latest_good
from ganforge.training import loop

TOTAL, STOP_AT = 9, 5
SECTIONS = {
    "train": {"steps": TOTAL, "batch_size": 8, "seed": 0, "device": "cpu", "ema": {"decay": 0.9, "rampup": None}},
    "log": {"every": 1},
    "samples": {"every": 3, "num": 4},
    "checkpoint": {"every": 3, "keep": 10},
}
LONG_AGO = 1_000_000_000 * 10**9  # 2001, in ns: a file rewritten by the resume gets a new mtime


def counting_steps(monkeypatch, stop_at: int | None = None, stop: threading.Event | None = None) -> list[int]:
    """Record state.step at every generator update; set `stop` during the update that makes
    step `stop_at` (as a Ctrl+C would)."""
    executed: list[int] = []
    original = loop.generator_step

    def step(state, *args, **kwargs):
        executed.append(state.step)
        if stop is not None and state.step + 1 == stop_at:
            stop.set()
        return original(state, *args, **kwargs)

    monkeypatch.setattr(loop, "generator_step", step)
    return executed


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """An uninterrupted reference run of TOTAL steps, and the same run stopped after STOP_AT
    steps (stop requested during the last one, as by Ctrl+C: it checkpoints at STOP_AT)."""
    tmp = tmp_path_factory.mktemp("proofs")
    for name in ("reference", "stopped"):
        cfg, cfg_dict = load_config(write_config(tmp, tiny_config(tmp / name, **SECTIONS), f"{name}.yaml"), [])
        run = RunDir(cfg.output.dir)
        run.create()
        stop = threading.Event()
        with pytest.MonkeyPatch.context() as mp:
            executed = counting_steps(mp, STOP_AT if name == "stopped" else None, stop)
            result = loop.train(cfg, cfg_dict, run, stop=stop, progress=False)
        run.release_lock()
        expected = TOTAL if name == "reference" else STOP_AT
        assert result.step == expected and executed == list(range(expected))
    assert json.loads((tmp / "stopped" / "checkpoints" / "index.json").read_text())["latest"] == \
        f"step-{STOP_AT:08d}.pt"
    return tmp


def final(run):
    return load_checkpoint(*find_checkpoint(run)).state


def test_resume_runs_only_the_missing_steps_and_redoes_nothing(cli, stopped, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(stopped / "stopped", run)
    log_before = (run / "log.jsonl").read_bytes()
    # Everything written up to the checkpoint, dated long ago: a file the resume rewrites (even
    # with the same bytes) gets a new mtime.
    earlier = {p: p.read_bytes() for p in [*(run / "samples").glob("step-*.png"), *(run / "checkpoints").glob("*.pt")]}
    assert sorted(p.name for p in earlier) == ["step-00000003.png", "step-00000003.pt", "step-00000005.png",
                                               "step-00000005.pt"]
    for p in earlier:
        os.utime(p, ns=(LONG_AGO, LONG_AGO))

    executed = counting_steps(monkeypatch)
    result = cli("train", "--resume", str(run), "-q")
    assert result.exit_code == 0, result.stderr
    assert f"resuming {run} at step {STOP_AT} of {TOTAL}" in result.stdout
    # The resumed process made exactly the generator updates from step STOP_AT on.
    assert executed == list(range(STOP_AT, TOTAL))
    # log.jsonl: the records up to the checkpoint byte for byte (timings included), then one
    # record per later step, nothing repeated.
    log_after = (run / "log.jsonl").read_bytes()
    assert log_after.startswith(log_before)
    assert [json.loads(line)["step"] for line in log_after[len(log_before):].decode().splitlines()] == \
        list(range(STOP_AT + 1, TOTAL + 1))
    assert [json.loads(x)["step"] for x in log_after.decode().splitlines()] == \
        [json.loads(x)["step"] for x in (stopped / "reference" / "log.jsonl").read_text().splitlines()]
    # Sample grids and checkpoints from before the resume point: not rewritten.
    for p, data in earlier.items():
        assert p.stat().st_mtime_ns == LONG_AGO and p.read_bytes() == data, p.name
    assert (run / "samples" / "step-00000006.png").stat().st_mtime_ns > LONG_AGO
    assert_same_weights(final(stopped / "reference"), final(run))


def perturb(state, what):
    """Change one tensor (or the data position) of a checkpoint's payload in place."""
    if what == "data":
        state["data"]["cursor"] += 8  # one batch further on
        return
    net, key = what.split(".", 1) if "." in what else (what, None)
    if net == "opt_g":
        first = next(iter(state["state"]["opt_g"]["state"].values()))
        first["exp_avg"].view(-1)[0] += 1e-3
        return
    tensors = state["state"][net]
    key = key or next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[key].view(-1)[0] += 1e-3


@pytest.mark.parametrize(
    ("what", "differ"),
    [
        ("G", {"G", "D", "G_ema"}),
        ("D", {"G", "D", "G_ema"}),
        ("G_ema", {"G_ema"}),  # G_ema is loaded, not rebuilt from G; G and D never read it
        ("opt_g", {"G", "D", "G_ema"}),
        ("data", {"G", "D", "G_ema"}),
    ],
)
def test_a_perturbed_checkpoint_changes_the_result(cli, stopped, tmp_path, what, differ):
    run = tmp_path / "run"
    shutil.copytree(stopped / "stopped", run)
    path = run / "checkpoints" / f"step-{STOP_AT:08d}.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    perturb(payload, what)
    # Saved back as ganforge writes it, with its checksum and size recorded in index.json.
    path.write_bytes(serialize(payload))
    index_path = run / "checkpoints" / "index.json"
    index = json.loads(index_path.read_text())
    entry = next(e for e in index["checkpoints"] if e["file"] == path.name)
    entry.update(sha256=sha256_of(path), bytes=path.stat().st_size)
    index_path.write_text(json.dumps(index))
    assert load_latest_good(run).step == STOP_AT  # accepted as it is, not skipped

    result = cli("train", "--resume", str(run), "-q")
    assert result.exit_code == 0 and "skipping" not in result.stderr, result.stderr
    got, reference = final(run), final(stopped / "reference")
    changed = {net for net in ("G", "D", "G_ema") if any(not torch.equal(got[net][k], reference[net][k])
                                                         for k in reference[net])}
    assert changed == differ


def load_kill_resume():
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "scripts" / "kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_resume"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_sigkill_anywhere_even_mid_write_resumes_bit_identically(tmp_path):
    """scripts/kill_resume.py --quick: a SIGKILL in the middle of each file write (checkpoint,
    index.json, log line), between a checkpoint's rename and the index update, between the index
    update and pruning, and at random moments; resuming after each gives the uninterrupted weights."""
    kill_resume = load_kill_resume()
    outcome = kill_resume.kill_and_resume(kill_resume.QUICK_CONFIG, kill_resume.QUICK_PLAN, tmp_path, fork=True,
                                          delays=(0.05, 1.0), say=lambda *a: None)
    caught = {k.what for k in outcome.kills if k.what != "random" and k.evidence}
    assert caught == set(kill_resume.WRITE_PHASES), [vars(k) for k in outcome.kills]
    # Each kill landed where it was meant to: e.g. the half-written temporary checkpoint was there.
    by_phase = {k.what: k for k in outcome.kills}
    assert ".step-00000008.pt.tmp-" in by_phase["checkpoint-partial"].evidence
    assert "step-00000004.pt not yet deleted" in outcome.kills[5].evidence
    # A crash never leaves a half-written checkpoint: every step-*.pt on disk loads after every kill.
    assert [k.damaged for k in outcome.kills] == [[]] * len(outcome.kills)
    assert outcome.final_step == outcome.reference_step == kill_resume.QUICK_CONFIG["train"]["steps"]
    assert outcome.differ == []
    assert outcome.log_steps == outcome.reference_log_steps  # one whole record per log step
    assert outcome.leftovers == [] and outcome.tracebacks == 0
    # The kills between an index update and pruning left a checkpoint the index no longer named
    # (the evidence above); the resumed run's pruning compared the folder with the index and
    # deleted it: every step-N.pt left is in the index.
    assert outcome.orphans == []
