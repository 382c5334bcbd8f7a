#!/usr/bin/env python
"""Elastic and preempted multi-process training, proven on the CPU (gloo): torchrun restarts a
group whose worker was SIGKILLed, the run continues from its last checkpoint, and the end state
is the one of a run that was never interrupted, bit for bit.

1. A reference: `torchrun --standalone --nproc_per_node 2 -m ganforge train REF.yaml`, uninterrupted.
2. `torchrun --standalone --nproc_per_node 2 --max-restarts K -m ganforge train CONFIG --auto-resume`,
   and while it trains: K times, a SIGKILL to one worker (rank 0 or 1, at random) once the log
   has passed a random step; torchrun restarts the group each time, and the restarted group
   continues from the last checkpoint.
3. Then a SIGTERM to torchrun and to every worker at once, as SLURM sends before a preemption
   or the time limit (`#SBATCH --signal=TERM@120`): each process finishes its step, rank 0
   saves a checkpoint, and all stop.
4. The same command again (a requeued job): it continues to the end.

At the end G, D, G_ema, both optimizers' states and every log record (less the speed, a
timing) must equal the reference's; no process of ganforge may print a traceback, and each one
that saw its peer die says so in one line.

    python scripts/elastic_check.py               # 3 worker kills + one SIGTERM (about 2 min on 2 cores)
    python scripts/elastic_check.py --quick       # 1 kill + one SIGTERM, a shorter run (the tests run this)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# DCGAN on digits with R1 and BatchNorm: sharded data, a double backward under DDP, buffers.
CONFIG: dict[str, Any] = {
    "data": {"kind": "digits", "resolution": 16},
    "generator": {"kind": "dcgan", "latent_dim": 16, "base_width": 16},
    "discriminator": {"kind": "dcgan", "base_width": 16},
    "regularizers": [{"kind": "r1", "weight": 1.0, "every": 4}],
    "schedule": {"g": {"kind": "cosine", "warmup_steps": 20}, "d": {"kind": "constant"}},
    "train": {"steps": 400, "batch_size": 32, "seed": 0, "device": "cpu", "ema": {"decay": 0.99}},
    "log": {"every": 5},
    "samples": {"every": 100, "num": 16},
    "checkpoint": {"every": 25, "keep": 2},
}
QUICK_CONFIG: dict[str, Any] = {
    **CONFIG,
    "generator": {"kind": "dcgan", "latent_dim": 8, "base_width": 8},
    "discriminator": {"kind": "dcgan", "base_width": 8},
    "train": {**CONFIG["train"], "steps": 24, "batch_size": 16},
    "log": {"every": 2},
    "samples": {"every": 12, "num": 4},
    "checkpoint": {"every": 6, "keep": 2},
}
# Log fields that measure time, not training: they differ between any two runs.
TIMING = ("img_per_s",)


def torchrun(nproc: int, restarts: int, argv: list[str]) -> list[str]:
    """The command line of `torchrun` for ganforge on this node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            f"--max-restarts={restarts}", "-m", "ganforge", *argv]


class Group:
    """A torchrun process (its own session, like a job step) and its output file."""

    def __init__(self, cmd: list[str], output: Path) -> None:
        self.output, self.started = output, time.monotonic()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        self.proc = subprocess.Popen(cmd, stdout=output.open("w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def workers(self) -> dict[int, int]:
        """rank -> pid of the workers running now (torchrun's children that have a RANK)."""
        found = {}
        for pid in _children(self.proc.pid):
            try:
                env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
            except OSError:
                continue
            if "RANK" in env:
                found[int(env["RANK"])] = pid
        return found

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"torchrun did not finish within {timeout:.0f} s:\n{self.text()[-3000:]}") from None

    def stop(self) -> None:
        """SIGKILL the workers and torchrun, if they still run (workers have sessions of their own)."""
        for pid in [*self.workers().values(), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def log_records(run: Path) -> list[dict[str, Any]]:
    path = run / "log.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return records


def last_logged_step(run: Path) -> int:
    records = log_records(run)
    return records[-1]["step"] if records else 0


def wait_until(predicate: Any, timeout: float, what: str, group: Group) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if group.proc.poll() is not None:
            raise RuntimeError(f"torchrun exited ({group.proc.returncode}) while waiting for {what}:\n"
                               f"{group.text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout:.0f} s:\n{group.text()[-3000:]}")
        time.sleep(0.05)


def resumed_steps(text: str) -> list[int]:
    """The steps of the `resuming RUN at step N of M` lines."""
    return [int(line.split(" at step ")[1].split()[0]) for line in text.splitlines() if line.startswith("resuming ")]


def foreign_tracebacks(text: str) -> int:
    """Tracebacks in the output that are not torchrun's own report of the SIGTERM it received
    (torchrun prints one for its SignalException; ganforge's processes must print none)."""
    blocks = text.split("Traceback (most recent call last)")[1:]
    return sum("SignalException" not in block.split("\n\n")[0].splitlines()[-1] if block.strip() else 1
               for block in blocks)


@dataclass
class Event:
    what: str  # "SIGKILL rank N" or "SIGTERM group"
    at_step: int  # the last logged step when it was sent
    resumed_from: int | None = None  # the checkpoint step the next group continued from
    seconds_to_resume: float | None = None  # from the signal to the restarted group's `resuming` line
    error_lines: list[str] = field(default_factory=list)  # what the other processes said


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    reference_seconds: float = 0.0
    elastic_seconds: float = 0.0
    term_exit: int | None = None  # torchrun's exit code after the SIGTERM
    term_seconds: float = 0.0  # from the SIGTERM to the group's end
    term_checkpoint: int | None = None  # the step of the checkpoint the SIGTERM left
    final_exit: int | None = None
    final_step: int = 0
    reference_step: int = 0
    differ: list[str] = field(default_factory=list)
    log_differ: list[str] = field(default_factory=list)
    tracebacks: int = 0

    @property
    def ok(self) -> bool:
        return (not self.differ and not self.log_differ and self.final_step == self.reference_step
                and self.final_exit == 0 and self.tracebacks == 0 and self.term_checkpoint is not None)


def _load_kill_resume() -> Any:
    """scripts/kill_resume.py, for its comparison of training states."""
    spec = importlib.util.spec_from_file_location("kill_resume", Path(__file__).with_name("kill_resume.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kill_resume", module)
    spec.loader.exec_module(module)
    return module


def compare_logs(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    """How two logs differ, less the timing fields ([] when they agree record for record)."""
    strip = [[{k: v for k, v in r.items() if k not in TIMING} for r in log] for log in (a, b)]
    if len(strip[0]) != len(strip[1]):
        return [f"{len(a)} records against {len(b)}"]
    return [f"step {x.get('step')}: {sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))}"
            for x, y in zip(*strip) if x != y]


def elastic_check(cfg: dict[str, Any], kills: int, tmp: Path, seed: int = 0, say: Any = print) -> Outcome:
    """Steps 1-4 of the module docstring; returns what was seen."""
    started: list[Group] = []

    def launch(cmd: list[str], output: Path) -> Group:
        started.append(Group(cmd, output))
        return started[-1]

    try:
        rng = random.Random(seed)
        kill_resume = _load_kill_resume()
        steps = cfg["train"]["steps"]
        outcome = Outcome()
        reference_cfg, config = tmp / "reference.yaml", tmp / "elastic.yaml"
        reference_cfg.write_text(yaml.safe_dump({**cfg, "output": {"dir": str(tmp / "reference")}}))
        config.write_text(yaml.safe_dump({**cfg, "output": {"dir": str(tmp / "elastic")}}))
        run = tmp / "elastic"

        say(f"reference: 2 processes, {steps} steps, uninterrupted ...")
        group = launch(torchrun(2, 0, ["train", str(reference_cfg), "-q"]), tmp / "reference.txt")
        if group.wait(900) != 0:
            raise RuntimeError(f"the reference run failed:\n{group.text()[-3000:]}")
        outcome.reference_seconds = time.monotonic() - group.started

        # Kill moments: random steps in the first two thirds, then the SIGTERM in the last third.
        targets = sorted(rng.sample(range(steps // 10, 2 * steps // 3), kills))
        term_at = rng.randrange(2 * steps // 3, 5 * steps // 6)
        command = ["train", str(config), "--auto-resume", "-q"]
        say(f"elastic: torchrun --nproc_per_node 2 --max-restarts {kills} -m ganforge {' '.join(command)}")
        # seconds: from a kill to the restarted group's `resuming` line; from the SIGTERM to the group's end.
        say(f"{'event':<18} {'logged step':>11} {'resumed from':>12} {'seconds':>9}  what the processes said")
        group = launch(torchrun(2, kills, command), tmp / "elastic-1.txt")
        for target in targets:
            seen = len(resumed_steps(group.text()))
            wait_until(lambda target=target: last_logged_step(run) >= target and len(group.workers()) == 2, 600,
                       f"step {target}", group)
            rank = rng.randrange(2)
            pid = group.workers()[rank]
            step = last_logged_step(run)
            os.kill(pid, signal.SIGKILL)
            sent = time.monotonic()
            event = Event(f"SIGKILL rank {rank}", step)
            before = len(group.text())
            wait_until(lambda seen=seen: len(resumed_steps(group.text())) > seen, 600, "the restarted group", group)
            event.seconds_to_resume = time.monotonic() - sent
            event.resumed_from = resumed_steps(group.text())[-1]
            event.error_lines = [ln for ln in group.text()[before:].splitlines() if ln.startswith("error:")]
            outcome.events.append(event)
            say(f"{event.what:<18} {event.at_step:>11} {event.resumed_from:>12} {event.seconds_to_resume:>9.1f}  "
                + (" | ".join(event.error_lines) or "-"))

        # The preemption: SIGTERM to the launcher and to every worker, as SLURM signals a job step.
        wait_until(lambda: last_logged_step(run) >= term_at and len(group.workers()) == 2, 600, f"step {term_at}",
                   group)
        event = Event("SIGTERM group", last_logged_step(run))
        pids = [group.proc.pid, *group.workers().values()]
        before = len(group.text())
        sent = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        outcome.term_exit = group.wait(120)
        outcome.term_seconds = time.monotonic() - sent
        index = json.loads((run / "checkpoints" / "index.json").read_text())
        latest = next(e["step"] for e in index["checkpoints"] if e["file"] == index["latest"])
        outcome.term_checkpoint = latest if latest >= event.at_step else None
        text = group.text()
        outcome.tracebacks += foreign_tracebacks(text)
        event.error_lines = [ln for ln in text[before:].splitlines() if ln.startswith(("error:", "SIGTERM", "stopped"))]
        outcome.elastic_seconds += time.monotonic() - group.started

        say(f"{event.what:<18} {event.at_step:>11} {'':>12} {outcome.term_seconds:>9.1f}  "
            f"torchrun exit {outcome.term_exit}; " + " | ".join(event.error_lines))

        group = launch(torchrun(2, kills, command), tmp / "elastic-2.txt")
        outcome.final_exit = group.wait(900)
        outcome.elastic_seconds += time.monotonic() - group.started
        event.resumed_from = (resumed_steps(group.text()) or [None])[0]
        event.seconds_to_resume = outcome.term_seconds
        outcome.events.append(event)
        say(f"the same command again (a requeued job): continued from step {event.resumed_from}, exit "
            f"{outcome.final_exit}, {time.monotonic() - group.started:.1f} s")
        outcome.tracebacks += foreign_tracebacks(group.text())
        if outcome.final_exit != 0:
            raise RuntimeError(f"the continued run failed ({outcome.final_exit}):\n{group.text()[-3000:]}")

        a, b = kill_resume.final_state(run), kill_resume.final_state(tmp / "reference")
        outcome.final_step, outcome.reference_step = a.step, b.step
        outcome.differ = kill_resume.compare(a.state, b.state)
        outcome.log_differ = compare_logs(log_records(run), log_records(tmp / "reference"))
        return outcome
    finally:  # a failed check leaves no process behind
        for group in started:
            if group.proc.poll() is None:
                group.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="workers SIGKILLed (torchrun --max-restarts)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and the ranks killed")
    parser.add_argument("--quick", action="store_true", help="one kill, a shorter run (the tests run this)")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the runs (default: a new temp folder)")
    args = parser.parse_args(argv)
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="ganforge-elastic-"))
    tmp.mkdir(parents=True, exist_ok=True)
    cfg, kills = (QUICK_CONFIG, 1) if args.quick else (CONFIG, args.kills)
    started = time.monotonic()
    outcome = elastic_check(cfg, kills, tmp, seed=args.seed)
    import resource

    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(f"CPU time: this script {own.ru_utime + own.ru_stime:.1f} s, torchrun and its workers "
          f"{children.ru_utime + children.ru_stime:.1f} s")
    print(f"reference {outcome.reference_seconds:.1f} s; elastic run {outcome.elastic_seconds:.1f} s over "
          f"{kills + 2} launches and restarts; check {time.monotonic() - started:.1f} s in all ({tmp})")
    print(f"final step {outcome.final_step} (reference {outcome.reference_step}); SIGTERM: checkpoint at step "
          f"{outcome.term_checkpoint}, all stopped in {outcome.term_seconds:.1f} s; tracebacks from ganforge: "
          f"{outcome.tracebacks}")
    if outcome.log_differ:
        print(f"log records differ: {outcome.log_differ[:3]}")
    if outcome.differ:
        print(f"NOT identical: {len(outcome.differ)} tensors differ, e.g. {outcome.differ[:3]}")
    if not outcome.ok:
        sys.exit(1)
    print("bit-identical: G, D, G_ema, both optimizer states and the log records match the uninterrupted run")


if __name__ == "__main__":
    main()
