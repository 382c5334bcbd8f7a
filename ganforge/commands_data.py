"""Commands for data sets and image folders: `ganforge dataset` and `ganforge eval-images`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from ganforge.commands_common import refuse_overwriting, user_errors, write_json

# Options of `eval` and `eval-images` (defaults: the run's eval section, or as written).
RESIZE_OPTION = typer.Option(None, "--resize", help="How images reach the Inception's 299 px: legacy "
                                                    "(pytorch-fid, default) or clean (clean-fid).")
PROTOCOL_OPTION = typer.Option(None, "--protocol", help="IS and KID as pytorch-fid (default) or torch-fidelity "
                                                        "resizes and computes them.")
KID_SUBSET_OPTION = typer.Option(None, "--kid-subset-size", min=2, help="KID's subset size (default 1000).")
DINOV2_OPTION = typer.Option(None, "--dinov2-weights", metavar="FILE",
                             help="fd_dinov2, prdc_dinov2: dinov2_vitl14_pretrain.pth (default: the torch hub cache).")


def _cpu_count() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@user_errors
def dataset_command(
    src: Path = typer.Argument(..., help="A folder of images (sub-folders = classes) or a zip of images."),
    out: Path = typer.Option(..., "--out", "-o", help="The zip to write (StyleGAN2-ADA's format), outside SRC."),
    resolution: int = typer.Option(..., "--resolution", "-r", help="Side of the square images, in pixels."),
    crop: str = typer.Option("center", "--crop",
                             help="center (the central square), center-wide (a centred strip of --aspect on black, "
                                  "StyleGAN2-ADA's center-crop-wide), pad (the whole image letterboxed) or stretch."),
    aspect: float = typer.Option(4 / 3, "--aspect", min=1.0, max=16.0,
                                 help="center-wide: the strip's width / height (4/3: 512x384 in 512x512)."),
    pad_mode: str = typer.Option("constant", "--pad-mode",
                                 help="pad: fill the bars with constant (--pad-value), edge or reflect."),
    pad_value: int = typer.Option(0, "--pad-value", min=0, max=255, help="pad with --pad-mode constant: grey level."),
    alpha: str = typer.Option("composite", "--alpha",
                              help="Transparency: composite (on --background) or refuse (stop, naming the file)."),
    background: str = typer.Option("255,255,255", "--background", metavar="R,G,B",
                                   help="The colour transparent pixels are composited on."),
    labels: str = typer.Option("auto", "--labels",
                               help="folders (sub-folder = class), json (SRC's dataset.json), none, or auto: "
                                    "json if there is one, else folders if every image is in one, else none."),
    channels: int = typer.Option(3, "--channels", help="3 (RGB) or 1 (greyscale)."),
    workers: int = typer.Option(_cpu_count(), "--workers", min=0,
                                help="Processes that decode and resize (default: the CPU count; 0: this one)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (every skipped file listed)."),
) -> None:
    """Decode, check and frame images once into a zip that `data: {kind: zip}` reads in place."""
    from ganforge.commands_common import err
    from ganforge.data.decode import ImageOptions
    from ganforge.dataset_tool import make_dataset

    options = ImageOptions(resolution, channels, crop, aspect, pad_mode, pad_value, alpha, _colour(background))
    try:  # SIGTERM interrupts as Ctrl+C does (ganforge.cli); the partial zip is gone by then
        summary = make_dataset(src, out, options, labels=labels, overwrite=overwrite, workers=workers,
                               progress=not quiet, report=err)
    except KeyboardInterrupt:
        err(f"interrupted: nothing was written to {out}")
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=1))
        return
    typer.echo(summary.describe())
    typer.echo(f"train on it with: data: {{kind: zip, path: {out}}}")


def _colour(text: str) -> tuple[int, int, int]:
    """`R,G,B` (0-255 each) -> a tuple; anything else is a one-line error."""
    from ganforge.errors import ConfigError

    parts = text.replace(" ", "").split(",")
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise ConfigError(f"--background {text}: give R,G,B with each between 0 and 255, e.g. 255,255,255")
    return int(parts[0]), int(parts[1]), int(parts[2])


@user_errors
def eval_images(
    images: Path = typer.Argument(..., help="A folder of images to score (e.g. from ganforge sample)."),
    reference: Path | None = typer.Option(None, "--reference", help="A folder of real images to compare with."),
    data: Path | None = typer.Option(None, "--data",
                                     help="A config file whose data section is the real data to compare with."),
    metrics: str = typer.Option("fid", "--metrics", "-m",
                                help="Comma-separated image metrics (`ganforge list metric`), but not those that "
                                     "need the run's generator."),
    num: int | None = typer.Option(None, "--num", "-n", min=2, help="Score this many of the images (default: all)."),
    real_num: int | None = typer.Option(None, "--real-num", min=2,
                                        help="Real images (default: all of --reference; as many as --images "
                                             "from --data)."),
    batch_size: int = typer.Option(50, "--batch-size", min=1, help="Images per forward pass."),
    num_workers: int = typer.Option(2, "--num-workers", min=0, help="Processes that decode images."),
    inception_weights: str | None = typer.Option(None, "--inception-weights",
                                                    help="Path of the FID Inception weights file."),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Where data-set statistics are cached."),
    resize: str | None = RESIZE_OPTION,
    protocol: str | None = PROTOCOL_OPTION,
    kid_subset_size: int | None = KID_SUBSET_OPTION,
    dinov2_weights: str | None = DINOV2_OPTION,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the result to this JSON file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Score a folder of images with FID, KID, IS, PR, DC (or ifid) against real images, as ganforge eval."""
    from ganforge.build import resolve_device
    from ganforge.config import Component
    from ganforge.errors import GanforgeError
    from ganforge.metrics.folders import evaluate_folders

    names = [m.strip() for m in metrics.split(",") if m.strip()]
    if reference is not None and data is not None:
        raise GanforgeError("give --reference DIR or --data CONFIG, not both")
    options = eval_options(resize, protocol, kid_subset_size)
    data_cfg = load_data_section(data) if data is not None else None
    if out is not None:
        # The folders' images, the --data config and the weights are read: --out may be none of them.
        read = [*images_in(images), *images_in(reference),
                *(p for p in (data, inception_weights, dinov2_weights) if p is not None)]
        refuse_overwriting([out], [Path(p) for p in read])
    extractor = Component("inception", {"weights": inception_weights, "download": True})
    result = evaluate_folders(images, reference, data_cfg, names, extractor, resolve_device(device), num=num,
                              real_num=real_num, batch_size=batch_size, num_workers=num_workers,
                              cache_dir=cache_dir, progress=not quiet, options=options,
                              dinov2_weights=dinov2_weights)
    report = {"images": str(images), **result.to_dict()}
    if out is not None:
        write_json(out, report)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    typer.echo(f"{images}: {result.num_samples} images, {result.seconds:.0f} s")
    for name, value in result.figures.items():
        typer.echo(f"  {name:<18} {value:.6g}")
    describe_settings(result)
    ref = result.reference
    if "folder" in ref:
        typer.echo(f"  reference: {ref['folder']} ({ref['num_samples']} images)")
    elif "stats_file" in ref:
        typer.echo(f"  reference: {ref['data'].get('kind')} ({ref['num_samples']} real samples), "
                   f"statistics in {ref['stats_file']}")
    if out is not None:
        typer.echo(f"  written to {out}")


def eval_options(resize: str | None, protocol: str | None, kid_subset_size: int | None) -> Any:
    """EvalOptions from the command line, each value checked against its choices."""
    from typing import get_args

    from ganforge.errors import ConfigError
    from ganforge.metrics.catalog import EvalOptions, Protocol, Resize

    for flag, value, choices in (("--resize", resize, get_args(Resize)), ("--protocol", protocol, get_args(Protocol))):
        if value is not None and value not in choices:
            raise ConfigError(f"{flag}: {value!r} is not one of {', '.join(choices)}")
    return EvalOptions(resize or "legacy", protocol or "pytorch-fid", kid_subset_size or 1000)  # type: ignore[arg-type]


def describe_settings(result: Any) -> None:
    """The extractor, resize, protocol and the metrics' notes of an EvalResult, one line each."""
    typer.echo(f"  extractor: {result.extractor}")
    settings = dict(result.settings)
    typer.echo(f"  resize: {settings.pop('resize', 'legacy')}, IS/KID protocol: {settings.pop('protocol', '?')}")
    for key, value in settings.items():
        typer.echo(f"  {key}: {value}")


def images_in(folder: Path | None) -> list[Path]:
    """The image files under a folder (none for no folder)."""
    from ganforge.data.images import IMAGE_SUFFIXES

    if folder is None or not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]


def load_data_section(path: Path) -> Any:
    """The data section of a config file (a whole ganforge config, or one with only `data:`), checked."""
    import yaml

    from ganforge.config import load_config, parse_config
    from ganforge.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"--data: no such file: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"--data: {path} is not valid YAML ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(raw, dict) or "data" not in raw and "base" not in raw:
        raise ConfigError(f"--data: {path} has no data section (e.g. data: {{kind: zip, path: DATA.zip}})")
    if "generator" in raw or "base" in raw:
        return load_config(path)[0].data
    # Only a data section: check it against the data registry as a full config would be.
    stand_in = {"data": raw["data"], "generator": {"kind": "mlp"}, "discriminator": {"kind": "mlp"}}
    return parse_config(stand_in, default_source=str(path)).data
