"""The `ganforge` command. It owns run folders, printing and exit codes; torch loads lazily."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ganforge.errors import GanforgeError

if TYPE_CHECKING:
    from ganforge.checkpoint import Checkpoint

app = typer.Typer(
    name="ganforge",
    help="Train generative adversarial networks from YAML configs, on a GPU or the CPU.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Exit code of a run that stopped because its time budget (train.max_minutes) was spent: resumable,
# and told apart from Ctrl+C (130) so that batch scripts can resubmit.
BUDGET_SPENT = 3


def err(message: str) -> None:
    """One line on stderr."""
    typer.echo(message, err=True)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn GanforgeError into `error: message` and its exit code, without a traceback, and
    print warnings as single `warning: message` lines as they happen."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = _one_line_warning
            try:
                return fn(*args, **kwargs)
            except GanforgeError as e:
                err("error: " + " ".join(str(e).split()))  # always one line
                raise typer.Exit(e.exit_code) from None
            except OSError as e:  # a file-system failure no command anticipated: still one line
                where = f" {e.filename}" if e.filename else ""
                err(f"error: could not access{where} ({e.strerror or type(e).__name__}); "
                    "check the path, its permissions and the free space")
                raise typer.Exit(1) from None

    return wrapper


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    err("warning: " + " ".join(str(message).split()))


class StopRequest(threading.Event):
    """Asks training to finish its step and checkpoint; `signal` names the signal that asked, if one did
    (otherwise the time budget did)."""

    def __init__(self) -> None:
        super().__init__()
        self.signal: str | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Ctrl+C or SIGTERM asks training to finish its step and checkpoint; a second Ctrl+C quits."""
    event = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        if event.signal is not None:
            raise KeyboardInterrupt
        event.signal = signal.Signals(signum).name
        event.set()
        err(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
            "(Ctrl+C again to quit at once)")

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
    from ganforge.checkpoint import load_latest_good
    from ganforge.config import apply_overrides, check_resumable, config_to_dict, parse_config
    from ganforge.run import RunDir

    payload = load_latest_good(run_path)
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


@app.command()
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
        help=f"Time budget (train.max_minutes): then stop as on SIGTERM, with a checkpoint, and exit with code "
             f"{BUDGET_SPENT}; --resume continues."),
    init: str | None = typer.Option(None, "--init", metavar="CHECKPOINT",
                                    help="Start from the weights of this checkpoint or run folder (init.checkpoint)."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Check the config, data and networks, then exit without training or writing."),
) -> None:
    """Train a GAN as a config describes; continue a stopped run with --resume."""
    from ganforge import distributed
    from ganforge.build import check_init, resolve_device, validate
    from ganforge.config import dump_yaml, load_config
    from ganforge.errors import ConfigError
    from ganforge.run import RunDir
    from ganforge.training.loop import train as run_training

    if (config is None) == (resume is None):
        raise ConfigError("give a config file to start a run, or --resume RUN_FOLDER to continue one (not both)")
    if init is not None and resume is not None:
        raise ConfigError("--init starts a new run from a checkpoint's weights and --resume continues a run: "
                          "give one of them")
    # Flags that set config keys: applied after --set, and named as typed in errors.
    flags = [("train.max_minutes", max_minutes, f"--max-minutes {max_minutes}")] if max_minutes is not None else []
    if init is not None:
        flags.append(("init.checkpoint", init, f"--init {init}"))
    if resume is not None:
        cfg, cfg_dict, payload = _resolve_resume(resume, set_, flags)
        run_path = resume
    else:
        cfg, cfg_dict = load_config(config, set_, flags)
        payload, run_path = None, Path(cfg.output.dir)
        check_init(cfg)  # a resumed run has its weights already
    info = validate(cfg)
    if dry_run:
        from ganforge.accepts import describe

        distributed.check_batch_split(cfg.train.batch_size, distributed.Dist(0, nproc), cfg.train.accumulate)
        device = resolve_device(cfg.train.device)
        typer.echo(f"{config or resume}: valid; {cfg.generator.kind} G and {cfg.discriminator.kind} D on "
                   f"{info.name} ({describe(info)}), {cfg.train.steps} steps on {device} into {run_path}; "
                   "nothing was written")
        return
    if nproc > 1 and not distributed.launched_by_torchrun():
        # Check what can be checked here, then start torchrun with the same arguments.
        distributed.check_batch_split(cfg.train.batch_size, distributed.Dist(0, nproc), cfg.train.accumulate)
        argv = list(sys.argv[1:])
        drop = {i for i, a in enumerate(argv) if a == "--nproc" or a.startswith("--nproc=")}
        drop |= {i + 1 for i in drop if argv[i] == "--nproc"}
        raise typer.Exit(distributed.launch(nproc, [a for i, a in enumerate(argv) if i not in drop]))
    ctx, device = distributed.init(resolve_device(cfg.train.device))
    run = RunDir(run_path, is_writer=ctx.is_main)
    try:
        if payload is not None:
            if payload.step >= cfg.train.steps:
                if ctx.is_main:
                    typer.echo(f"{resume} is complete (step {payload.step} of {cfg.train.steps}); "
                               f"train longer with --set train.steps=N (N > {payload.step})")
                return
            run.open_existing()
            if ctx.is_main:
                typer.echo(f"resuming {resume} at step {payload.step} of {cfg.train.steps}")
        else:
            run.create(overwrite=overwrite)
            if ctx.is_main:
                typer.echo(f"run folder: {run.path}" + (f" ({ctx.world_size} processes)" if ctx.enabled else ""))
        run.write_config(dump_yaml(cfg_dict))
        if cfg.log.tensorboard:
            run.start_tensorboard(dump_yaml(cfg_dict))
        distributed.barrier(ctx)  # the run folder exists before any rank writes or reads it
        try:
            with stop_on_signals() as stop:
                result = run_training(cfg, cfg_dict, run, resume=payload, stop=stop, progress=not quiet, ctx=ctx,
                                      device=device)
        except KeyboardInterrupt:
            err(f"interrupted; continue from the last complete checkpoint with: ganforge train --resume {run.path}")
            raise typer.Exit(130) from None
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
        err(f"continue with: ganforge train --resume {run.path}")
        raise typer.Exit(BUDGET_SPENT if budget else 130)
    typer.echo(f"done: {result.step} steps")
    typer.echo(f"  samples:    {latest}")
    typer.echo(f"  checkpoint: {result.last_checkpoint}")
    typer.echo(f"  generate:   ganforge sample {run.path} --num 64 --out {run.path / 'generated'}")


# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------


CLASS_OPTION = typer.Option(None, "--class", "-c", min=0, help="Only this class (conditional generators).")
TRUNCATION_OPTION = typer.Option(None, "--truncation", "-t", min=0.0, max=1.0,
                                 help="Truncation psi (0 = the average, 1 = none), where the generator has it.")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress bar.")
JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON.")


@app.command()
@user_errors
def sample(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run folder (uses its latest checkpoint)."),
    num: int = typer.Option(64, "--num", "-n", min=1, help="How many samples."),
    out: Path = typer.Option(Path("samples"), "--out", "-o",
                             help="Folder for image files; the PNG file with --grid; .npy for 2D data."),
    seed: int = typer.Option(0, "--seed", help="Noise seed: the same seed gives the same samples."),
    grid: bool = typer.Option(False, "--grid", help="Write one grid image instead of one file per sample."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw generator instead of its moving average."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Samples per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    class_index: int | None = CLASS_OPTION,
    truncation: float | None = TRUNCATION_OPTION,
    noise_mode: str | None = typer.Option(None, "--noise-mode",
                                          help="stylegan2's per-pixel noise: random (default, from --seed), const "
                                               "(as the training grids) or none."),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate images (or 2D points) from a checkpoint; no config file needed."""
    import json

    from ganforge.sample import load_generator, write_samples
    from ganforge.sample import sample as draw

    loaded = load_generator(checkpoint, use_ema=not no_ema, device=device)
    samples = draw(loaded, num, seed=seed, batch_size=batch_size, class_index=class_index, truncation=truncation,
                   progress=not quiet, noise_mode=noise_mode)
    written = write_samples(loaded, samples, out, grid, class_grid=class_index is None)
    where = written[0] if len(written) <= 2 else written[0].parent
    if as_json:
        typer.echo(json.dumps({"checkpoint": str(loaded.checkpoint), "step": loaded.step, "num": num, "seed": seed,
                               "files": [str(p) for p in written]}))
    else:
        typer.echo(f"wrote {num} samples from {loaded.checkpoint} (step {loaded.step}) to {where}")


# --------------------------------------------------------------------------------------------
# interpolate, export
# --------------------------------------------------------------------------------------------


@app.command()
@user_errors
def interpolate(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run folder."),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.gif (animation) or FILE.png (a strip per row)."),
    num_frames: int = typer.Option(60, "--num-frames", "-f", min=2, help="Frames (GIF) or steps per row (PNG)."),
    rows: int = typer.Option(4, "--rows", "-r", min=1, help="Rows of walks (conditional: one row per class)."),
    cols: int = typer.Option(4, "--cols", min=1, help="Walks per row in the GIF."),
    keyframes: int = typer.Option(4, "--keyframes", min=2, help="Random points each GIF walk loops through."),
    fps: float = typer.Option(20.0, "--fps", min=1.0, help="GIF frames per second."),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw generator instead of its moving average."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    class_index: int | None = CLASS_OPTION,
    truncation: float | None = TRUNCATION_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Walk between random latents (spherical interpolation) as an animated GIF or a PNG strip."""
    import torch

    from ganforge.generation import class_labels
    from ganforge.interpolate import interpolate as make_frames
    from ganforge.interpolate import save_gif, strip
    from ganforge.sample import load_generator

    loaded = load_generator(checkpoint, use_ema=not no_ema, device=device)
    class_labels(1, loaded.num_classes, class_index, torch.device("cpu"))  # --class names one of its classes
    try:
        if out.suffix.lower() == ".gif":
            frames = make_frames(loaded, num_frames, rows, cols, keyframes, seed, class_index, truncation,
                                 progress=not quiet)
            save_gif(frames, out, fps)
            typer.echo(f"wrote {out}: {len(frames)} frames of {frames[0].size[0]}x{frames[0].size[1]}")
        elif out.suffix.lower() == ".png":
            if not loaded.info.is_image:
                raise GanforgeError("interpolate makes images; this generator makes 2D points")
            out.parent.mkdir(parents=True, exist_ok=True)
            image = strip(loaded, num_frames, rows, seed, class_index, truncation)
            image.save(out)
            typer.echo(f"wrote {out}: {rows} rows of {num_frames} steps")
        else:
            raise GanforgeError(f"--out {out}: end the name in .gif (animation) or .png (strip)")
    except OSError as e:
        raise GanforgeError(f"cannot write {out} ({e.strerror or e})") from None


@app.command()
@user_errors
def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run folder."),
    fmt: str = typer.Option(..., "--format", help="torchscript or onnx."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (.pt for TorchScript, .onnx)."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Export the raw generator instead of its moving average."),
    truncation: float | None = TRUNCATION_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the generator as a TorchScript or ONNX file that runs without ganforge."""
    import json

    from ganforge.export import export as write
    from ganforge.sample import load_generator

    if fmt not in ("torchscript", "onnx"):
        raise GanforgeError(f"--format {fmt}: use torchscript or onnx")
    loaded = load_generator(checkpoint, use_ema=not no_ema, device="cpu")
    try:
        meta = write(loaded, fmt, out, truncation)
    except OSError as e:
        raise GanforgeError(f"cannot write {out} ({e.strerror or e})") from None
    if as_json:
        typer.echo(json.dumps({"file": str(out), **meta}))
        return
    inputs = " and ".join(f"{n} ({'N' if n == 'labels' else 'N x ' + str(meta['latent_dim'])})" for n in meta["inputs"])
    typer.echo(f"wrote {out} ({fmt}, {out.stat().st_size / 2**20:.1f} MiB): takes {inputs}, returns "
               f"{'N x ' + ' x '.join(map(str, meta['output_shape']))} in {meta['output_range'] or 'data units'}")


# --------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------


@app.command("eval")
@user_errors
def evaluate(
    checkpoint: Path | None = typer.Argument(None, help="A checkpoint file or a run folder (uses its latest "
                                                        "checkpoint); or score a folder with --images."),
    images: Path | None = typer.Option(None, "--images", help="Score this folder of images instead of a checkpoint "
                                                             "(against --reference DIR or --data CONFIG)."),
    reference: Path | None = typer.Option(None, "--reference", help="With --images: a folder of real images."),
    data: Path | None = typer.Option(None, "--data", help="With --images: a config whose data section is the "
                                                         "real data."),
    metrics: str | None = typer.Option(None, "--metrics", "-m",
                                          help="Comma-separated: fid,kid,is,pr,dc (images) or modes (2D); "
                                               "default: the run's eval.metrics."),
    num: int | None = typer.Option(None, "--num", "-n", min=2,
                                   help="Generated samples (default: eval.num_samples)."),
    real_num: int | None = typer.Option(None, "--real-num", min=2,
                                        help="Real samples for the reference statistics."),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per forward pass."),
    inception_weights: str | None = typer.Option(None, "--inception-weights",
                                                    help="Path of the FID Inception weights file."),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Where real-data statistics are cached."),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSON file (default: RUN/eval/step-N.json)."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Evaluate the raw generator instead of its moving average."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Compute FID, KID, IS, precision/recall, density/coverage, ifid (or 2D mode figures) for a checkpoint,
    or for a folder of images with --images."""
    import json

    from ganforge.build import build_data, evaluator_for, resolve_device
    from ganforge.config import Component, parse_config
    from ganforge.sample import load_generator

    if images is not None:
        if checkpoint is not None:
            raise GanforgeError("give a checkpoint or --images DIR, not both")
        from ganforge.commands_data import eval_images

        return eval_images(images=images, reference=reference, data=data, metrics=metrics or "fid", num=num,
                           real_num=real_num, batch_size=batch_size or 50, num_workers=2,
                           inception_weights=inception_weights, cache_dir=cache_dir, device=device, out=out,
                           quiet=quiet, as_json=as_json)
    if checkpoint is None:
        raise GanforgeError("give a checkpoint or run folder to evaluate, or --images DIR to score a folder")
    if reference is not None or data is not None:
        raise GanforgeError("--reference and --data go with --images; a checkpoint is scored against its own data")
    loaded = load_generator(checkpoint, use_ema=not no_ema, device=device)
    cfg = parse_config(loaded.config)
    extractor = cfg.eval.extractor
    if inception_weights is not None:
        extractor = Component(extractor.kind, {**extractor.params, "weights": inception_weights})
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else list(cfg.eval.metrics)
    evaluator = evaluator_for(cfg, build_data(cfg), resolve_device(device), progress=not quiet, metrics=names,
                              num_samples=num, real_samples=real_num, batch_size=batch_size, cache_dir=cache_dir,
                              extractor_cfg=extractor)
    result = evaluator(loaded.G, seed=seed)
    report = {"checkpoint": str(loaded.checkpoint), "step": loaded.step, "seed": seed, "ema": not no_ema,
              **result.to_dict()}
    if out is None:
        from ganforge.run import RunDir

        out = RunDir.of_checkpoint(loaded.checkpoint).eval_file(loaded.step)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
    except OSError as e:
        raise GanforgeError(f"cannot write {out} ({e.strerror})") from None
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    typer.echo(f"{loaded.checkpoint} (step {loaded.step}), {result.num_samples} generated samples, "
               f"{result.seconds:.0f} s")
    for name, value in result.figures.items():
        typer.echo(f"  {name:<18} {value:.6g}")
    typer.echo(f"  extractor: {result.extractor}")
    ref = result.reference
    if "num_samples" in ref:
        typer.echo(f"  reference: {ref['data'].get('kind')} ({ref['num_samples']} real samples), "
                   f"statistics in {ref['stats_file']}")
    typer.echo(f"  written to {out}")


# --------------------------------------------------------------------------------------------
# info, runs, report
# --------------------------------------------------------------------------------------------


@app.command()
@user_errors
def info(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run folder."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Step, config summary, parameter counts, latest metrics, versions and checkpoint files."""
    import json

    from ganforge.runinfo import checkpoint_details

    d = checkpoint_details(checkpoint)
    if as_json:
        typer.echo(json.dumps(d, indent=1))
        return
    typer.echo(f"checkpoint   {d['checkpoint']}")
    typer.echo(f"step         {d['step']} of {d['steps']}")
    typer.echo(f"data         {d['data']['kind']} {tuple(d['data']['shape'])}, {d['data']['num_classes']} classes")
    g = d["generator"]
    typer.echo(f"generator    {g['kind']}: {g['parameters']:,} parameters, latent {g['latent_dim']}"
               + (f", conditioned on {g['conditional_classes']} classes" if g["conditional_classes"] else ""))
    typer.echo(f"discrim.     {d['discriminator']['kind']}: {d['discriminator']['parameters']:,} parameters")
    regs = f", regularizers {', '.join(d['regularizers'])}" if d["regularizers"] else ""
    typer.echo(f"loss         {d['loss']}{regs}")
    typer.echo(f"batch        {d['batch_size']}")
    if d["latest_metrics"]:
        typer.echo("metrics      " + ", ".join(f"{k}={v:.5g}" for k, v in d["latest_metrics"].items()))
    typer.echo(f"versions     ganforge {d['ganforge_version']}, torch {d['torch_version']}")
    for f in d["files"]:
        extra = f" (best: {f['best']})" if "best" in f else ""
        typer.echo(f"  {f['file']:<22} step {f['step']:>8}  {f['bytes'] / 2**20:7.1f} MiB{extra}")


@app.command()
@user_errors
def runs(
    folder: Path = typer.Argument(Path("runs"), help="Where the run folders are (default: runs)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """A table of the runs in a folder: config, step, last losses, best metric, last change."""
    import json

    from ganforge.runinfo import ago, find_runs, summarize

    if not folder.is_dir():
        raise GanforgeError(f"no folder {folder}")
    summaries = sorted((summarize(r) for r in find_runs(folder)), key=lambda s: -s.last_change)
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in summaries], indent=1))
        return
    if not summaries:
        typer.echo(f"no runs in {folder}")
        return
    typer.echo(f"{'run':<24} {'data':<14} {'G':<10} {'step':>13} {'d_loss':>7} {'g_loss':>7}  {'best':<18} changed")
    for s in summaries:
        step = f"{s.step}/{s.steps}" if s.steps else str(s.step)
        best = f"{s.best['figure']}={s.best['value']:.4g}" if s.best else "-"
        d, g = (f"{s.losses[k]:.3f}" if k in s.losses else "-" for k in ("d_loss", "g_loss"))
        typer.echo(f"{s.name:<24} {s.data:<14} {s.generator:<10} {step:>13} {d:>7} {g:>7}  {best:<18} "
                   f"{ago(s.last_change)}")


@app.command()
@user_errors
def report(
    run: Path = typer.Argument(..., help="A run folder."),
    out: Path | None = typer.Option(None, "--out", "-o", help="HTML file (default: RUN/report.html)."),
) -> None:
    """Write one self-contained HTML page: curves, samples over training, metrics, config."""
    from ganforge.report import build_report
    from ganforge.run import RunDir

    page = build_report(run)
    out = out or RunDir(run, read_only=True).report_file
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page)
    except OSError as e:
        raise GanforgeError(f"cannot write {out} ({e.strerror})") from None
    typer.echo(f"wrote {out} ({len(page) / 2**10:.0f} KiB, images embedded; opens offline in any browser)")


# --------------------------------------------------------------------------------------------
# config, list
# --------------------------------------------------------------------------------------------


@app.command("config")
@user_errors
def show_config(
    config: Path = typer.Argument(..., help="YAML config file."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a config key."),
) -> None:
    """Print the fully resolved config (bases merged, overrides and defaults applied)."""
    from ganforge.build import check_init, validate
    from ganforge.config import dump_yaml, load_config

    cfg, cfg_dict = load_config(config, set_)
    validate(cfg)
    check_init(cfg)
    typer.echo(dump_yaml(cfg_dict), nl=False)


@app.command("list")
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
            params = component_params(entry.builder, registry.injected)
            if params:
                text = ", ".join(
                    f"{p.name}: {type_name(p.type)}" + ("" if p.required else f" = {p.default!r}") for p in params
                )
                typer.echo(f"  {'':<16}   {text}")
        typer.echo("")


def _print_version(value: bool) -> None:
    if value:
        from ganforge import __version__

        typer.echo(f"ganforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    # An option callback runs while parsing, before click asks for a command (a plain parameter
    # would leave `ganforge --version` a "Missing command" error).
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    pass


# Commands kept in their own modules (data set preparation, evaluation of image folders, GAN inversion).
from ganforge import commands_data, commands_model  # noqa: E402

commands_data.register(app)
commands_model.register(app)


def main() -> None:
    """Entry point of the `ganforge` console script (and of `python -m ganforge`)."""
    try:
        code = app(prog_name="ganforge", standalone_mode=False)
    except typer.Abort:
        err("aborted")
        sys.exit(130)
    except Exception as e:
        # Click's usage errors (an unknown option, a value of the wrong type): one line, like
        # every other mistake, instead of a usage box.
        if not hasattr(e, "format_message") or getattr(e, "exit_code", None) != 2:
            raise
        message = " ".join(e.format_message().split())
        if message:  # empty: no arguments at all, and the help was printed
            command = getattr(getattr(e, "ctx", None), "command_path", None) or "ganforge"
            err(f"error: {message} (see {command} --help)")
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
    sys.exit(0)
