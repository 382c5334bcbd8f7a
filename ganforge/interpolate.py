"""Walks through the latent space: spherical interpolation between random noise vectors."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ganforge.errors import GanforgeError
from ganforge.generation import class_labels, generate, sample_noise, truncation_for
from ganforge.generation.drawing import LoadedGenerator
from ganforge.imaging import enlarge, grid
from ganforge.progress import Progress


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between rows of a and b at fractions t (N,): Gaussian noise
    keeps its typical norm along the way, which a straight line through the middle does not."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7)).unsqueeze(-1)
    t = t.unsqueeze(-1)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def walk(keyframes: Tensor, num_frames: int, loop: bool) -> Tensor:
    """(K, D) keyframes -> (num_frames, D) points along consecutive slerps (closing the loop)."""
    stops = torch.cat([keyframes, keyframes[:1]]) if loop else keyframes
    segments = len(stops) - 1
    position = torch.linspace(0, segments, num_frames + 1 if loop else num_frames)[: num_frames]
    index = position.floor().long().clamp(max=segments - 1)
    return slerp(stops[index], stops[index + 1], position - index)


def interpolate(loaded: LoadedGenerator, num_frames: int, rows: int, cols: int, keyframes: int, seed: int,
                class_index: int | None = None, truncation: float | None = None, progress: bool = False
                ) -> list[Image.Image]:
    """Frames of a grid of walks. For conditional generators each row is one class (all
    classes, or --class alone); otherwise each cell is an independent walk."""
    if not loaded.info.is_image:
        raise GanforgeError("interpolate makes images; this generator makes 2D points")
    if num_frames < 2:
        raise GanforgeError("--num-frames: at least 2")
    trunc = truncation_for(loaded.G, truncation)
    extra = trunc.g_kwargs
    device = next(loaded.G.parameters()).device
    classes = loaded.num_classes
    if classes and class_index is None:
        rows = classes  # one row per class
    cells = rows * cols
    # One looping walk per cell through `keyframes` random points (of the truncated normal, where
    # G is truncated in z: the slerp between two of them stays close to their norm).
    key = sample_noise(cells * keyframes, loaded.G.latent_dim, seed, torch.device("cpu"),
                       trunc.threshold).view(cells, keyframes, -1)
    paths = torch.stack([walk(key[c], num_frames, loop=True) for c in range(cells)], dim=1)  # (frames, cells, D)
    if classes:
        per_cell = class_labels(cells, classes, class_index, torch.device("cpu"))
        if class_index is None:
            per_cell = torch.arange(rows).repeat_interleave(cols)  # row r shows class r
        labels = per_cell.to(device)
    else:
        labels = None
    frames = []
    with Progress(num_frames, desc="interpolating", unit="frames", enabled=progress, leave=False) as bar:
        for f in range(num_frames):
            images = generate(loaded.G, paths[f].to(device), labels, progress=False, noise_mode="const", **extra)
            frames.append(enlarge(grid(images, nrow=cols), 96, images.shape[-1]))
            bar.update()
    return frames


def strip(loaded: LoadedGenerator, num_frames: int, rows: int, seed: int, class_index: int | None = None,
          truncation: float | None = None) -> Image.Image:
    """One row per walk from one random point to another, left to right in `num_frames` steps."""
    trunc = truncation_for(loaded.G, truncation)
    extra = trunc.g_kwargs
    device = next(loaded.G.parameters()).device
    ends = sample_noise(rows * 2, loaded.G.latent_dim, seed, torch.device("cpu"), trunc.threshold).view(rows, 2, -1)
    z = torch.cat([walk(ends[r], num_frames, loop=False) for r in range(rows)])
    classes = loaded.num_classes
    labels = None
    if classes:
        labels = (class_labels(len(z), classes, class_index, device) if class_index is not None
                  else (torch.arange(rows) % classes).repeat_interleave(num_frames).to(device))
    images = generate(loaded.G, z.to(device), labels, noise_mode="const", **extra)  # frames differ by z alone
    return enlarge(grid(images, nrow=num_frames), 64, images.shape[-1])


def save_gif(frames: list[Image.Image], out: Path, fps: float) -> None:
    """An endlessly looping animated GIF."""
    out.parent.mkdir(parents=True, exist_ok=True)
    first, *rest = [f.convert("RGB") for f in frames]
    first.save(out, save_all=True, append_images=rest, duration=max(20, round(1000 / fps)), loop=0,
               optimize=False, disposal=1)


def check_video() -> None:
    """A one-line error, before anything is generated, where MP4 cannot be written."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise GanforgeError("--out .mp4 needs PyAV (its wheels carry FFmpeg): pip install 'ganforge[video]'") from None


def save_mp4(frames: list[Image.Image], out: Path, fps: float) -> None:
    """An H.264 MP4 (yuv420p, which every player reads) through PyAV, whose wheels carry FFmpeg;
    frames are padded to even sizes, as the codec needs. Written to a temporary file first."""
    check_video()
    from fractions import Fraction

    import av
    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    width, height = frames[0].size
    even = (width + width % 2, height + height % 2)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                          rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = even[0], even[1], "yuv420p"
            for frame in frames:
                canvas = Image.new("RGB", even)
                canvas.paste(frame.convert("RGB"))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")))
            container.mux(stream.encode())  # flush the encoder
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
