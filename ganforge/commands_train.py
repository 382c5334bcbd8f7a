"""Commands that write and run configs: `ganforge train`, `ganforge config` and `ganforge list`."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ganforge.commands_common import err, user_errors

if TYPE_CHECKING:
    from ganforge.checkpoint import Checkpoint

# Exit code of a run that stopped because its time budget (train.max_minutes) was spent: resumable,
# and told apart from Ctrl+C (130) so that batch scripts can resubmit.
BUDGET_SPENT = 3

# The config keys that flags of `train` set (after --set): --max-minutes and --init.
MAX_MINUTES_KEY = "train.max_minutes"
INIT_KEY = "init.checkpoint"
AUTO_RESUME_KEY = "train.auto_resume"


class StopRequest(threading.Event):
    """Asks training to finish its step and checkpoint; `signal` names the signal that asked, if one did
    (otherwise the time budget did)."""

    def __init__(self) -> None:
        super().__init__()
        self.signal: str | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Ctrl+C or SIGTERM asks training to finish its step and checkpoint; a second Ctrl+C quits.
    A repeated SIGTERM changes nothing: a cluster may send it to the launcher and to each
    process (SLURM signals every process of a job step; torchrun passes its own on)."""
    event = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        if event.signal is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        event.signal = signal.Signals(signum).name
        event.set()
        below_bar = "\n" if sys.stderr.isatty() else ""  # off the progress bar's line
        err(f"{below_bar}{signal.Signals(signum).name}: finishing this step and saving a checkpoint"
            + (" (Ctrl+C again to quit at once)" if signum == signal.SIGINT else ""))

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def _resolve_resume(run_path: Path, overrides: list[str], flags: list[Any]
                    ) -> tuple[Any, dict[str, Any], Checkpoint]:
    """Load a run's newest good checkpoint and its config with the allowed overrides applied."""
    from ganforge.config import apply_overrides, check_resumable, config_to_dict, parse_config
    from ganforge.errors import ConfigError
    from ganforge.run import RunDir, load_latest_good

    payload = load_latest_good(run_path)
    if not isinstance(payload.state, dict) or "opt_g" not in payload.state:
        raise ConfigError(f"--resume {run_path}: its checkpoint holds networks but no optimizer state (a run written "
                          f"by `ganforge import`), so it cannot be continued; fine-tune from it: "
                          f"ganforge train CONFIG --init {run_path}")
    stored = payload.config
    source = str(RunDir(run_path, read_only=True).config_file)
    origins: dict[tuple[str, ...], str] = {}
    raw = apply_overrides(stored, overrides, origins, flags)
    cfg = parse_config(raw, origins, default_source=source)
    cfg_dict = config_to_dict(cfg)
    # Compare resolved configs, so that keys a newer ganforge added (with defaults) are no change.
    before = config_to_dict(parse_config(stored, default_source=source))
    check_resumable(before, cfg_dict)
    return cfg, cfg_dict, payload


def _auto_resume(run_path: Path, cfg_dict: dict[str, Any], config: Path) -> tuple[Checkpoint | None, bool]:
    """What `--auto-resume` finds in `run_path`: (newest good checkpoint or None, whether the
    folder holds a run of this config). A run of another config is a ConfigError naming the
    first key that differs (changes that --resume allows are fine)."""
    import yaml

    from ganforge.config import config_to_dict, parse_config, unresumable_changes
    from ganforge.errors import ConfigError, reading
    from ganforge.run import RunDir, load_latest_good

    run = RunDir(run_path, read_only=True)
    if not (run.config_file.is_file() or run.checkpoint_files() or run.index_file.is_file()):
        return None, False  # no run here yet (or not a run folder, which starting refuses)
    payload = load_latest_good(run_path) if run.checkpoint_files() else None
    if payload is not None:
        stored, source = payload.config, str(run_path)
    else:  # stopped before its first checkpoint: the config it was started with
        with reading(run.config_file, "the resolved config that `ganforge train` wrote"):
            stored = yaml.safe_load(run.config_file.read_text(encoding="utf-8"))
        source = str(run.config_file)
    before = config_to_dict(parse_config(stored, default_source=source))
    # Where the folder lies is not part of the run (a job may name it by another path).
    changes = [k for k in unresumable_changes(before, cfg_dict) if not k.startswith("output.")]
    if changes:
        key = changes[0]
        raise ConfigError(f"{run_path} holds a run of another config: {key} is {_value_at(before, key)!r} there and "
                          f"{_value_at(cfg_dict, key)!r} in {config}; continue that run with `ganforge train --resume "
                          f"{run_path}`, start over with --overwrite, or choose another output.dir")
    return payload, True


def _value_at(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@user_errors
def train(
    config: Path | None = typer.Argument(None, help="YAML config file (omit with --resume)."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                   help="Override a config key, e.g. --set train.steps=600 (repeatable)."),
    resume: Path | None = typer.Option(None, "--resume", metavar="RUN_FOLDER",
                                       help="Continue a run from its latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in the output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    nproc: int = typer.Option(1, "--nproc", min=1,
                              help="Processes on this machine (one per GPU); starts torchrun for you."),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", metavar="MINUTES",
        help=f"Time budget ({MAX_MINUTES_KEY}): then stop as on SIGTERM, with a checkpoint, and exit with code "
             f"{BUDGET_SPENT}; --resume continues."),
    init: str | None = typer.Option(None, "--init", metavar="CHECKPOINT",
                                    help=f"Start from the weights of this checkpoint or run folder ({INIT_KEY})."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Check the config, data and networks, then exit without training or writing."),
    auto_resume: bool = typer.Option(
        False, "--auto-resume",
        help=f"Continue the run in output.dir from its newest good checkpoint if there is one of this config, "
             f"else start it: the one command a job script runs every time ({AUTO_RESUME_KEY})."),
) -> None:
    """Train a GAN as a config describes; continue a stopped run with --resume."""
    from ganforge import distributed
    from ganforge.build import check_init, resolve_device, validate
    from ganforge.config import dump_yaml, load_config
    from ganforge.errors import ConfigError, GanforgeError, PeerError
    from ganforge.run import RunDir
    from ganforge.runinfo import environment
    from ganforge.training.loop import check, prepare
    from ganforge.training.loop import train as run_training

    if (config is None) == (resume is None):
        raise ConfigError("give a config file to start a run, or --resume RUN_FOLDER to continue one (not both)")
    if init is not None and resume is not None:
        raise ConfigError("--init starts a new run from a checkpoint's weights and --resume continues a run: "
                          "give one of them")
    if overwrite and resume is not None:
        raise ConfigError("--overwrite starts a run over and --resume continues it: give one of them")
    # Flags that set config keys: applied after --set, and named as typed in errors.
    flags = [(MAX_MINUTES_KEY, max_minutes, f"--max-minutes {max_minutes}")] if max_minutes is not None else []
    if init is not None:
        flags.append((INIT_KEY, init, f"--init {init}"))
    if auto_resume:
        if resume is not None or overwrite:
            raise ConfigError(f"--auto-resume continues or starts the run of a config file; it goes with neither "
                              f"{'--resume' if resume is not None else '--overwrite'}")
        flags.append((AUTO_RESUME_KEY, True, "--auto-resume"))
    same_run = False  # output.dir holds a run of this config (auto-resume)
    if resume is not None:
        cfg, cfg_dict, payload = _resolve_resume(resume, set_, flags)
        run_path = resume
    else:
        cfg, cfg_dict = load_config(config, set_, flags)
        payload, run_path = None, Path(cfg.output.dir)
        if cfg.train.auto_resume and not overwrite:
            payload, same_run = _auto_resume(run_path, cfg_dict, config)
        if payload is None:
            check_init(cfg)  # a resumed run has its weights already
            RunDir(run_path, read_only=True).check_create(overwrite or same_run)
            if overwrite or same_run:
                _refuse_deleting_inputs(cfg_dict, run_path)
    processes = nproc if nproc > 1 else int(os.environ.get("WORLD_SIZE", "1"))
    info, footprint = validate(cfg, processes)
    if dry_run:
        from ganforge.accepts import describe

        size = check(cfg, nproc, payload)
        device = resolve_device(cfg.train.device)
        count = f"{size} samples" if size is not None else "its size checked once downloaded"
        typer.echo(f"{config or resume}: valid; {cfg.generator.kind} G and {cfg.discriminator.kind} D on "
                   f"{info.name} ({describe(info)}; {count}), {cfg.train.steps} steps on {device} into {run_path}; "
                   "nothing was written")
        typer.echo(f"size: {footprint.describe()}")
        return
    if nproc > 1 and not distributed.launched_by_torchrun():
        # Check what can be checked here, then start torchrun with the same arguments.
        distributed.check_batch_splits(cfg.train, distributed.Dist(0, nproc))
        argv = list(sys.argv[1:])
        drop = {i for i, a in enumerate(argv) if a == "--nproc" or a.startswith("--nproc=")}
        drop |= {i + 1 for i in drop if argv[i] == "--nproc"}
        raise typer.Exit(distributed.launch(nproc, [a for i, a in enumerate(argv) if i not in drop]))
    ctx, device = distributed.init(resolve_device(cfg.train.device),
                                   datetime.timedelta(minutes=cfg.train.peer_timeout_minutes))
    run = RunDir(run_path, is_writer=ctx.is_main)
    try:
        # Every process read the folder before any could write to it (joining waits for all);
        # on a file system that nodes see differently they could still disagree.
        distributed.check_same(payload.step if payload is not None else -1, ctx, device,
                               f"the newest checkpoint in {run_path}")
        if payload is not None and payload.step >= cfg.train.steps:
            if ctx.is_main:
                typer.echo(f"{run_path} is complete (step {payload.step} of {cfg.train.steps}); "
                           f"train longer with --set train.steps=N (N > {payload.step})")
            return
        if cfg.log.tensorboard:
            RunDir.check_tensorboard()
        # Everything the run reads (data, init weights, the resumed state) is read and checked
        # before the run folder is made or replaced: --overwrite deletes only now, the last step
        # before the first write.
        prepared = prepare(cfg, payload, ctx, device, progress=not quiet)
        if payload is not None:
            run.open_existing()
            if ctx.is_main:
                typer.echo(f"resuming {run_path} at step {payload.step} of {cfg.train.steps}")
        else:
            # A run of this config stopped before its first checkpoint has nothing to keep.
            run.create(overwrite=overwrite or same_run)
            if ctx.is_main:
                typer.echo(f"run folder: {run.path}" + (f" ({ctx.world_size} processes)" if ctx.enabled else ""))
        try:
            run.write_config(dump_yaml(cfg_dict))
            run.record_environment(environment(config, payload.step if payload is not None else 0))
            if cfg.log.tensorboard:
                run.start_tensorboard(dump_yaml(cfg_dict))
            run.start_trackers(cfg.log, cfg_dict, dump_yaml(cfg_dict))
            distributed.barrier(ctx)  # the run folder exists before any rank writes or reads it
            with stop_on_signals() as stop:
                result = run_training(cfg, cfg_dict, run, stop=stop, progress=not quiet, prepared=prepared)
        except BaseException:
            if payload is None:
                run.discard_if_untouched()  # a run refused at its first step leaves nothing behind
            raise
    except KeyboardInterrupt:
        err(f"interrupted; continue from the last complete checkpoint with: {_continue_with(cfg, run.path)}"
            if run.latest_checkpoint() is not None else
            "interrupted before the first checkpoint, so there is nothing to resume; start over"
            + (" with --overwrite" if run.path.is_dir() and any(run.path.iterdir()) and not cfg.train.auto_resume
               else ""))
        raise typer.Exit(130) from None
    except GanforgeError:
        raise
    except Exception as e:
        # A peer died or went silent outside the training loop (at a barrier): one line.
        why = distributed.peer_failure(e) if ctx.enabled else None
        if why is None:
            raise
        raise PeerError(f"process {ctx.rank} of {ctx.world_size}: another process failed or stopped answering "
                        f"({why})") from None
    finally:
        run.release_lock()
        distributed.shutdown()
    if not ctx.is_main:
        raise typer.Exit((BUDGET_SPENT if stop.signal is None else 130) if result.interrupted else 0)
    latest = run.latest_sample
    if result.interrupted:
        budget = stop.signal is None and cfg.train.max_minutes is not None
        why = f"time budget of {cfg.train.max_minutes:g} min spent: " if budget else ""
        err(f"{why}stopped at step {result.step} of {result.total_steps}; checkpoint: {result.last_checkpoint}")
        err(f"continue with: {_continue_with(cfg, run.path)}")
        raise typer.Exit(BUDGET_SPENT if budget else 130)
    typer.echo(f"done: {result.step} steps")
    typer.echo(f"  samples:    {latest}")
    typer.echo(f"  checkpoint: {result.last_checkpoint}")
    typer.echo(f"  generate:   ganforge sample {run.path} --num 64 --out {run.path / 'generated'}")


def _continue_with(cfg: Any, run_path: Path) -> str:
    """The command that continues a stopped run."""
    if cfg.train.auto_resume:
        return "the same command (it resumes: train.auto_resume)"
    return f"ganforge train --resume {run_path}"


def _refuse_deleting_inputs(cfg_dict: dict[str, Any], run_path: Path) -> None:
    """Refuse an --overwrite that would delete a file or folder that the config names (data,
    weights) and the run reads while it trains. The init checkpoint and the config are read
    whole before anything is deleted."""
    from ganforge.errors import ConfigError

    if not run_path.is_dir():
        return
    folder = run_path.resolve()
    for key, value in _path_values(cfg_dict):
        if key in (INIT_KEY, "output.dir"):
            continue
        path = Path(value).expanduser()
        if path.exists() and (path.resolve() == folder or folder in path.resolve().parents):
            raise ConfigError(f"{key}: {value} lies in output.dir {run_path}, which --overwrite would empty; "
                              "move it out, or choose another output.dir (--set output.dir=...)")


def _path_values(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key path, value) of every string in a config dict that could name a file (not a `kind`)."""
    if isinstance(node, (dict, list)):
        for k, v in node.items() if isinstance(node, dict) else enumerate(node):
            yield from _path_values(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, str) and node and not key.endswith("kind"):
        yield key, node


# --------------------------------------------------------------------------------------------
# config, list
# --------------------------------------------------------------------------------------------


@user_errors
def show_config(
    config: Path | None = typer.Argument(None, help="YAML config file (omit with --schema)."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a config key."),
    schema: bool = typer.Option(False, "--schema", help="Print the JSON Schema of config files instead (for editors: "
                                                        "completion and inline errors)."),
) -> None:
    """Print the fully resolved config (bases merged, overrides and defaults applied), or the JSON Schema of configs."""
    from ganforge.build import check_init, validate
    from ganforge.config import dump_yaml, load_config
    from ganforge.errors import ConfigError

    if schema:
        import json

        from ganforge.config.jsonschema import config_schema

        if config is not None or set_:
            raise ConfigError("--schema describes every config: give it without a config file or --set")
        typer.echo(json.dumps(config_schema(), indent=1))
        return
    if config is None:
        raise ConfigError("give a config file to resolve, or --schema for the JSON Schema of configs")
    cfg, cfg_dict = load_config(config, set_)
    _, footprint = validate(cfg)
    check_init(cfg)
    typer.echo(dump_yaml(cfg_dict), nl=False)
    typer.echo(f"# size: {footprint.describe()}")


# How `ganforge list` says what a metric needs beyond features (catalog.Need).
_NEEDS = {"generator": "the run's generator", "lpips": "LPIPS weights"}


def declarations(entry: Any) -> str:
    """What a registry entry declares that users choose by, on one line ('' when nothing): its data,
    a generator's output range, a loss's shape, the losses and networks a regularizer works with
    and what it puts through D beyond the loss's passes, a metric's figures (which way each is
    better) and what else it needs."""
    declared = entry.properties
    parts = [entry.accepts.summary()]
    if "output_range" in declared:
        low_high = declared["output_range"]
        parts.append("output unbounded" if low_high is None else f"output in [{low_high[0]:g}, {low_high[1]:g}]")
    if "shape" in declared:
        parts.append(f"shape: {declared['shape']}")
    if declared.get("loss_shapes"):
        parts.append(f"losses: {' or '.join(declared['loss_shapes'])}")
    if declared.get("networks"):
        parts.append("networks: " + ", ".join(
            f"{part} {section['kind']}" + "".join(f" {k}={str(v).lower() if isinstance(v, bool) else v}"
                                                   for k, v in section.items() if k != "kind")
            for part, section in declared["networks"].items()))
    passes = [f"{p} in the D step" for p in declared.get("d_passes", ())] + \
        [f"{p} in the G step" for p in declared.get("g_passes", ())]
    if passes:
        parts.append("also puts " + ", ".join(passes))
    if "figures" in declared:
        parts.append("figures: " + ", ".join(f"{figure} ({better})" for figure, better in declared["figures"].items()))
    if declared.get("needs"):
        parts.append("needs " + " and ".join(_NEEDS.get(need, need) for need in declared["needs"]))
    return "; ".join(part for part in parts if part)


@user_errors
def list_components(
    section: str | None = typer.Argument(None, help="Only this section (data, generator, loss, ...)."),
) -> None:
    """List every registered component with its description and parameters."""
    from ganforge.config import component_params, type_name
    from ganforge.errors import ConfigError
    from ganforge.registry import ALL_REGISTRIES

    if section is not None and section not in ALL_REGISTRIES:
        raise ConfigError(f"unknown section {section!r}; valid: {', '.join(ALL_REGISTRIES)}")
    for name, registry in ALL_REGISTRIES.items():
        if section is not None and name != section:
            continue
        typer.echo(f"{name}:")
        for entry in registry.entries():
            typer.echo(f"  {entry.name:<16} {entry.description}")
            declared = declarations(entry)
            if declared:
                typer.echo(f"  {'':<16}   {declared}")
            params = component_params(entry.builder, registry.injected)
            if params:
                text = ", ".join(
                    f"{p.name}: {type_name(p.type)}" + ("" if p.required else f" = {p.default!r}") for p in params
                )
                typer.echo(f"  {'':<16}   {text}")
        typer.echo("")
