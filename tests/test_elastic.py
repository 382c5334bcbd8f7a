"""Jobs that restart themselves: `train --auto-resume`, a bounded rendezvous, and torchrun's
elastic restarts and a preemption's SIGTERM on the CPU (scripts/elastic_check.py --quick)."""

from __future__ import annotations

import datetime
import importlib.util
import json
import shutil
import sys

import pytest
import torch
import yaml

from conftest import CONFIGS, ROOT, tiny_config, write_config
from ganforge.checkpoint import load_checkpoint


def log_steps(run):
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def one_error(result):
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_auto_resume_starts_then_continues_and_refuses_another_config(cli, tmp_path):
    run = tmp_path / "run"
    config = write_config(tmp_path, tiny_config(run))
    first = cli("train", str(config), "--auto-resume", "-q")
    assert first.exit_code == 0 and f"run folder: {run}" in first.stdout, first.output
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["auto_resume"] is True
    # The same command once the run is complete: nothing to do, exit 0.
    again = cli("train", str(config), "--auto-resume", "-q")
    assert again.exit_code == 0 and f"{run} is complete (step 6 of 6)" in again.stdout, again.output
    # A change that --resume allows (a longer budget) continues from the newest checkpoint.
    longer = cli("train", str(config), "--auto-resume", "-q", "--set", "train.steps=9")
    assert longer.exit_code == 0 and f"resuming {run} at step 6 of 9" in longer.stdout, longer.output
    assert log_steps(run) == [2, 4, 6, 8, 9]
    # Any other change is another run: one line naming the first key that differs.
    other = cli("train", str(config), "--auto-resume", "--set", "generator.base_width=16", "--set",
                "train.seed=3")
    assert other.exit_code == 2
    assert one_error(other) == (
        f"error: {run} holds a run of another config: generator.base_width is 8 there and 16 in {config}; continue "
        f"that run "
        f"with `ganforge train --resume {run}`, start over with --overwrite, or choose another output.dir")
    # The config key does what the flag does.
    keyed = write_config(tmp_path, tiny_config(run, train={**tiny_config(run)["train"], "auto_resume": True,
                                                           "steps": 12}), "keyed.yaml")
    result = cli("train", str(keyed), "-q")
    assert result.exit_code == 0 and f"resuming {run} at step 9 of 12" in result.stdout, result.output
    assert cli("train", str(config), "--auto-resume", "--overwrite").exit_code == 2


def test_auto_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_cleanly(cli, tmp_path):
    run = tmp_path / "run"
    config = write_config(tmp_path, tiny_config(run))
    assert cli("train", str(config), "-q").exit_code == 0
    # What a kill before the first checkpoint leaves: the config, a log, samples, a stale lock.
    shutil.rmtree(run / "checkpoints")
    (run / ".lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": __import__("socket").gethostname()}))
    other = cli("train", str(config), "--auto-resume", "--set", "loss.kind=hinge")
    assert other.exit_code == 2 and "loss.kind is 'non_saturating' there and 'hinge' in" in one_error(other)
    result = cli("train", str(config), "--auto-resume", "-q")
    assert result.exit_code == 0 and f"run folder: {run}" in result.stdout, result.output
    assert log_steps(run) == [2, 4, 6]  # each step once: the old records went with the old start
    assert load_checkpoint(run / "checkpoints" / "step-00000006.pt").step == 6


def test_auto_resume_continues_a_stopped_run_bit_identically(cli, tmp_path):
    """The budget's exit code (3) stays; the same command then continues to the weights of a
    run that never stopped."""
    train = {**yaml.safe_load((CONFIGS / "tiny.yaml").read_text())["train"], "steps": 12}
    config = write_config(tmp_path, tiny_config(tmp_path / "run", train=train, checkpoint={"every": 4, "keep": 2}))
    stopped = cli("train", str(config), "--auto-resume", "-q", "--max-minutes", "0.0001")
    assert stopped.exit_code == 3, stopped.output
    assert "continue with: the same command (it resumes: train.auto_resume)" in stopped.stderr
    assert cli("train", str(config), "--auto-resume", "-q").exit_code == 0
    reference = cli("train", str(config), "-q", "--set", f"output.dir={tmp_path / 'reference'}")
    assert reference.exit_code == 0
    a = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000012.pt").state
    b = load_checkpoint(tmp_path / "reference" / "checkpoints" / "step-00000012.pt").state
    assert all(torch.equal(a[net][k], b[net][k]) for net in ("G", "D", "G_ema") for k in b[net])



def test_a_resume_prunes_the_checkpoint_a_kill_during_the_final_save_left(cli, tmp_path, monkeypatch):
    """A kill after the final save's index update and before its deletion leaves an old
    checkpoint that no later save of that run would prune: the resume prunes it, before it saves."""
    from ganforge.run import RunDir

    run = tmp_path / "run"
    config = write_config(tmp_path, tiny_config(run, checkpoint={"every": 2, "keep": 1}))
    assert cli("train", str(config), "-q").exit_code == 0
    orphan = run / "checkpoints" / "step-00000004.pt"
    shutil.copyfile(run / "checkpoints" / "step-00000006.pt", orphan)
    present_at_saves = []
    save = RunDir.save_checkpoint
    monkeypatch.setattr(RunDir, "save_checkpoint",
                        lambda self, ckpt, keep: present_at_saves.append(orphan.exists()) or save(self, ckpt, keep))
    result = cli("train", str(config), "--auto-resume", "-q", "--set", "train.steps=8")
    assert result.exit_code == 0 and f"resuming {run} at step 6 of 8" in result.stdout, result.output
    assert present_at_saves == [False]
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000008.pt"]


@pytest.fixture
def lone_rank(monkeypatch):
    """This process as rank 0 of 2 under torchrun, with a rendezvous store that it hosts; the
    other rank never comes."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(store.port), "TORCHELASTIC_USE_AGENT_STORE": "True"}.items():
        monkeypatch.setenv(key, value)
    return store


def test_a_restarted_group_never_reads_the_last_attempts_rendezvous(lone_rank, monkeypatch):
    """Restart 1 of a group finds attempt 0's keys in torchrun's store (as its agent keeps them):
    it must not count attempt 0's processes, and it waits a bounded time, then says so in one line."""
    from ganforge import distributed
    from ganforge.errors import PeerError

    lone_rank.set("ganforge/attempt-0/joined", "2")  # both processes of the killed attempt had joined
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.setattr(distributed, "JOIN_TIMEOUT", datetime.timedelta(seconds=0.5))
    with pytest.raises(PeerError, match=r"^process 0 of 2: only 1 of 2 processes joined within 0.5 s \(rendezvous "
                                        r"at 127\.0\.0\.1:\d+, restart 1\); one of them did not start or died$"):
        distributed.init(torch.device("cpu"), timeout=datetime.timedelta(seconds=2))
    assert not torch.distributed.is_initialized()


def load_elastic_check():
    spec = importlib.util.spec_from_file_location("elastic_check", ROOT / "scripts" / "elastic_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["elastic_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.platform(not sys.platform.startswith("linux"), reason="finds torchrun's workers through /proc")
def test_torchrun_restarts_after_a_worker_kill_and_a_preemption_and_ends_bit_identical(tmp_path):
    """scripts/elastic_check.py --quick: one worker SIGKILLed mid-run (torchrun --max-restarts
    restarts the group, which continues from its last checkpoint), then a SIGTERM to torchrun and
    both workers (SLURM's preemption signal; the workers wait for it at a step before the last, so
    a loaded machine cannot let the run end first), then the same command: the end state and
    every log record equal an uninterrupted 2-process run's."""
    check = load_elastic_check()
    outcome = check.elastic_check(check.QUICK_CONFIG, kills=1, tmp=tmp_path, seed=0, say=lambda *a: None)
    kill, term = outcome.events
    assert kill.what.startswith("SIGKILL") and kill.resumed_from <= kill.at_step
    # The survivor said what happened in one line (not a gloo traceback).
    assert len(kill.error_lines) == 1 and "another process failed or stopped answering" in kill.error_lines[0]
    # The SIGTERM: one line per process, a checkpoint at the step they stopped at, and the next
    # launch continued from it.
    assert sum(line.startswith("SIGTERM: finishing this step") for line in term.error_lines) == 2
    assert term.resumed_from == outcome.term_checkpoint >= term.at_step
    # The workers waited for the signal at a step before the last: it cannot come too late.
    assert term.at_step < outcome.hold_at < 24 and outcome.term_checkpoint <= outcome.hold_at
    assert outcome.final_exit == 0 and outcome.final_step == outcome.reference_step == 24
    assert outcome.differ == [] and outcome.log_differ == [] and outcome.tracebacks == 0


def test_a_requeued_slurm_job_takes_its_lock_over_from_another_node_and_no_other_job_does(cli, tmp_path,
                                                                                          monkeypatch):
    """The README's SLURM script after a SIGKILL on node-a (a node failure, a preemption that
    did not wait): the requeued job, now on this host, finds node-a's lock. Its own earlier run
    (same job id, lower SLURM_RESTART_COUNT) is gone and the lock is taken over; a lock of
    another job, or of this same run of the job on another node, is refused in one line."""
    from ganforge.run import RunDir, earlier_run_of

    run = tmp_path / "run"
    config = write_config(tmp_path, tiny_config(run))
    assert cli("train", str(config), "-q").exit_code == 0
    held = {"pid": 4242, "host": "node-a", "slurm": {"SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": "0"}}
    (run / ".lock").write_text(json.dumps(held))
    for job, restart in (("78", "1"), ("77", "0")):  # another job; this run of the job, on another node
        monkeypatch.setenv("SLURM_JOB_ID", job)
        monkeypatch.setenv("SLURM_RESTART_COUNT", restart)
        refused = cli("train", str(config), "--auto-resume", "--set", "train.steps=8")
        assert refused.exit_code == 2
        assert one_error(refused) == (f"error: {run} is locked by process 4242 on host node-a (SLURM job 77); if "
                                      f"that run is over, delete {run / '.lock'}")
        assert json.loads((run / ".lock").read_text()) == held and log_steps(run) == [2, 4, 6]
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    requeued = cli("train", str(config), "--auto-resume", "-q", "--set", "train.steps=8")
    assert requeued.exit_code == 0 and f"resuming {run} at step 6 of 8" in requeued.stdout, requeued.output
    assert (f"taking over {run / '.lock'} left by process 4242 on node-a by an earlier run of SLURM job 77 "
            "(restart 0; this is restart 1)") in requeued.output
    assert log_steps(run) == [2, 4, 6, 8] and not (run / ".lock").exists()
    # What the lock records, and array tasks: a task is its own job.
    writer = RunDir(run)
    writer.acquire_lock()
    assert json.loads((run / ".lock").read_text())["slurm"] == {"SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": "1"}
    writer.release_lock()
    task = {"SLURM_JOB_ID": "121", "SLURM_ARRAY_JOB_ID": "120", "SLURM_ARRAY_TASK_ID": "1"}
    assert earlier_run_of({**task, "SLURM_RESTART_COUNT": "0"}, {**task, "SLURM_RESTART_COUNT": "2"})
    assert not earlier_run_of({**task, "SLURM_ARRAY_TASK_ID": "2", "SLURM_RESTART_COUNT": "0"},
                              {**task, "SLURM_RESTART_COUNT": "2"})
