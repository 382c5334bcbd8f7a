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

    from tqdm import tqdm

    from ganforge.sample import SampleWriter, load_generator, sample_batches

    loaded = load_generator(checkpoint, use_ema=not no_ema, device=device)
    # Drawn and written a batch at a time: --num is bounded by the disk, not by memory.
    writer = SampleWriter(loaded, out, num, grid, class_grid=class_index is None)
    refuse_overwriting(writer.targets(loaded.files), loaded.files)
    writer.start()
    with tqdm(total=num, unit="img", desc="generating", disable=quiet, leave=False) as bar:
        for batch in sample_batches(loaded, num, seed=seed, batch_size=batch_size, class_index=class_index,
                                    truncation=truncation, noise_mode=noise_mode):
            writer.add(batch)
            bar.update(len(batch))
    written = writer.close()
    where = written[0] if written else out
    if as_json:
        files = written or [writer.file(i) for i in range(num)]
        typer.echo(json.dumps({"checkpoint": str(loaded.checkpoint), "step": loaded.step, "num": num, "seed": seed,
                               "files": [str(p) for p in files]}))
    else:
        typer.echo(f"wrote {num} samples from {loaded.checkpoint} (step {loaded.step}) to {where}")


# --------------------------------------------------------------------------------------------
# interpolate, export
# --------------------------------------------------------------------------------------------


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
    refuse_overwriting([out], loaded.files)
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

    from ganforge.imaging import enlarge, grid, to_pil
    from ganforge.project import load_lpips, load_networks, load_target, lpips_files, project
    from ganforge.sample import class_labels

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
