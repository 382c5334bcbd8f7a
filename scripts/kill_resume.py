#!/usr/bin/env python
"""Kill a CPU training run with SIGKILL at random moments and in the middle of its file writes,
resume after each kill, and check that the final weights are bit-identical to a run that was
never interrupted.

Two kinds of kill:
- random: after a random delay, wherever the run is (start-up, a step, a log line, a sample
  grid, a checkpoint);
- write phases: the child's file writes are slowed down (monkeypatched in that child only), and
  it is killed while a checkpoint, index.json or a log line is half-written, between a
  checkpoint's rename and the index update, or between the index update and pruning.

After each kill the run is resumed with `ganforge train --resume` (or started again if no
checkpoint exists yet). At the end G, D, G_ema and both optimizers' states are compared tensor by
tensor with an uninterrupted run of the same config; log.jsonl must hold the same steps as that
run's, each once, and no temporary file may be left.

    python scripts/kill_resume.py --kills 20 --seed 0    # fresh processes, a longer run (minutes)
    python scripts/kill_resume.py --quick                # forked processes, a tiny run (seconds; the tests run this)
    python scripts/kill_resume.py --quick --xflip        # the same with data.xflip: true
"""

from __future__ import annotations

import argparse
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

CONFIG = {
    "data": {"kind": "digits", "resolution": 16},
    "generator": {"kind": "dcgan", "latent_dim": 16, "base_width": 16},
    "discriminator": {"kind": "dcgan", "base_width": 16},
    "regularizers": [{"kind": "r1", "weight": 1.0, "every": 4}],
    "schedule": {"g": {"kind": "cosine", "warmup_steps": 20}, "d": {"kind": "constant"}},
    "train": {"steps": 10000, "batch_size": 32, "seed": 0, "device": "cpu", "ema": {"decay": 0.99}},
    "log": {"every": 5},
    "samples": {"every": 50, "num": 16},
    "checkpoint": {"every": 25, "keep": 3},
}

# Seconds of training: keep 1 checkpoint, so that an index update prunes one (the phase
# "index-written" then lands between the index naming the new file and the old file's deletion).
QUICK_CONFIG = {
    "data": {"kind": "digits", "resolution": 16},
    "generator": {"kind": "dcgan", "latent_dim": 8, "base_width": 8},
    "discriminator": {"kind": "dcgan", "base_width": 8},
    "regularizers": [{"kind": "r1", "weight": 1.0, "every": 3}],
    "schedule": {"g": {"kind": "cosine", "warmup_steps": 4}, "d": {"kind": "constant"}},
    "train": {"steps": 24, "batch_size": 8, "seed": 0, "device": "cpu", "ema": {"decay": 0.9}},
    "log": {"every": 2},
    "samples": {"every": 4, "num": 4},
    "checkpoint": {"every": 4, "keep": 1},
}

WRITE_PHASES = {
    "checkpoint-partial": "half of a checkpoint's temporary file written",
    "checkpoint-renamed": "checkpoint renamed into place, index.json not yet updated",
    "index-partial": "half of index.json's temporary file written",
    "index-written": "index.json replaced, the pruned checkpoint not yet deleted",
    "log-partial": "half a log.jsonl line written",
}
# The first kill (index-written) leaves a checkpoint, so every later child resumes; with the quick
# config the second index-written finds one to prune (keep: 1).
WRITE_PLAN = ["index-written", "checkpoint-partial", "checkpoint-renamed", "index-partial", "log-partial",
              "index-written"]
QUICK_PLAN = [*WRITE_PLAN, "random", "random"]


# --------------------------------------------------------------------------------------------
# The child: a `ganforge` command that stops forever at one point of its file writes
# --------------------------------------------------------------------------------------------


def hold_at(phase: str, marker: Path) -> None:
    """Patch this process (a child about to be killed) so that it creates `marker` and sleeps
    forever at `phase` (one of WRITE_PHASES)."""
    import builtins

    import ganforge.checkpoint as checkpoint
    import ganforge.run as run

    def hold() -> None:
        marker.touch()
        while True:
            time.sleep(60)

    class HalfWriter:
        """A file whose first write lands halfway, then the process stops."""

        def __init__(self, f: Any) -> None:
            self.f = f

        def write(self, data: Any) -> None:
            if isinstance(data, str):  # a text file (log.jsonl): write half of its bytes
                data = data.encode()
                self.f.flush()
                self.f.buffer.write(data[: len(data) // 2])
            else:
                self.f.write(bytes(data)[: len(data) // 2])
            self.f.flush()
            os.fsync(self.f.fileno())
            hold()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.f.close()

    def opener(matches: Any) -> Any:
        def patched_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            f = builtins.open(file, mode, *args, **kwargs)
            return HalfWriter(f) if matches(Path(file).name, mode) else f

        return patched_open

    real_replace = os.replace

    def replace_then_hold(matches: Any) -> Any:
        def patched_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            real_replace(src, dst, *args, **kwargs)
            if matches(Path(dst).name):
                hold()

        return patched_replace

    # atomic_write_bytes opens its temporary file with the `open` of ganforge.checkpoint and
    # renames with os.replace; RunDir.append_log opens log.jsonl with the `open` of ganforge.run.
    if phase == "checkpoint-partial":
        checkpoint.open = opener(lambda name, mode: "step-" in name and ".pt" in name and "w" in mode)  # type: ignore
    elif phase == "index-partial":
        checkpoint.open = opener(lambda name, mode: "index.json" in name and "w" in mode)  # type: ignore
    elif phase == "log-partial":
        run.open = opener(lambda name, mode: name == "log.jsonl" and "a" in mode)  # type: ignore
    elif phase == "checkpoint-renamed":
        os.replace = replace_then_hold(lambda name: name.startswith("step-") and name.endswith(".pt"))
    elif phase == "index-written":
        os.replace = replace_then_hold(lambda name: name == "index.json")
    else:
        raise ValueError(f"unknown phase {phase!r}; use one of {', '.join(WRITE_PHASES)}")


def run_command(argv: list[str], phase: str | None, marker: Path | None, output: Path | None = None) -> None:
    """Run `ganforge ARGV` in this process (a child), stopping at `phase` if given."""
    if output is not None:  # forked children write their messages to a file of their own
        sys.stdout = sys.stderr = open(output, "w", buffering=1)  # noqa: SIM115
    if phase is not None:
        hold_at(phase, marker)
    from ganforge.cli import main

    sys.argv = ["ganforge", *argv]
    main()


class Child:
    """A `ganforge` command in a child process: forked from this one (start-up costs nothing),
    or a fresh interpreter (a kill can then land in the imports too)."""

    def __init__(self, argv: list[str], phase: str | None, marker: Path | None, output: Path, fork: bool) -> None:
        self.output, self.fork = output, fork
        if fork:
            import multiprocessing

            self.proc: Any = multiprocessing.get_context("fork").Process(
                target=run_command, args=(argv, phase, marker, output), daemon=True)
            self.proc.start()
        else:
            hold = ["--child-phase", phase, "--child-marker", str(marker)] if phase else []
            self.proc = subprocess.Popen([sys.executable, __file__, *hold, "--child", "--", *argv],
                                         stdout=output.open("w"), stderr=subprocess.STDOUT)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        if self.fork:
            self.proc.join(timeout)
            return self.proc.exitcode
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.fork:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.join()
        else:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def text(self) -> str:
        return self.output.read_text() if self.output.exists() else ""


# --------------------------------------------------------------------------------------------
# What the parent sees
# --------------------------------------------------------------------------------------------


def index_of(run: Path) -> dict[str, Any] | None:
    path = run / "checkpoints" / "index.json"
    return json.loads(path.read_text()) if path.exists() else None


def latest_step(run: Path) -> int | None:
    index = index_of(run)
    return max((e["step"] for e in index["checkpoints"]), default=None) if index else None


def evidence(phase: str, run: Path) -> str:
    """What the run folder shows of a kill at `phase` ('' if nothing does)."""
    folder = run / "checkpoints"
    index = index_of(run) or {"checkpoints": [], "latest": None}
    indexed = {e["file"] for e in index["checkpoints"]}
    on_disk = sorted(p.name for p in folder.glob("step-*.pt"))
    if phase == "checkpoint-partial":
        return ", ".join(p.name for p in folder.glob(".step-*.pt.tmp-*"))
    if phase == "index-partial":
        return ", ".join(p.name for p in folder.glob(".index.json.tmp-*"))
    if phase == "checkpoint-renamed":
        return ", ".join(f"{name} not in index.json" for name in on_disk if name not in indexed)
    if phase == "index-written":
        if not on_disk or index["latest"] != on_disk[-1]:
            return ""
        return ", ".join([f"index.json names {on_disk[-1]}"] +
                         [f"{name} not yet deleted" for name in on_disk if name not in indexed])
    if phase == "log-partial":
        log = run / "log.jsonl"
        text = log.read_text() if log.exists() else ""
        return f"log.jsonl ends in a partial line ({text.splitlines()[-1][:24]}...)" if text and \
            not text.endswith("\n") else ""
    return ""


def damaged_checkpoints(run: Path) -> list[str]:
    """Checkpoint files in the run folder that do not load: a crash must never leave one."""
    from ganforge.checkpoint import load_checkpoint
    from ganforge.errors import CheckpointError

    damaged = []
    for path in sorted((run / "checkpoints").glob("step-*.pt")):
        try:
            load_checkpoint(path)
        except CheckpointError:
            damaged.append(path.name)
    return damaged


def final_state(run: Path) -> Any:
    from ganforge.checkpoint import load_checkpoint
    from ganforge.run import find_checkpoint

    return load_checkpoint(*find_checkpoint(run))


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names of the tensors that differ between two training states."""
    import torch

    differ = []
    for net in ("G", "D", "G_ema"):
        differ += [f"{net}.{k}" for k in a[net] if not torch.equal(a[net][k], b[net][k])]
    for opt in ("opt_g", "opt_d"):
        for pid, state in a[opt]["state"].items():
            differ += [f"{opt}.{pid}.{k}" for k, v in state.items() if not torch.equal(v, b[opt]["state"][pid][k])]
    return differ


def log_steps(run: Path) -> list[int]:
    """Steps of log.jsonl's records (every line must be whole JSON)."""
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


@dataclass
class Kill:
    what: str  # "random" or a write phase
    delay: float | None  # seconds after start (random kills)
    before: int | None  # latest checkpoint step when the child started
    after: int | None
    evidence: str = ""
    damaged: list[str] = field(default_factory=list)  # checkpoint files that do not load after the kill


@dataclass
class Outcome:
    kills: list[Kill] = field(default_factory=list)
    final_step: int = 0
    reference_step: int = 0
    differ: list[str] = field(default_factory=list)
    log_steps: list[int] = field(default_factory=list)
    reference_log_steps: list[int] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # temporary files after the final resume
    orphans: list[str] = field(default_factory=list)  # checkpoint files the final index does not name
    tracebacks: int = 0
    finished_early: bool = False

    @property
    def ok(self) -> bool:
        return not self.differ and self.final_step == self.reference_step and not self.leftovers and \
            not self.orphans and \
            self.log_steps == self.reference_log_steps and self.tracebacks == 0 and \
            not any(k.damaged for k in self.kills)


# --------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------


def train_here(config: Path) -> None:
    """Train a config to the end in this process, as `ganforge train CONFIG` does."""
    from ganforge.config import load_config
    from ganforge.run import RunDir
    from ganforge.training.loop import train

    cfg, cfg_dict = load_config(config, [])
    run = RunDir(cfg.output.dir)
    run.create()
    try:
        train(cfg, cfg_dict, run, progress=False)
    finally:
        run.release_lock()


def kill_and_resume(cfg: dict[str, Any], plan: list[str], tmp: Path, fork: bool, seed: int = 0,
                    delays: tuple[float, float] = (0.5, 7.0), say: Any = print) -> Outcome:
    """Train `cfg` once without interruption, then again with a SIGKILL at each point of `plan`
    ("random" or a write phase) and a resume after each; compare the two."""
    rng = random.Random(seed)
    config = tmp / "kill.yaml"
    config.write_text(yaml.safe_dump({**cfg, "output": {"dir": str(tmp / "killed")}}))
    reference = tmp / "reference.yaml"
    reference.write_text(yaml.safe_dump({**cfg, "output": {"dir": str(tmp / "reference")}}))
    outcome = Outcome()
    children = 0

    def start(argv: list[str], phase: str | None = None) -> tuple[Child, Path]:
        nonlocal children
        children += 1
        marker = tmp / f"held-{children}"
        return Child(argv, phase, marker, tmp / f"child-{children}.txt", fork), marker

    say(f"reference run ({cfg['train']['steps']} steps) ...")
    if fork:
        train_here(reference)  # which also imports everything the forked children need
    else:
        child, _ = start(["train", str(reference), "-q"])
        if child.wait(600) != 0:
            raise RuntimeError(f"the reference run failed: {child.text().strip()}")

    run = tmp / "killed"
    say(f"{'kill':>4} {'at':<20} {'checkpoint step before':>23} {'after':>6}  evidence")
    for what in plan:
        before = latest_step(run)
        argv = ["train", "--resume", str(run), "-q"] if before is not None else \
            ["train", str(config), "-q", "--overwrite"]
        delay = None
        if what == "random":
            delay = rng.uniform(*delays)
            child, _ = start(argv)
            code = child.wait(delay)
        else:
            child, marker = start(argv, what)
            deadline = time.monotonic() + 300
            code = None
            while not marker.exists() and code is None and time.monotonic() < deadline:
                code = child.wait(0.02)
            if code is None and not marker.exists():
                child.kill()
                raise RuntimeError(f"the child never reached {what} in 300 s")
        outcome.tracebacks += "Traceback" in child.text()
        if code is not None:
            if code == 0 and what == "random":
                outcome.finished_early = True
                say("the run finished before this kill; raise the steps or lower the delays for more kills")
                break
            raise RuntimeError(f"training exited with {code} before the {what} kill: {child.text().strip()}")
        child.kill()
        kill = Kill(what, delay, before, latest_step(run), evidence(what, run) if what != "random" else "",
                    damaged_checkpoints(run))
        outcome.kills.append(kill)
        at = f"{delay:.2f} s" if delay is not None else what
        say(f"{len(outcome.kills):>4} {at:<20} {before if before is not None else '-':>23} "
            f"{kill.after if kill.after is not None else '-':>6}  {kill.evidence}"
            + (f"; DAMAGED: {', '.join(kill.damaged)}" if kill.damaged else ""))

    say("final resume to completion ...")
    argv = ["train", "--resume", str(run), "-q"] if latest_step(run) is not None else ["train", str(config), "-q",
                                                                                        "--overwrite"]
    child, _ = start(argv)
    code = child.wait(600)
    outcome.tracebacks += "Traceback" in child.text()
    if code != 0:
        raise RuntimeError(f"the final resume failed ({code}): {child.text().strip()}")
    a, b = final_state(run), final_state(tmp / "reference")
    outcome.final_step, outcome.reference_step = a.step, b.step
    outcome.differ = compare(a.state, b.state)
    outcome.log_steps, outcome.reference_log_steps = log_steps(run), log_steps(tmp / "reference")
    outcome.leftovers = sorted(str(p.relative_to(run)) for p in run.rglob(".*.tmp-*"))
    outcome.orphans = orphans(run)
    return outcome


def orphans(run: Path) -> list[str]:
    """step-N.pt files in the run's checkpoint folder that its index does not name: what a kill
    between an index update and pruning leaves, unless the next pruning finds it."""
    named = {e["file"] for e in (index_of(run) or {"checkpoints": []})["checkpoints"]}
    return sorted(p.name for p in (run / "checkpoints").glob("step-*.pt") if p.name not in named)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="random kills (besides one per write phase)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--max-delay", type=float, default=4.0, help="longest wait after start-up before a kill (s)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run in forked children: each write phase once and two random kills")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the runs (default: a new temp folder)")
    parser.add_argument("--xflip", action="store_true", help="data.xflip: true (each digit also mirrored, 2N an epoch)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-marker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # a fresh-interpreter child: `ganforge COMMAND`, held at a write phase if asked
        run_command(args.command, args.child_phase, args.child_marker)
        return

    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="ganforge-kill-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if args.quick:
        import torch

        torch.set_num_threads(1)  # forking after a multi-threaded OpenMP region is not safe
        cfg, plan, delays = QUICK_CONFIG, QUICK_PLAN, (0.05, 1.0)
    else:
        cfg, plan = CONFIG, [*WRITE_PLAN, *["random"] * args.kills]
        delays = (0.5, 3.0 + args.max_delay)
    if args.steps is not None:
        cfg = {**cfg, "train": {**cfg["train"], "steps": args.steps}}
    if args.xflip:
        cfg = {**cfg, "data": {**cfg["data"], "xflip": True}}
    outcome = kill_and_resume(cfg, plan, tmp, fork=args.quick, seed=args.seed, delays=delays)
    missing = [p for p in WRITE_PHASES if not any(k.what == p and k.evidence for k in outcome.kills)]
    print(f"SIGKILLs: {len(outcome.kills)}; final step {outcome.final_step} (reference {outcome.reference_step}); "
          f"tracebacks shown: {outcome.tracebacks}")
    if missing:
        print(f"write phases not caught in the act: {', '.join(missing)}")
    damaged = sorted({name for k in outcome.kills for name in k.damaged})
    if damaged:
        print(f"half-written checkpoints left by a kill: {', '.join(damaged)}")
    if outcome.leftovers:
        print(f"temporary files left behind: {', '.join(outcome.leftovers)}")
    if outcome.orphans:
        print(f"checkpoints left behind that the index does not name: {', '.join(outcome.orphans)}")
    if outcome.log_steps != outcome.reference_log_steps:
        print(f"log.jsonl steps {outcome.log_steps} differ from the uninterrupted run's {outcome.reference_log_steps}")
    if outcome.differ:
        print(f"NOT identical: {len(outcome.differ)} tensors differ, e.g. {outcome.differ[:3]}")
    if not outcome.ok or missing:
        sys.exit(1)
    print("bit-identical: G, D, G_ema and both optimizer states match the uninterrupted run; no orphaned checkpoint")


if __name__ == "__main__":
    main()
