#!/usr/bin/env python
"""The GPU check in one command: every shipped config trained briefly under each numerics and
speed option, plus an exact-resume check, as one table.

Each cell trains one config (the CPU-sized `*_digits` recipes, quickstart and gaussian_grid as
shipped; the full-size configs whose data must be downloaded on digits at the same resolution,
so nothing is fetched) for `--steps` steps through ganforge's own `train()`, with the option's
`--set` overrides, and reports: whether the losses stayed finite, images/s over the second half
of the run (after compilation and autotuning), peak GPU memory (allocated, reset per cell) and
wall seconds. A cell that raises shows the exception's first line; a config error shows as
`refused: ...`. Cells run in order until `--budget-minutes` is spent; the rest are listed as
skipped. The table is printed row by row and rewritten to `--out` (JSON and markdown) after
every cell, so a killed run still leaves what it measured.

    python scripts/gpu_check.py --out gpu-check                   # on a GPU: everything, ~8 minutes
    python scripts/gpu_check.py --device cpu --steps 3 --configs quickstart,gaussian_grid --options fp32,bf16

No network is needed: data is scikit-learn's digits or generated, and nothing is evaluated
with Inception weights.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ganforge.logrecord import IMG_PER_S, LOSSES, is_training_record

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Shipped configs, cheapest first; the full-size ones train on digits (their data is downloaded).
DEFAULT_CONFIGS = ("quickstart", "gaussian_grid", "wgan_gp_digits", "sngan_digits", "biggan_digits",
                   "stylegan2_digits", "cifar10", "wgan_gp_cifar10", "sngan_cifar10", "biggan_cifar10",
                   "stylegan2_cifar10")
DOWNLOADED = ("mnist", "fashion_mnist", "cifar10")

# option -> `--set` overrides; compiling options last (slow to start, so the budget cuts them first).
OPTIONS: dict[str, list[str]] = {
    "fp32": ["train.precision=fp32"],
    "bf16": ["train.precision=bf16"],
    "fp16": ["train.precision=fp16"],
    "channels_last": ["train.channels_last=true"],
    "compile": ["train.compile=true"],
    "reduce-overhead": ["train.compile=reduce-overhead"],
}
COMPILING = ("compile", "reduce-overhead")


@dataclass
class Cell:
    """One config trained under one option, and what came of it."""

    config: str
    option: str
    status: str = "pending"  # ok | refused | non-finite | error | skipped
    finite: bool | None = None
    img_per_s: float | None = None
    peak_mib: float | None = None
    seconds: float | None = None
    note: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class ResumeCheck:
    """Train N steps; train N/2 and resume to N; compare the final weights bit for bit. Each run
    is its own `ganforge train` process: on an H100 (torch 2.11), two quickstart runs one after the
    other in one process differed while two fresh 10-step processes agreed."""

    config: str
    steps: int
    identical: bool | None = None  # resumed run == uninterrupted run, G, D and G_ema
    repeat_identical: bool | None = None  # two uninterrupted runs agree (is the device deterministic?)
    differing: list[str] = field(default_factory=list)
    max_abs_diff: float | None = None
    seconds: float | None = None
    note: str = ""


class CellTimeout(Exception):
    """A cell ran past its time limit."""


# --------------------------------------------------------------------------------------------
# Configs and overrides
# --------------------------------------------------------------------------------------------


def config_path(name: str) -> Path:
    """A shipped config by name (`quickstart`) or any YAML path."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else CONFIGS / f"{name}.yaml"


def prepared_config(name: str, folder: Path) -> tuple[str, Path]:
    """(label, path) of the config a cell trains: the shipped file, or, for a data set that
    must be downloaded, a file inheriting from it with digits at the same resolution (a
    changed `kind` replaces the whole data section, as the *_digits configs do)."""
    from ganforge.config import load_config

    path = config_path(name).resolve()
    cfg, _ = load_config(path)
    if cfg.data.kind not in DOWNLOADED:
        return path.stem, path
    resolution = int(cfg.data.params.get("resolution", 32))
    label = f"{path.stem}@digits{resolution}"
    derived = folder / f"{label}.yaml"
    derived.write_text(yaml.safe_dump({"base": str(path), "data": {"kind": "digits", "resolution": resolution}}))
    return label, derived


def common_overrides(steps: int, device: str, out: Path) -> list[str]:
    """What every cell sets: budget, device, where it writes, and quiet maintenance (losses are
    logged twice, so the last record times the second half; one sample grid and one checkpoint,
    at the end; no evaluation)."""
    return [f"train.steps={steps}", f"train.device={device}", f"output.dir={out}", f"log.every={max(1, steps // 2)}",
            "log.tensorboard=false", "samples.every=1000000000", "checkpoint.every=1000000000", "eval.every=0"]


def parse_option(text: str) -> tuple[str, list[str]]:
    """`NAME:KEY=VALUE;KEY=VALUE` -> (NAME, overrides)."""
    name, sep, rest = text.partition(":")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"--option {text!r}: expected NAME:KEY=VALUE[;KEY=VALUE...]")
    return name, [s for s in rest.split(";") if s]


# --------------------------------------------------------------------------------------------
# Running one training in-process, as `ganforge train` does
# --------------------------------------------------------------------------------------------


def train_run(path: Path, overrides: list[str]) -> Path:
    """Train the config at `path` with `overrides` in this process; returns the run folder."""
    from ganforge.build import validate
    from ganforge.config import dump_yaml, load_config
    from ganforge.run import RunDir
    from ganforge.training.loop import train

    cfg, cfg_dict = load_config(path, overrides)
    validate(cfg)
    run = RunDir(cfg.output.dir)
    run.create()
    try:
        run.write_config(dump_yaml(cfg_dict))
        train(cfg, cfg_dict, run, progress=False)
    finally:
        run.release_lock()
    return run.path


def log_records(run: Path) -> list[dict[str, Any]]:
    """The training records (losses, speed) of a run's log.jsonl."""
    from ganforge.runinfo import read_log

    return [r for r in read_log(run) if is_training_record(r)]


def first_line(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300]


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CellTimeout in the main thread after `seconds` (no limit where SIGALRM is missing)."""
    if not hasattr(signal, "SIGALRM") or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CellTimeout(f"timed out after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def on_cuda(device: str) -> bool:
    """Whether `device` names a CUDA device."""
    return device.startswith("cuda")


def clean_up(device: str) -> None:
    """Free what the last cell left: compiled graphs, cached blocks."""
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    gc.collect()
    if on_cuda(device) and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def device_usable(device: str) -> bool:
    """False when an earlier failure left the CUDA context unusable (a device-side assert)."""
    try:
        x = torch.ones(1, device=device)
        return bool((x + 1).item() == 2)
    except Exception:  # noqa: BLE001 - any failure means the device is gone for this process
        return False


def run_cell(cell: Cell, path: Path, overrides: list[str], device: str, timeout: float) -> None:
    """Train one cell and fill in its result; never raises (but KeyboardInterrupt)."""
    from ganforge.errors import ConfigError, GanforgeError

    clean_up(device)
    if on_cuda(device):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run: Path | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            with time_limit(timeout):
                run = train_run(path, overrides)
        except ConfigError as e:
            cell.status, cell.note = "refused", "refused: " + " ".join(str(e).split())[:300]
        except GanforgeError as e:
            nonfinite = "non-finite" in str(e)
            cell.status = "non-finite" if nonfinite else "error"
            cell.finite = False if nonfinite else None
            cell.note = " ".join(str(e).split())[:300]
        except Exception as e:  # noqa: BLE001 - a failing cell is a result, not the end of the check
            cell.status, cell.note = "error", first_line(e)
    cell.warnings = list(dict.fromkeys(" ".join(str(w.message).split())[:200] for w in caught))[:5]
    if on_cuda(device) and device_usable(device):
        cell.peak_mib = torch.cuda.max_memory_allocated() / 2**20
    cell.seconds = time.perf_counter() - start
    if run is not None:
        records = log_records(run)
        cell.finite = all(math.isfinite(r[k]) for r in records for k in LOSSES)
        cell.status = "ok" if cell.finite else "non-finite"
        cell.img_per_s = records[-1][IMG_PER_S] if records else None


# --------------------------------------------------------------------------------------------
# Exact resume on the device
# --------------------------------------------------------------------------------------------


def final_state(run: Path) -> dict[str, Any]:
    """The training state of a run's latest checkpoint."""
    from ganforge.checkpoint import load_checkpoint
    from ganforge.run import find_checkpoint

    return load_checkpoint(*find_checkpoint(run)).state


def compare_weights(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], float]:
    """Names of the G, D and G_ema tensors that differ, and the largest absolute difference."""
    differing, worst = [], 0.0
    for net in ("G", "D", "G_ema"):
        for key, x in a[net].items():
            y = b[net][key]
            if not torch.equal(x, y):
                differing.append(f"{net}.{key}")
                if x.is_floating_point():
                    worst = max(worst, (x.double() - y.double()).abs().max().item())
    return differing, worst


def cli_run(args: list[str], overrides: list[str], timeout: float) -> None:
    """`ganforge ARGS --set ...` in a fresh process, as a user runs it; raises with its last line."""
    cmd = [sys.executable, "-m", "ganforge", *args, "--quiet"]
    for o in overrides:
        cmd += ["--set", o]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise RuntimeError(f"ganforge {args[0]} exited {done.returncode}: {lines[-1][:250]}")


def run_resume_check(check: ResumeCheck, path: Path, base: list[str], folder: Path, device: str,
                     timeout: float) -> None:
    """Uninterrupted N steps twice (does the device repeat itself?), then N/2 steps resumed to N;
    each run in its own process, as `ganforge train` and `ganforge train --resume` run."""
    n, half = check.steps, max(1, check.steps // 2)
    start = time.perf_counter()
    try:
        full, again, part = folder / "full", folder / "again", folder / "part"
        for out, steps in ((full, n), (again, n), (part, half)):
            cli_run(["train", str(path)], [*base, f"output.dir={out}", f"train.steps={steps}"], timeout / 4)
        cli_run(["train", "--resume", str(part)], [f"train.steps={n}"], timeout / 4)
        reference = final_state(full)
        check.repeat_identical = not compare_weights(reference, final_state(again))[0]
        check.differing, worst = compare_weights(reference, final_state(part))
        check.identical = not check.differing
        check.max_abs_diff = worst
        check.differing = check.differing[:5]
    except Exception as e:  # noqa: BLE001 - reported in the table
        check.note = first_line(e)
    check.seconds = time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 0) -> str:
    """A table value: - for None, yes/no for booleans, numbers with thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


COLUMNS = ("config", "option", "finite", "img/s", "peak MiB", "s", "note")


def cell_row(c: Cell) -> list[str]:
    """A cell as the table's columns."""
    return [c.config, c.option, fmt(c.finite), fmt(c.img_per_s), fmt(c.peak_mib), fmt(c.seconds, 1), c.note]


def resume_line(r: ResumeCheck, device: str) -> str:
    """The resume check as one line."""
    if r.identical is None:
        return f"resume {r.config} ({r.steps} steps, {device}): failed: {r.note or 'not run'}"
    verdict = "bit-identical" if r.identical else (f"DIFFERS ({len(r.differing)}+ tensors, e.g. "
                                                   f"{', '.join(r.differing[:3])}; max |diff| {r.max_abs_diff:.3g})")
    repeat = "yes" if r.repeat_identical else "no (the device itself does not repeat: compare with care)"
    return (f"resume {r.config} ({r.steps // 2} + {r.steps - r.steps // 2} steps vs {r.steps}, {device}): {verdict}; "
            f"two uninterrupted runs identical: {repeat}; {fmt(r.seconds, 1)} s")


def markdown(header: list[str], cells: list[Cell], resumes: list[ResumeCheck], device: str) -> str:
    """The whole report as markdown."""
    lines = ["# ganforge GPU check", "", *[f"- {h}" for h in header], ""]
    lines += [f"- {resume_line(r, device)}" for r in resumes]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(v.replace("|", "/") for v in cell_row(c)) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, header: list[str], cells: list[Cell], resumes: list[ResumeCheck], device: str) -> None:
    """Write gpu_check.json and gpu_check.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(
        {"header": header, "resume": [asdict(r) for r in resumes], "cells": [asdict(c) for c in cells]}, indent=1))
    (out / "gpu_check.md").write_text(markdown(header, cells, resumes, device))


def environment(device: str) -> list[str]:
    """Versions and the device, for the top of the report."""
    import ganforge

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    lines = [f"ganforge {ganforge.__version__} ({commit}), torch {torch.__version__}, python {sys.version.split()[0]}"]
    if on_cuda(device) and torch.cuda.is_available():
        dev = torch.device(device)
        props = torch.cuda.get_device_properties(dev)
        lines.append(f"{torch.cuda.get_device_name(dev)}, {props.total_memory / 2**30:.0f} GiB, capability "
                     f"{props.major}.{props.minor}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    else:
        lines.append(f"{device} ({torch.get_num_threads()} threads)")
    return lines


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--steps", type=int, default=200, help="steps per cell (default: 200)")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help="comma-separated shipped config names or YAML paths")
    parser.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated, of: {', '.join(OPTIONS)}")
    parser.add_argument("--option", action="append", default=[], type=parse_option, metavar="NAME:KEY=V[;KEY=V]",
                        help="an extra option: its name and --set overrides (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every cell, e.g. train.batch_size=16 (repeatable)")
    parser.add_argument("--resume-configs", default="quickstart,stylegan2_digits",
                        help="configs for the exact-resume check (empty: none)")
    parser.add_argument("--resume-steps", type=int, default=None, help="steps of the resume check (default: --steps)")
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="skip the cells left after this long")
    parser.add_argument("--cell-timeout", type=float, default=120.0, help="seconds before one cell is abandoned")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="folder for gpu_check.json and .md")
    args = parser.parse_args(argv)
    unknown = [o for o in args.options.split(",") if o and o not in OPTIONS]
    if unknown:
        parser.error(f"--options: unknown {', '.join(unknown)}; valid: {', '.join(OPTIONS)}")
    return args


def predicted_seconds(option: str, baseline: float | None) -> float:
    """A cell's expected time from its config's first cell: compiling cells take several times longer."""
    if baseline is None:
        return 0.0
    return baseline * (4.0 if option in COMPILING else 1.2)


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns the exit code (0 when every cell that ran trained with finite losses)."""
    from ganforge.errors import ConfigError

    args = parse_args(argv)
    device = args.device
    if on_cuda(device) and not torch.cuda.is_available():
        print("error: no CUDA device here; use --device cpu to check the script's logic", file=sys.stderr)
        return 2
    options = {o: OPTIONS[o] for o in args.options.split(",") if o}
    options.update(dict(args.option))
    started = time.perf_counter()
    budget = args.budget_minutes * 60
    header = [*environment(device), f"{args.steps} steps per cell, budget {args.budget_minutes:g} min"]
    for line in header:
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="ganforge-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        resumes: list[ResumeCheck] = []
        cells: list[Cell] = []
        prepared: dict[str, tuple[str, Path]] = {}
        for name in [c for c in args.configs.split(",") if c]:
            try:
                prepared[name] = prepared_config(name, tmp)
            except Exception as e:  # noqa: BLE001 - an unreadable config is one row
                prepared[name] = (name, config_path(name))
                refused = isinstance(e, ConfigError)
                cells.append(Cell(name, "*", status="refused" if refused else "error",
                                  note=("refused: " + " ".join(str(e).split())) if refused else first_line(e)))
        runnable = [n for n in prepared if not any(c.config == n for c in cells)]
        cells += [Cell(prepared[n][0], o) for o in options for n in runnable]  # option-major: compile cells last

        # (1) Exact resume: cheap, and the most important answer, so first.
        resume_steps = args.resume_steps or args.steps
        for name in [c for c in args.resume_configs.split(",") if c]:
            check = ResumeCheck(name, max(2, resume_steps))
            try:
                _, path = prepared.get(name) or prepared_config(name, tmp)
                base = [*common_overrides(check.steps, device, tmp / "unused"), *args.overrides]
                run_resume_check(check, path, base, tmp / f"resume-{name}", device, args.cell_timeout * 3)
            except Exception as e:  # noqa: BLE001
                check.note = first_line(e)
            resumes.append(check)
            print(resume_line(check, device), flush=True)
            clean_up(device)

        # (2) The table, one cell at a time within the budget.
        widths = [max([len(c.config) for c in cells] + [6]), max([len(o) for o in options] + [6]), 6, 9, 9, 6]
        print("\n" + "  ".join(f"{c:<{w}}" for c, w in zip(COLUMNS, widths)) + "  note", flush=True)
        baseline: dict[str, float] = {}
        broken = ""
        try:
            for i, cell in enumerate(cells):
                if cell.status != "pending":
                    continue
                elapsed = time.perf_counter() - started
                path = next(p for label, p in prepared.values() if label == cell.config)
                if broken:
                    cell.status, cell.note = "skipped", broken
                elif elapsed + predicted_seconds(cell.option, baseline.get(cell.config)) > budget:
                    cell.status, cell.note = "skipped", "skipped: over the time budget"
                else:
                    overrides = [*common_overrides(args.steps, device, tmp / "cells" / f"{i:03d}"), *args.overrides,
                                 *options[cell.option]]
                    limit = min(args.cell_timeout, max(30.0, budget - elapsed + 30))  # at most 30 s past the budget
                    run_cell(cell, path, overrides, device, limit)
                    if cell.seconds is not None and cell.status == "ok":
                        baseline.setdefault(cell.config, cell.seconds)
                    if on_cuda(device) and not device_usable(device):
                        broken = f"skipped: the CUDA context broke in {cell.config}/{cell.option}"
                print("  ".join(f"{v:<{w}}" for v, w in zip(cell_row(cell), widths)) + "  " + cell.note, flush=True)
                write_outputs(args.out, header, cells, resumes, device)
        except KeyboardInterrupt:
            for cell in cells:
                if cell.status == "pending":
                    cell.status, cell.note = "skipped", "skipped: interrupted"
            print("interrupted: the cells not run are marked skipped", file=sys.stderr)

    skipped = [f"{c.config}/{c.option}" for c in cells if c.status == "skipped"]
    if skipped:
        print(f"\nskipped {len(skipped)} cells: {', '.join(skipped)}")
    write_outputs(args.out, header, cells, resumes, device)
    counts = {s: sum(c.status == s for c in cells) for s in ("ok", "refused", "non-finite", "error", "skipped")}
    print(f"\n{', '.join(f'{v} {k}' for k, v in counts.items())}; {time.perf_counter() - started:.0f} s; "
          f"written to {args.out}/gpu_check.md and gpu_check.json")
    # A resumed run that differs fails the check only where two uninterrupted runs agree.
    failed = counts["non-finite"] + counts["error"] + sum(r.identical is False and bool(r.repeat_identical)
                                                          for r in resumes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
