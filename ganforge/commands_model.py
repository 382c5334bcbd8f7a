"""Commands that use a trained generator: `ganforge sample`, `interpolate`, `export` and `project`
(GAN inversion)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ganforge.commands_common import (
    CLASS_OPTION,
    JSON_OPTION,
    QUIET_OPTION,
    TRUNCATION_OPTION,
    refuse_overwriting,
    user_errors,
)
from ganforge.errors import GanforgeError

# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------


@user_errors
def sample(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file, a run folder (uses its latest checkpoint) or a "
                                                "folder `export --format safetensors` wrote."),
    num: int | None = typer.Option(None, "--num", "-n", min=1, help="How many samples (default 64)."),
    out: Path = typer.Option(Path("samples"), "--out", "-o",
                             help="Folder for image files; the PNG file with --grid; .npy for 2D data."),
    seed: int | None = typer.Option(None, "--seed", help="Noise seed of the whole draw (default 0): the same seed "
                                                         "gives the same samples."),
    seeds: str | None = typer.Option(None, "--seeds", metavar="LIST",
                                     help="One sample per seed, as seedNNNN.png, e.g. 0-35,100: each seed gives its "
                                          "own image whatever else is drawn (StyleGAN2-ADA's generate.py z)."),
    grid: bool = typer.Option(False, "--grid", help="Write one grid image instead of one file per sample."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw generator instead of its moving average."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Samples per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    class_index: int | None = CLASS_OPTION,
    truncation: float | None = TRUNCATION_OPTION,
    noise_mode: str | None = typer.Option(None, "--noise-mode",
                                          help="stylegan2's per-pixel noise: random (default with --seed; drawn from "
                                               "the seed), const (default with --seeds, as generate.py and the "
                                               "training grids) or none."),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate images (or 2D points) from a checkpoint; no config file needed."""
    import json

    from ganforge.generation import parse_seeds, truncation_for
    from ganforge.generation.drawing import load_generator, sample_batches, seed_batches
    from ganforge.generation.files import SampleWriter
    from ganforge.progress import Progress

    seed_list = parse_seeds(seeds) if seeds is not None else None
    if seed_list is not None and (num is not None or seed is not None):
        raise GanforgeError("--seeds names the samples: give it without --num and --seed")
    num = len(seed_list) if seed_list is not None else (num or 64)
    seed = seed or 0
    loaded = load_generator(checkpoint, use_ema=not no_ema, device=device)
    if seed_list is not None and not loaded.info.is_image:
        raise GanforgeError("--seeds writes an image per seed; this generator makes 2D points: use --num and --seed")
    trunc = truncation_for(loaded.G, truncation)
    # Drawn and written a batch at a time: --num is bounded by the disk, not by memory.
    writer = SampleWriter(loaded, out, num, grid, class_grid=class_index is None and seed_list is None,
                          seeds=seed_list)
    refuse_overwriting(writer.targets(loaded.files), loaded.files)
    if seed_list is not None:
        batches = seed_batches(loaded, seed_list, batch_size=batch_size, class_index=class_index,
                               truncation=truncation, noise_mode=noise_mode or "const")
    else:
        batches = sample_batches(loaded, num, seed=seed, batch_size=batch_size, class_index=class_index,
                                 truncation=truncation, noise_mode=noise_mode)
    writer.start()
    with Progress(num, desc="generating", unit="images", enabled=not quiet, leave=False) as bar:
        for batch in batches:
            writer.add(batch)
            bar.update(len(batch))
    written = writer.close()
    where = written[0] if written else out
    if as_json:
        files = written or [writer.file(i) for i in range(num)]
        typer.echo(json.dumps({"checkpoint": str(loaded.checkpoint), "step": loaded.step, "num": num,
                               "seed": None if seed_list is not None else seed, "seeds": seed_list,
                               "class": class_index, "truncation": truncation, "truncation_rule": trunc.describe(),
                               "files": [str(p) for p in files]}))
    else:
        what = f"{num} samples" if seed_list is None else f"{num} samples (one per seed)"
        typer.echo(f"wrote {what} from {loaded.checkpoint} (step {loaded.step}) to {where}")


# --------------------------------------------------------------------------------------------
# interpolate, export
# --------------------------------------------------------------------------------------------


@user_errors
def interpolate(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run folder."),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.gif or FILE.mp4 (animation; MP4 needs PyAV, "
                                                     "the video extra) or FILE.png (a strip per row)."),
    num_frames: int = typer.Option(60, "--num-frames", "-f", min=2,
                                   help="Frames (GIF, MP4) or steps per row (PNG)."),
    rows: int = typer.Option(4, "--rows", "-r", min=1, help="Rows of walks (conditional: one row per class)."),
    cols: int = typer.Option(4, "--cols", min=1, help="Walks per row in the animation."),
    keyframes: int = typer.Option(4, "--keyframes", min=2, help="Random points each animated walk loops through."),
    fps: float = typer.Option(20.0, "--fps", min=1.0, help="Animation frames per second."),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw generator instead of its moving average."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    class_index: int | None = CLASS_OPTION,
    truncation: float | None = TRUNCATION_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Walk between random latents (spherical interpolation) as an animated GIF or MP4, or a PNG strip."""
    import torch

    from ganforge.generation import class_labels, truncation_for
    from ganforge.generation.drawing import load_generator
    from ganforge.interpolate import interpolate as make_frames
    from ganforge.interpolate import save_gif, save_mp4, strip

    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4", ".png"):
        raise GanforgeError(f"--out {out}: end the name in .gif or .mp4 (animation) or .png (strip)")
    if suffix == ".mp4":
        from ganforge.interpolate import check_video

        check_video()  # before anything is generated
    loaded = load_generator(checkpoint, use_ema=not no_ema, device=device)
    class_labels(1, loaded.num_classes, class_index, torch.device("cpu"))  # --class names one of its classes
    truncation_for(loaded.G, truncation)
    refuse_overwriting([out], loaded.files)
    try:
        if suffix in (".gif", ".mp4"):
            frames = make_frames(loaded, num_frames, rows, cols, keyframes, seed, class_index, truncation,
                                 progress=not quiet)
            (save_gif if suffix == ".gif" else save_mp4)(frames, out, fps)
            typer.echo(f"wrote {out}: {len(frames)} frames of {frames[0].size[0]}x{frames[0].size[1]}")
        elif out.suffix.lower() == ".png":
            if not loaded.info.is_image:
                raise GanforgeError("interpolate makes images; this generator makes 2D points")
            out.parent.mkdir(parents=True, exist_ok=True)
            image = strip(loaded, num_frames, rows, seed, class_index, truncation)
            image.save(out)
            typer.echo(f"wrote {out}: {rows} rows of {num_frames} steps")
    except OSError as e:
        raise GanforgeError(f"cannot write {out} ({e.strerror or e})") from None


@user_errors
def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run folder."),
    fmt: str = typer.Option(..., "--format", help="safetensors (a folder to share: weights, config.json, model "
                                                  "card), torchscript or onnx."),
    out: Path = typer.Option(..., "--out", "-o", help="The folder (safetensors) or file (.pt for TorchScript, "
                                                      ".onnx) to write."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Export the raw generator instead of its moving average."),
    truncation: float | None = TRUNCATION_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="safetensors: write into a folder that is not empty, "
                                                              "replacing the export's files there."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the generator to share (safetensors and a model card) or to run without ganforge (TorchScript, ONNX)."""
    import json

    from ganforge.generation.drawing import load_generator

    if fmt not in ("safetensors", "torchscript", "onnx"):
        raise GanforgeError(f"--format {fmt}: use safetensors, torchscript or onnx")
    if fmt == "safetensors":
        from ganforge.model_export import check_target, export_model_folder
        from ganforge.model_folder import FILES, is_model_folder

        if truncation is not None:
            raise GanforgeError("--truncation: a safetensors export holds the weights alone; truncate when sampling "
                                "(ganforge sample DIR --truncation ...)")
        if is_model_folder(checkpoint):
            raise GanforgeError(f"{checkpoint} is already a safetensors export; export from the run or checkpoint")
        check_target(out, overwrite)  # before the checkpoint is read
        loaded = load_generator(checkpoint, use_ema=not no_ema, device="cpu")
        refuse_overwriting([out / name for name in FILES], loaded.files)
        try:
            meta = export_model_folder(loaded, out, "G" if no_ema else "G_ema", overwrite)
        except OSError as e:
            raise GanforgeError(f"cannot write into {out} ({e.strerror or e})") from None
        if as_json:
            typer.echo(json.dumps({"folder": str(out), "files": [str(out / n) for n in FILES],
                                   **{k: meta[k] for k in ("network", "step", "latent_dim", "num_classes",
                                                           "output_shape", "output_range")}}))
            return
        size = (out / FILES[0]).stat().st_size / 2**20
        typer.echo(f"wrote {out}: {FILES[0]} ({meta['network']}, step {meta['step']}, {size:.1f} MiB), "
                   f"{', '.join(FILES[1:])}; sample from it with `ganforge sample {out}`")
        return
    from ganforge.export import export as write

    loaded = load_generator(checkpoint, use_ema=not no_ema, device="cpu")
    refuse_overwriting([out], loaded.files)
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
# project
# --------------------------------------------------------------------------------------------


@user_errors
def project_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file or a run folder (uses its latest checkpoint)."),
    target: Path = typer.Option(..., "--target", "-t", help="The image to project (cropped to a square, resized)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the latent, the reconstruction and the progress."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimisation steps."),
    lpips: Path | None = typer.Option(None, "--lpips", metavar="FILE",
                                      help="LPIPS-VGG linear weights (vgg.pth), with vgg16-397923af.pth beside it or "
                                           "in the torch hub cache; default: pixels + the run's D features."),
    d_weight: float = typer.Option(1.0, "--d-weight", min=0.0,
                                   help="Weight of the D-feature distance next to the pixel MSE (without --lpips)."),
    prior_weight: float = typer.Option(1e-3, "--prior-weight", min=0.0,
                                       help="Non-stylegan2 generators: weight of the prior that keeps |z|^2 typical."),
    class_index: int | None = typer.Option(None, "--class", help="The target's class (conditional generators)."),
    seed: int = typer.Option(303, "--seed", help="Seed of the noise maps and the latent jitter."),
    frames: int = typer.Option(8, "--frames", min=2, help="Reconstructions along the way in progress.png."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Project into the raw generator instead of its average."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Find the latent from which a run's generator redraws an image (GAN inversion)."""
    import numpy as np
    import torch

    from ganforge.generation import class_labels
    from ganforge.imaging import enlarge, grid, to_pil
    from ganforge.project import load_lpips, load_networks, load_target, lpips_files, project

    loaded, D = load_networks(checkpoint, use_ema=not no_ema, device=device)
    if not loaded.info.is_image:
        raise GanforgeError("project works on image generators; this run makes 2D points")
    files = {"latent": out / "latent.npy", "reconstruction": out / "projection.png", "target": out / "target.png",
             "progress": out / "progress.png", "summary": out / "projection.json", "noise": out / "noise.npz"}
    # Refused before the optimisation: none of these may be a file this command reads.
    if out.exists() and not out.is_dir():
        raise GanforgeError(f"--out {out} is a file; give a folder for the projection's files")
    refuse_overwriting(files.values(), [target, *loaded.files, *lpips_files(lpips)])
    channels, resolution = loaded.info.shape[0], loaded.info.shape[1]
    image = load_target(target, channels, resolution)
    perceptual = load_lpips(lpips) if lpips is not None else None
    labels = class_labels(1, loaded.num_classes, class_index, torch.device("cpu")) if class_index is not None \
        else None
    result = project(loaded.G, D, image, steps=steps, labels=labels, lpips=perceptual, d_weight=d_weight,
                     prior_weight=prior_weight,
                     num_frames=frames, seed=seed, progress=not quiet)
    if not result.noise:
        del files["noise"]
    summary = {"checkpoint": str(loaded.checkpoint), "step": loaded.step, "target": str(target),
               "space": result.space, "latent_shape": list(result.latent.shape), "steps": steps,
               "distance": result.distance, "class": class_index, "seed": seed,
               "pixel_mse_start": result.initial_error, "pixel_mse_end": result.final_error,
               "loss_end": result.losses[-1], "files": {k: str(v) for k, v in files.items()}}
    try:
        out.mkdir(parents=True, exist_ok=True)
        np.save(files["latent"], result.latent.numpy())
        if result.noise:
            np.savez(files["noise"], **{k: v.numpy() for k, v in result.noise.items()})
        to_pil(result.image).save(files["reconstruction"])
        to_pil(image).save(files["target"])
        strip = torch.stack([image, *result.frames])  # the target, then the reconstruction over the steps
        enlarge(grid(strip, nrow=len(strip)), min_cell=64, cell=resolution).save(files["progress"])
        files["summary"].write_text(json.dumps(summary, indent=1) + "\n")
    except OSError as e:
        raise GanforgeError(f"cannot write into {out} ({e.strerror or e})") from None
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    typer.echo(f"projected {target} into {result.space} of {loaded.checkpoint} (step {loaded.step}) in {steps} steps; "
               f"distance: {result.distance}")
    typer.echo(f"  pixel MSE: {result.initial_error:.4g} at the start, {result.final_error:.4g} at the end")
    for name, path in files.items():
        typer.echo(f"  {name + ':':<16}{path}")
