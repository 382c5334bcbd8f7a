"""Commands that read runs and score checkpoints: `ganforge eval`, `info`, `runs` and `report`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ganforge.about import RUNS_FOLDER
from ganforge.commands_common import JSON_OPTION, TRUNCATION_OPTION, refuse_overwriting, user_errors, write_json
from ganforge.commands_data import (
    DINOV2_OPTION,
    KID_SUBSET_OPTION,
    PROTOCOL_OPTION,
    RESIZE_OPTION,
    describe_settings,
    eval_options,
    load_data_section,
)
from ganforge.errors import GanforgeError

if TYPE_CHECKING:
    from ganforge.config import Config
    from ganforge.data import DataInfo

# --------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------


@user_errors
def evaluate(
    checkpoint: Path | None = typer.Argument(None, help="A checkpoint file or a run folder (uses its latest "
                                                        "checkpoint); or score a folder with --images."),
    images: Path | None = typer.Option(None, "--images", help="Score this folder of images instead of a checkpoint "
                                                             "(against --reference DIR or --data CONFIG)."),
    reference: Path | None = typer.Option(None, "--reference", help="With --images: a folder of real images."),
    data: Path | None = typer.Option(None, "--data", help="A config whose data section is the real data: with "
                                                         "--images, or for a checkpoint (an imported run has none)."),
    metrics: str | None = typer.Option(None, "--metrics", "-m",
                                          help="Comma-separated metrics (`ganforge list metric`: each with "
                                               "its data and figures); default: the run's eval.metrics."),
    num: int | None = typer.Option(None, "--num", "-n", min=2,
                                   help="Generated samples (default: eval.num_samples)."),
    real_num: int | None = typer.Option(None, "--real-num", min=2,
                                        help="Real samples for the reference statistics."),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per forward pass."),
    inception_weights: str | None = typer.Option(None, "--inception-weights",
                                                    help="Path of the FID Inception weights file."),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Where real-data statistics are cached."),
    resize: str | None = RESIZE_OPTION,
    protocol: str | None = PROTOCOL_OPTION,
    kid_subset_size: int | None = KID_SUBSET_OPTION,
    dinov2_weights: str | None = DINOV2_OPTION,
    lpips: str | None = typer.Option(None, "--lpips", metavar="FILE",
                                     help="ppl: LPIPS's vgg.pth (default: eval.lpips, or the torch hub cache)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSON file (default: RUN/eval/step-N.json)."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Evaluate the raw generator instead of its moving average."),
    batch_stats: bool = typer.Option(False, "--batch-stats",
                                     help="Generate with G's BatchNorm on each batch's own statistics (train mode; "
                                          "--batch-size samples a batch), as WGAN-GP's and BigGAN's CIFAR code do."),
    truncation: float | None = TRUNCATION_OPTION,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Compute FID, KID, IS, precision/recall, density/coverage, ifid (or 2D mode figures) for a checkpoint,
    or for a folder of images with --images."""
    import json

    from ganforge.build import build_data, evaluator_for, resolve_device
    from ganforge.config import Component, parse_config
    from ganforge.generation import truncation_for
    from ganforge.generation.drawing import load_generator
    from ganforge.metrics.catalog import default_metrics
    from ganforge.run import RunDir

    if images is not None:
        if checkpoint is not None:
            raise GanforgeError("give a checkpoint or --images DIR, not both")
        if truncation is not None:
            raise GanforgeError("--truncation goes with a checkpoint: --images scores the images as they are")
        from ganforge.commands_data import eval_images

        if lpips is not None:
            raise GanforgeError("--lpips goes with ppl, which measures a checkpoint, not a folder of images")
        return eval_images(images=images, reference=reference, data=data, metrics=metrics or "fid", num=num,
                           real_num=real_num, batch_size=batch_size or 50, num_workers=2,
                           inception_weights=inception_weights, cache_dir=cache_dir, resize=resize or "legacy",
                           protocol=protocol or "pytorch-fid", kid_subset_size=kid_subset_size or 1000,
                           dinov2_weights=dinov2_weights, device=device, out=out, quiet=quiet, as_json=as_json)
    if checkpoint is None:
        raise GanforgeError("give a checkpoint or run folder to evaluate, or --images DIR to score a folder")
    if reference is not None:
        raise GanforgeError("--reference goes with --images; a checkpoint is scored against its own data, or the "
                            "data of --data CONFIG")
    loaded = load_generator(checkpoint, use_ema=not no_ema, device=device)
    trunc = truncation_for(loaded.G, truncation)
    if out is not None:
        weights = [Path(p) for p in (inception_weights, dinov2_weights, lpips) if p is not None]
        refuse_overwriting([out], [*loaded.files, *weights])
    cfg = parse_config(loaded.config)
    if data is not None:
        cfg = with_data_of(cfg, data, loaded.info)
    extractor = cfg.eval.extractor
    if inception_weights is not None:
        extractor = Component(extractor.kind, {**extractor.params, "weights": inception_weights})
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else list(cfg.eval.metrics)
    eval_options(resize, protocol, kid_subset_size)  # the flags' values, checked before anything runs
    try:
        source = build_data(cfg)
    except GanforgeError as e:  # say which metrics wanted the data
        wanting = ", ".join(default_metrics(names, True)) or "evaluation"
        raise type(e)(f"{wanting}: cannot read the run's data: {e}") from None
    evaluator = evaluator_for(cfg, source, resolve_device(device), progress=not quiet, metrics=names,
                              num_samples=num, real_samples=real_num, batch_size=batch_size, cache_dir=cache_dir,
                              extractor_cfg=extractor, resize=resize, protocol=protocol,
                              kid_subset_size=kid_subset_size, dinov2_weights=dinov2_weights, lpips=lpips,
                              truncation=truncation, batch_stats=batch_stats)
    result = evaluator(loaded.G, seed=seed)
    report = {"checkpoint": str(loaded.checkpoint), "step": loaded.step, "seed": seed, "ema": not no_ema,
              "batch_stats": batch_stats, "truncation": truncation, "truncation_rule": trunc.describe(),
              **result.to_dict()}
    run_dir = RunDir.of_checkpoint(loaded.checkpoint)
    if out is None:
        out = run_dir.eval_file(loaded.step)
    for name, picture in result.sheets.items():  # the kNN sheet: RUN/eval/knn-step-N.png
        sheet = run_dir.eval_file(loaded.step).with_name(f"{name}-{run_dir.eval_file(loaded.step).stem}.png")
        sheet.parent.mkdir(parents=True, exist_ok=True)
        picture.save(sheet)
        report.setdefault("sheets", {})[name] = str(sheet)
    write_json(out, report)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    typer.echo(f"{loaded.checkpoint} (step {loaded.step}), {result.num_samples} generated samples"
               + (f" (truncation {truncation:g}: {trunc.describe()})" if truncation is not None else "")
               + f", {result.seconds:.0f} s")
    for name, value in result.figures.items():
        typer.echo(f"  {name:<18} {value:.6g}")
    describe_settings(result)
    ref = result.reference
    if "num_samples" in ref:
        typer.echo(f"  reference: {ref['data'].get('kind')} ({ref['num_samples']} real samples), "
                   f"statistics in {ref['stats_file']}")
    for sheet in report.get("sheets", {}).values():
        typer.echo(f"  sheet: {sheet}")
    typer.echo(f"  written to {out}")


def with_data_of(cfg: Config, config: Path, info: DataInfo) -> Config:
    """`cfg` with the data section of the config file `config`, whose samples must have the shape
    that the run's networks make (`info`)."""
    import dataclasses

    from ganforge.accepts import describe
    from ganforge.build import build_data

    data_cfg = load_data_section(config)
    given = build_data(dataclasses.replace(cfg, data=data_cfg)).info
    if given.shape != info.shape:
        raise GanforgeError(f"--data {config}: its samples are {describe(given)}, but this generator makes "
                            f"{describe(info)}")
    return dataclasses.replace(cfg, data=data_cfg)


# --------------------------------------------------------------------------------------------
# info, runs, report
# --------------------------------------------------------------------------------------------


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
    data = d["data"]
    items = data["items"]
    size = "" if items is None else (f", {items:,} an epoch ({items // 2:,} images and their mirror images)"
                                     if data["xflip"] else f", {items:,} an epoch")
    typer.echo(f"data         {data['kind']} {tuple(data['shape'])}, {data['num_classes']} classes{size}")
    g = d["generator"]
    typer.echo(f"generator    {g['kind']}: {g['parameters']:,} parameters, latent {g['latent_dim']}"
               + (f", conditioned on {g['conditional_classes']} classes" if g["conditional_classes"] else ""))
    dn = d["discriminator"]["parameters"]
    typer.echo(f"discrim.     {d['discriminator']['kind']}: " +
               (f"{dn:,} parameters" if dn is not None else "not in the checkpoint"))
    regs = f", regularizers {', '.join(d['regularizers'])}" if d["regularizers"] else ""
    typer.echo(f"loss         {d['loss']}{regs}")
    typer.echo(f"batch        {d['batch_size']}")
    if d["latest_metrics"]:
        typer.echo("metrics      " + ", ".join(f"{k}={v:.5g}" for k, v in d["latest_metrics"].items()))
    typer.echo(f"versions     ganforge {d['ganforge_version']}, torch {d['torch_version']}")
    for s in d["environment"]:  # each session that trained up to this checkpoint (RUN/environment.json)
        hardware = ", ".join(s.get("gpus") or []) or f"CPU {s.get('cpu') or '?'}"
        git = s.get("git") or {}
        commit = f", config at git {git['commit'][:12]}" + (" (uncommitted changes)" if git.get("dirty") else "") \
            if git.get("commit") else ""
        typer.echo(f"ran from step {s.get('step', 0)}: host {s.get('host')}, {hardware}; torch {s.get('torch')} "
                   f"(CUDA {s.get('cuda') or 'none'}, cuDNN {s.get('cudnn') or 'none'}), ganforge {s.get('ganforge')}"
                   f"{commit}; started {s.get('started')}")
        typer.echo(f"  command    {s.get('command')}")
    for f in d["files"]:
        extra = f" (best: {f['best']})" if "best" in f else ""
        typer.echo(f"  {f['file']:<22} step {f['step']:>8}  {f['bytes'] / 2**20:7.1f} MiB{extra}")


@user_errors
def runs(
    folder: Path = typer.Argument(Path(RUNS_FOLDER), help=f"Where the run folders are (default: {RUNS_FOLDER})."),
    as_json: bool = JSON_OPTION,
) -> None:
    """A table of the runs in a folder: config, step, last losses, best metric, last change."""
    import json

    from ganforge.logrecord import D_LOSS, G_LOSS, LOSSES
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
    typer.echo(f"{'run':<24} {'data':<14} {'G':<10} {'step':>13} {D_LOSS:>7} {G_LOSS:>7}  {'best':<18} changed")
    for s in summaries:
        step = f"{s.step}/{s.steps}" if s.steps else str(s.step)
        best = f"{s.best.figure}={s.best.value:.4g}" if s.best else "-"
        d, g = (f"{s.losses[k]:.3f}" if k in s.losses else "-" for k in LOSSES)
        typer.echo(f"{s.name:<24} {s.data:<14} {s.generator:<10} {step:>13} {d:>7} {g:>7}  {best:<18} "
                   f"{ago(s.last_change)}")


@user_errors
def report(
    run: Path = typer.Argument(..., help="A run folder."),
    out: Path | None = typer.Option(None, "--out", "-o", help="HTML file (default: RUN/report.html)."),
) -> None:
    """Write one self-contained HTML page: curves, samples over training, metrics, config."""
    from ganforge.report import build_report
    from ganforge.run import RunDir

    if out is not None:
        refuse_overwriting([out], RunDir(run, read_only=True).files())
    page = build_report(run)
    out = out or RunDir(run, read_only=True).report_file
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page)
    except OSError as e:
        raise GanforgeError(f"cannot write {out} ({e.strerror})") from None
    typer.echo(f"wrote {out} ({len(page) / 2**10:.0f} KiB, images embedded; opens offline in any browser)")
