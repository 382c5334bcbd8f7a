#!/usr/bin/env python
"""How fast each ganforge command ends on SIGTERM, at the moments a user or a cluster sends it.

Every command runs in a fresh process on small data made here (a trained tiny run, a folder of
PNGs, stand-in Inception weights); once it is mid-work (its first output file, log record or
progress line is there, or it has run a few seconds), it gets SIGTERM and two times are measured:
to its last stderr line (the command's answer) and to its exit (which adds the interpreter's
shutdown). A command that takes its own time to stop (training finishes its step and writes a
checkpoint) is measured as it is. The table says, per case: the wait it was in, both times, the
exit code, the last stderr line, and what it left behind (processes, files). The machine's load
average is printed with it: on a shared machine the times scale with it.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/signal_latency.py            # every case
    python scripts/signal_latency.py --only sample,train-setup              # some
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())


def write_config(path: Path, **sections: object) -> Path:
    path.write_text(yaml.safe_dump({**TINY, **sections}, sort_keys=False))
    return path


def png_folder(folder: Path, n: int, size: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")).save(folder / f"{i:05d}.png")
    return folder


def ganforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganforge", *args]


def measure(name: str, wait: str, argv: list[str], ready: Callable[[], bool], cwd: Path,
            left: Callable[[], str] = lambda: "", timeout: float = 300.0) -> dict:
    """Start `argv` (in its own process group), wait until `ready()`, send SIGTERM to it alone,
    and time its last stderr line (its answer) and its exit (the interpreter's shutdown after)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), ln.rstrip()) for ln in proc.stderr))
    reader.start()
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    row = {"case": name, "wait": wait, "answer": None, "exit": None, "code": None, "last": "", "left": ""}
    if proc.poll() is None:
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
            row["exit"] = time.monotonic() - sent
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join()
        answered = [t for t, _ in lines if t >= sent]
        row["answer"] = answered[-1] - sent if answered else None
        time.sleep(0.5)
        try:  # every process it started must be gone too
            os.killpg(proc.pid, 0)
            row["left"] = "processes left running"
        except ProcessLookupError:
            pass
    else:
        reader.join()
        row["last"] = "(ended before it was ready) "
    row["code"] = proc.returncode
    row["last"] += lines[-1][1][:100] if lines else ""
    row["left"] = " ".join(x for x in (row["left"], left()) if x)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="Comma-separated case names.")
    args = parser.parse_args()
    only = {c for c in args.only.split(",") if c}
    tmp = Path(tempfile.mkdtemp(prefix="ganforge-signals-"))
    print(f"working in {tmp}", file=sys.stderr)

    run = tmp / "run"
    subprocess.run(ganforge("train", str(write_config(tmp / "tiny.yaml", output={"dir": str(run)})), "-q"),
                   cwd=tmp, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    small = png_folder(tmp / "small", 64, 32)

    def exists(path: Path) -> Callable[[], bool]:
        return lambda: path.exists() and (not path.is_dir() or any(path.iterdir()))

    def lines(path: Path, n: int) -> Callable[[], bool]:
        return lambda: path.is_file() and path.read_text().count("\n") >= n

    cases = {}
    long_run = write_config(tmp / "long.yaml", output={"dir": str(tmp / "long")},
                            train={**TINY["train"], "steps": 100000}, log={"every": 5},
                            checkpoint={"every": 100000, "keep": 2}, samples={"every": 100000, "num": 4})
    cases["train"] = ("a training step (then its checkpoint)", ganforge("train", str(long_run), "-q"),
                      lines(tmp / "long" / "log.jsonl", 2), lambda: "")
    # The set-up before the first step: decoding a large folder into memory (data.in_memory).
    many = tmp / "many"
    setup = write_config(tmp / "setup.yaml", output={"dir": str(tmp / "setup-run")},
                         data={"kind": "image_folder", "path": str(many), "resolution": 16, "in_memory": True})

    started: dict[str, float] = {}

    def after(name: str, seconds: float) -> Callable[[], bool]:
        """Ready `seconds` after the case started (past the imports, inside the wait)."""
        return lambda: time.sleep(0.1) or time.monotonic() - started[name] > seconds

    cases["train-setup"] = ("set-up: decoding the data into memory", ganforge("train", str(setup), "-q"),
                            after("train-setup", 8), lambda: "run folder left" if (tmp / "setup-run").exists() else "")
    two = write_config(tmp / "two.yaml", output={"dir": str(tmp / "two")},
                       train={**TINY["train"], "steps": 100000}, log={"every": 5},
                       checkpoint={"every": 100000, "keep": 2}, samples={"every": 100000, "num": 4})
    cases["train-nproc2"] = ("--nproc 2: the launcher waiting on torchrun and 2 processes",
                             ganforge("train", str(two), "--nproc", "2", "-q"), lines(tmp / "two" / "log.jsonl", 2),
                             lambda: "")
    cases["sample"] = ("drawing and writing batches", ganforge("sample", str(run), "--num", "2000000", "--out",
                                                               str(tmp / "samples"), "--batch-size", "64", "-q"),
                       exists(tmp / "samples"), lambda: "")
    cases["interpolate"] = ("drawing frames", ganforge("interpolate", str(run), "--out", str(tmp / "walk.gif"),
                                                       "--num-frames", "100000", "-q"),
                            after("interpolate", 8),
                            lambda: "walk.gif written" if (tmp / "walk.gif").exists() else "")
    cases["project"] = ("optimisation steps", ganforge("project", str(run), "--target", str(small / "00000.png"),
                                                       "--out", str(tmp / "proj"), "--steps", "1000000", "-q"),
                        after("project", 8), lambda: "")
    weights = tmp / "inception.pth"
    cases["eval-images"] = ("Inception features of a folder (batches of 50)",
                            ganforge("eval-images", str(small), "--reference", str(small), "--inception-weights",
                                     str(weights), "--device", "cpu", "--num-workers", "2", "-q"),
                            after("eval-images", 10), lambda: "")
    cases["dataset"] = ("decoding into a zip", ganforge("dataset", str(many), "--out", str(tmp / "d.zip"), "-r", "16",
                                                        "--workers", "2", "-q"),
                        after("dataset", 6),
                        lambda: "d.zip left" if (tmp / "d.zip").exists() else "")

    selected = [c for c in cases if not only or c in only]
    if {"train-setup", "dataset"} & set(selected):
        png_folder(many, 6000, 64)
    if "eval-images" in selected:
        import torch

        from ganforge.metrics.inception import FIDInception

        torch.manual_seed(0)
        torch.save(FIDInception().net.state_dict(), weights)  # stand-in weights: the cost is the same
    rows = []
    for name in selected:
        wait, argv, ready, left = cases[name]
        started[name] = time.monotonic()
        rows.append(measure(name, wait, argv, ready, tmp, left))
        print(rows[-1], file=sys.stderr)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs, load average {load}; seconds from SIGTERM to the command's last line "
          "(answer) and to its exit")
    print(f"{'case':<14} {'answer':>7} {'exit':>7} {'code':>5}  {'wait':<48} last line / left behind")
    for r in rows:
        answer, done = (f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("answer", "exit"))
        print(f"{r['case']:<14} {answer:>7} {done:>7} {r['code']!s:>5}  {r['wait']:<48} {r['last']}"
              + (f"  [{r['left']}]" if r["left"] else ""))


if __name__ == "__main__":
    main()
