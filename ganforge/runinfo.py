"""Reading run folders back: logs, checkpoints, summaries (for `info`, `runs` and `report`).

Every function here opens its run folder as a read-only RunDir: reading a run changes nothing in it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge.checkpoint import INDEX_NAME, CheckpointIndex, IndexEntry
from ganforge.errors import CheckpointError
from ganforge.logrecord import EVAL, LOSSES, STEP, is_eval_record, is_training_record
from ganforge.run import RunDir, find_checkpoint


def read_log(run: Path) -> list[dict[str, Any]]:
    """Records of the run's log (a line cut short by a crash is skipped)."""
    path = RunDir(run, read_only=True).log_file
    records = []
    if path.is_file():
        # Undecodable bytes (a damaged disk block) spoil their line only: it is skipped like a cut-short one.
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


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
    from ganforge.build import build_networks
    from ganforge.checkpoint import load_checkpoint
    from ganforge.config import parse_config
    from ganforge.data import DataInfo
    from ganforge.models import count_parameters
    from ganforge.sample import load_generator

    file, _ = find_checkpoint(path)
    loaded = load_generator(path, device="cpu")
    ckpt = load_checkpoint(file)
    cfg = parse_config(ckpt.config)
    info = DataInfo.from_dict(ckpt.data_info)
    _, D, _ = build_networks(cfg, info)
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
        "data": {"kind": cfg.data.kind, "shape": list(info.shape), "num_classes": info.num_classes},
        "generator": {"kind": cfg.generator.kind, "parameters": count_parameters(loaded.G),
                      "latent_dim": loaded.G.latent_dim, "conditional_classes": loaded.num_classes},
        "discriminator": {"kind": cfg.discriminator.kind, "parameters": count_parameters(D)},
        "loss": cfg.loss.kind,
        "regularizers": [r.kind for r in cfg.regularizers],
        "batch_size": cfg.train.batch_size,
        "latest_metrics": (evals[-1][EVAL] if evals else None),
        "ganforge_version": ckpt.ganforge_version,
        "torch_version": ckpt.torch_version,
        "files": files,
    }
