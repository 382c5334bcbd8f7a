"""Commands that work with a trained model's networks: `ganforge project` (GAN inversion)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ganforge.errors import GanforgeError


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
    from ganforge.project import load_lpips, load_networks, load_target, project
    from ganforge.sample import class_labels

    loaded, D = load_networks(checkpoint, use_ema=not no_ema, device=device)
    if not loaded.info.is_image:
        raise GanforgeError("project works on image generators; this run makes 2D points")
    channels, resolution = loaded.info.shape[0], loaded.info.shape[1]
    image = load_target(target, channels, resolution)
    perceptual = load_lpips(lpips) if lpips is not None else None
    labels = class_labels(1, loaded.num_classes, class_index, torch.device("cpu")) if class_index is not None \
        else None
    result = project(loaded.G, D, image, steps=steps, labels=labels, lpips=perceptual, d_weight=d_weight,
                     prior_weight=prior_weight,
                     num_frames=frames, seed=seed, progress=not quiet)
    files = {"latent": out / "latent.npy", "reconstruction": out / "projection.png", "target": out / "target.png",
             "progress": out / "progress.png", "summary": out / "projection.json"}
    if result.noise:
        files["noise"] = out / "noise.npz"
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


def register(app: typer.Typer) -> None:
    """Add the model commands to the `ganforge` app."""
    from ganforge.cli import user_errors  # here, not at the top: cli imports this module

    app.command("project")(user_errors(project_command))
