"""Run records: the environment a session runs in (written to RUN/environment.json), and reading
run folders back: logs, checkpoints, summaries (for `info`, `runs`, `report` and model cards).

Every reading function here opens its run folder as a read-only RunDir: reading a run changes nothing in it.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge.checkpoint import INDEX_NAME, CheckpointIndex, IndexEntry
from ganforge.errors import CheckpointError
from ganforge.logrecord import EVAL, LOSSES, STEP, is_eval_record, is_training_record
from ganforge.run import RunDir, find_checkpoint, read_environment, read_log  # noqa: F401  (for the readers of runs)

# --------------------------------------------------------------------------------------------
# The environment of a session
# --------------------------------------------------------------------------------------------


def environment(config_file: Path | None = None, step: int = 0, argv: list[str] | None = None) -> dict[str, Any]:
    """Where and how this process runs a run from `step`: the command line, ganforge's, torch's,
    CUDA's and cuDNN's versions, the GPUs, the CPU model, the host, and the git commit of the
    config file's folder when it lies in a repository (None where a value cannot be read)."""
    import torch

    from ganforge import __version__

    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    cudnn = torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None
    return {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "step": step,
        "command": shlex.join(argv if argv is not None else _command_line()),
        "cwd": os.getcwd(),
        "ganforge": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "cuda": torch.version.cuda,  # the CUDA torch was built with (None for CPU builds)
        "cudnn": cudnn,
        "gpus": gpus,
        "cpu": cpu_model(),
        "host": socket.gethostname(),
        "os": platform.platform(),
        "git": git_commit(config_file.parent) if config_file is not None else None,
    }


def _command_line() -> list[str]:
    """This process's command line as typed: `ganforge ...` or `python -m ganforge ...`."""
    program = Path(sys.argv[0]).name
    head = ["python", "-m", "ganforge"] if program == "__main__.py" else [program]
    return [*head, *sys.argv[1:]]


def cpu_model() -> str | None:
    """The CPU's model name (Linux's /proc/cpuinfo, macOS's sysctl, platform.processor elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Hardware", "cpu model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or None


def git_commit(folder: Path) -> dict[str, Any] | None:
    """{commit, dirty} of the git repository `folder` lies in; None outside one or without git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "root": git("rev-parse", "--show-toplevel")}


# --------------------------------------------------------------------------------------------
# Reading runs back
# --------------------------------------------------------------------------------------------


def is_run(path: Path) -> bool:
    """Whether a folder holds a ganforge run: checkpoint files, a checkpoint index that reads as
    ganforge's, or the config ganforge writes (with a data and a generator kind). Another tool's
    folder with a config.yaml is not one."""
    import yaml

    run = RunDir(path, read_only=True)
    if run.checkpoint_files():
        return True
    try:
        if run.index_file.is_file() and CheckpointIndex(run.checkpoints).entries:
            return True
    except CheckpointError:
        pass  # damaged, or another tool's index.json: the config decides
    if not run.config_file.is_file():
        return False
    try:
        cfg = yaml.safe_load(run.config_file.read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError, RecursionError):
        return False
    return isinstance(cfg, dict) and all(isinstance(cfg.get(k), dict) and "kind" in cfg[k]
                                         for k in ("data", "generator"))


@dataclass
class RunSummary:
    """One line of `ganforge runs`."""

    name: str
    path: str
    data: str = "?"
    generator: str = "?"
    step: int = 0
    steps: int | None = None
    losses: dict[str, float] = field(default_factory=dict)
    best: IndexEntry | None = None  # best.pt's entry in the checkpoint index
    last_change: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "best": None if self.best is None else self.best.to_dict()}


def summarize(run: Path) -> RunSummary:
    """Name, config, step, last losses, best metric and last change of a run folder."""
    import yaml

    folder = RunDir(run, read_only=True)
    summary = RunSummary(run.name, str(run))
    config = folder.config_file
    if config.is_file():
        try:
            cfg = yaml.safe_load(config.read_text(encoding="utf-8", errors="replace")) or {}
            summary.data = str(cfg.get("data", {}).get("kind", "?"))
            summary.generator = str(cfg.get("generator", {}).get("kind", "?"))
            summary.steps = cfg.get("train", {}).get("steps")
        except (OSError, yaml.YAMLError, ValueError, TypeError, AttributeError, RecursionError):
            pass  # a damaged config.yaml: the summary goes on without it
    records = read_log(run)
    training = [r for r in records if is_training_record(r)]
    if training:
        last = training[-1]
        summary.step = int(last[STEP])
        summary.losses = {k: last[k] for k in LOSSES if k in last}
    try:
        index = CheckpointIndex(folder.checkpoints)
        if index.entries:
            summary.step = max(summary.step, max(e.step for e in index.entries))
        summary.best = index.best
    except Exception:  # a damaged index: the summary goes on without it
        pass
    times = [p.stat().st_mtime for p in run.rglob("*") if p.is_file()]
    summary.last_change = max(times) if times else run.stat().st_mtime
    return summary


def find_runs(folder: Path) -> list[Path]:
    """Run folders at or below `folder` (two levels deep), newest change first."""
    folder = Path(folder)
    if is_run(folder):
        return [folder]
    runs = [p for p in folder.glob("*") if p.is_dir() and is_run(p)]
    runs += [p for p in folder.glob("*/*") if p.is_dir() and is_run(p) and p.parent not in runs]
    return runs


def ago(timestamp: float) -> str:
    """'3 min ago' style."""
    seconds = max(0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def checkpoint_details(path: Path) -> dict[str, Any]:
    """Everything `ganforge info` shows about a checkpoint or run folder."""
    from ganforge.build import rebuild_networks
    from ganforge.checkpoint import load_checkpoint
    from ganforge.config import parse_config
    from ganforge.models import conditioning_classes, count_parameters

    file, sha = find_checkpoint(path)
    ckpt = load_checkpoint(file, sha)
    nets = rebuild_networks(ckpt, file, ("G_ema", "D"), device="cpu")  # D: None where the file holds none
    cfg, info, G = parse_config(ckpt.config), nets.info, nets.G_ema
    evals = [r for r in read_log(RunDir.of_checkpoint(file).path) if is_eval_record(r)]
    files = []
    if (file.parent / INDEX_NAME).is_file():
        index = CheckpointIndex(file.parent)
        files = [{"file": e.file, "step": e.step, "bytes": e.bytes} for e in index.entries]
        if index.best:
            best = index.best
            files.append({"file": best.file, "step": best.step, "bytes": best.bytes,
                          "best": f"{best.figure}={best.value:.6g}"})
    else:
        files = [{"file": file.name, "step": ckpt.step, "bytes": file.stat().st_size}]
    return {
        "checkpoint": str(file),
        "step": ckpt.step,
        "steps": cfg.train.steps,
        # items: the epoch's length, 2N with data.xflip (None in checkpoints from before it was recorded)
        "data": {"kind": cfg.data.kind, "shape": list(info.shape), "num_classes": info.num_classes,
                 "items": ckpt.data.get("items"), "xflip": bool(cfg.data.params.get("xflip", False))},
        "generator": {"kind": cfg.generator.kind, "parameters": count_parameters(G),
                      "latent_dim": G.latent_dim, "conditional_classes": conditioning_classes(G)},
        # parameters None: a file imported without its discriminator
        "discriminator": {"kind": cfg.discriminator.kind,
                          "parameters": count_parameters(nets.D) if nets.D is not None else None},
        "loss": cfg.loss.kind,
        "regularizers": [r.kind for r in cfg.regularizers],
        "batch_size": cfg.train.batch_size,
        "latest_metrics": (evals[-1][EVAL] if evals else None),
        "ganforge_version": ckpt.ganforge_version,
        "torch_version": ckpt.torch_version,
        "files": files,
        # The sessions that trained up to this checkpoint (resumes included).
        "environment": [s for s in read_environment(RunDir.of_checkpoint(file).path) if s.get("step", 0) <= ckpt.step],
    }
