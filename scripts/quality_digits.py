#!/usr/bin/env python
"""Digits generators judged by a small CNN trained on real digits at the training resolution.

The judge is a classifier trained once on 60% of scikit-learn's 1,797 digits (stratified split,
seed 0), prepared exactly as ganforge's `digits` data set prepares them (8x8 uint8, resized
bilinearly with antialiasing, scaled to [-1, 1]), and cached in ~/.cache/ganforge/judge/ by
resolution. For a batch of images it reports:

  classes     how many of the 10 classes the classifier's labels cover
  confident   share of samples labelled with probability >= 0.9 (recognisable digits)
  is          Inception-Score-style exp(E KL(p(y|x) || p(y))) on the classifier's softmax (at most 10)
  fd          Frechet distance between the classifier's 64-d penultimate features of the samples
              and of the real training split (the classifier's own 60%)
  agree       conditional generators only: share labelled as the class that was asked for

and the same figures for the held-out 40% of real digits (719 images: the floor a perfect
generator would reach). Generated images are rounded to 8 bits first, as saved PNGs are, and
by default as many are drawn as there are held-out digits, so that FD is comparable with the floor.

    python scripts/quality_digits.py runs/quickstart                 # EMA and raw G of the latest checkpoint
    python scripts/quality_digits.py runs/quickstart/checkpoints/step-00001000.pt --no-ema --json
    python scripts/quality_digits.py some/folder/of/pngs --json

From Python: `score_images(images)` -> dict, `score_run(path)`, `real_floor(resolution)`.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

VERSION = 1  # bump when the classifier, its data or its training change: old caches are then ignored
CONFIDENT = 0.9
HELD_OUT = 0.4
FEATURES = 64


def cache_dir() -> Path:
    """Where trained judges are kept (GANFORGE_JUDGE_CACHE overrides ~/.cache/ganforge/judge)."""
    return Path(os.environ.get("GANFORGE_JUDGE_CACHE", Path.home() / ".cache" / "ganforge" / "judge"))


# --------------------------------------------------------------------------------------------
# Real data and the classifier
# --------------------------------------------------------------------------------------------


def real_digits(resolution: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images, train labels, held-out images, held-out labels): ganforge's digits at
    `resolution` in [-1, 1], split 60/40 stratified with seed 0."""
    from sklearn.model_selection import train_test_split

    from ganforge.data import to_unit_range
    from ganforge.data.images import digits

    x, y = digits(resolution).load()
    index = np.arange(len(y))
    train, held = train_test_split(index, test_size=HELD_OUT, random_state=0, stratify=y.numpy())
    train, held = torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(held))
    x = to_unit_range(x)
    return x[train], y[train], x[held], y[held]


class DigitJudge(nn.Module):
    """Two conv stages and two linear layers; `features` gives the 64-d penultimate activations."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 16, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (N, 64)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def shift(x: Tensor, gen: torch.Generator, max_shift: int) -> Tensor:
    """Translate each image by up to `max_shift` pixels (edge padding), so the judge tolerates
    the small offsets generators make."""
    h, w = x.shape[-2:]
    padded = F.pad(x, [max_shift] * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (len(x), 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


def train_judge(resolution: int, epochs: int = 40, seed: int = 0) -> tuple[DigitJudge, float]:
    """Train the classifier on the 60% split; returns it (eval mode) and its held-out accuracy."""
    x, y, x_held, y_held = real_digits(resolution)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitJudge()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    max_shift = max(1, resolution // 16)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=gen).split(64):
            loss = F.cross_entropy(model(shift(x[batch], gen, max_shift)), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_held).argmax(1) == y_held).float().mean())
    return model, accuracy


@dataclass
class Judge:
    """A trained classifier and the real-data statistics it is compared with."""

    model: DigitJudge
    resolution: int
    accuracy: float  # on the held-out real digits
    mu: np.ndarray  # feature mean of the training split
    sigma: np.ndarray  # feature covariance of the training split
    held_out: Tensor  # the held-out real images
    held_out_labels: Tensor


_JUDGES: dict[tuple[int, str], Judge] = {}


def load_judge(resolution: int, cache: Path | None = None) -> Judge:
    """The judge for `resolution`: from the cache, or trained (a few CPU seconds to a minute) and cached."""
    cache = cache or cache_dir()
    key = (resolution, str(cache))
    if key in _JUDGES:
        return _JUDGES[key]
    file = cache / f"digits-{resolution}px-v{VERSION}.pt"
    model = DigitJudge()
    payload = torch.load(file, weights_only=True) if file.is_file() else None
    if payload is not None and payload.get("version") == VERSION:
        model.load_state_dict(payload["state"])
        model.eval()
        accuracy = float(payload["accuracy"])
    else:
        with torch.random.fork_rng():
            model, accuracy = train_judge(resolution)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".tmp-{os.getpid()}")
        torch.save({"version": VERSION, "resolution": resolution, "accuracy": accuracy,
                    "state": model.state_dict()}, tmp)
        tmp.replace(file)
    x, _, x_held, y_held = real_digits(resolution)
    feats = _features(model, x)
    judge = Judge(model.requires_grad_(False), resolution, accuracy, feats.mean(0), np.cov(feats, rowvar=False),
                  x_held, y_held)
    _JUDGES[key] = judge
    return judge


@torch.no_grad()
def _features(model: DigitJudge, images: Tensor) -> np.ndarray:
    return torch.cat([model.features(b) for b in images.split(500)]).double().numpy()


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the square root via the eigenvalues of
    S1^(1/2) S2 S1^(1/2) (symmetric, so no complex parts)."""
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.linalg.eigvalsh(root1 @ sigma2 @ root1).clip(min=0)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(cross).sum())


def to_8bit(images: Tensor) -> Tensor:
    """Round [-1, 1] images to the 256 levels a PNG keeps."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


@torch.no_grad()
def score_images(images: Tensor, labels: Tensor | None = None, judge: Judge | None = None) -> dict[str, Any]:
    """Judge figures of images (N, 1, H, W) in [-1, 1]; `labels`: the classes asked of a
    conditional generator (adds `agree`)."""
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"expected square grey images (N, 1, H, W), got {tuple(images.shape)}")
    judge = judge or load_judge(images.shape[-1])
    images = to_8bit(images.cpu())
    logits = torch.cat([judge.model(b) for b in images.split(500)])
    p = logits.double().softmax(1)
    predicted = p.argmax(1)
    counts = torch.bincount(predicted, minlength=10)
    marginal = p.mean(0, keepdim=True)
    kl = (p * (p.clamp_min(1e-12).log() - marginal.log())).sum(1).mean()
    feats = _features(judge.model, images)
    figures: dict[str, Any] = {
        "num": len(images),
        "classes": int((counts > 0).sum()),
        "confident": float((p.max(1).values >= CONFIDENT).double().mean()),
        "is": float(kl.exp()),
        "fd": frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), judge.mu, judge.sigma),
        "class_counts": counts.tolist(),
    }
    if labels is not None:
        figures["agree"] = float((predicted == labels.cpu()).double().mean())
    return figures


def real_floor(resolution: int, judge: Judge | None = None) -> dict[str, Any]:
    """The figures of the held-out real digits (what a perfect generator would score), plus the
    judge's accuracy on them."""
    judge = judge or load_judge(resolution)
    return {**score_images(judge.held_out, judge=judge), "judge_accuracy": judge.accuracy}


def default_num(resolution: int) -> int:
    """As many samples as held-out real digits, so FD compares with the floor."""
    return len(load_judge(resolution).held_out)


def generate_from(path: str | Path, use_ema: bool = True, num: int | None = None, seed: int = 0,
                  standing: bool = False) -> tuple[Tensor, Tensor | None, int]:
    """(samples, the labels asked for or None, step) from a checkpoint file or run folder,
    through ganforge's own sampling (conditional generators cycle through the classes).
    `standing`: first recompute G_ema's BatchNorm statistics as training does before it writes a
    checkpoint (`train.ema.standing_stats`), for checkpoints written before ganforge did."""
    from ganforge.config import parse_config
    from ganforge.generation import class_labels, run_standing_stats, seeded_global_rng
    from ganforge.generation.drawing import draw, load_generator

    loaded = load_generator(path, use_ema=use_ema, device="cpu")
    if standing and use_ema:
        run_standing_stats(loaded.G, parse_config(loaded.config))
    num = num or default_num(loaded.info.shape[-1])
    with seeded_global_rng(seed, torch.device("cpu")):  # noise drawn inside G (stylegan2) repeats too
        images = draw(loaded, num, seed=seed)
    labels = class_labels(num, loaded.num_classes, None, torch.device("cpu"))
    return images, labels, loaded.step


def score_run(path: str | Path, use_ema: bool = True, num: int | None = None, seed: int = 0,
              standing: bool = False) -> dict[str, Any]:
    """Judge figures of a checkpoint (or a run folder's latest), EMA or raw G, with its step."""
    images, labels, step = generate_from(path, use_ema, num, seed, standing)
    return {"step": step, "ema": use_ema, "resolution": images.shape[-1], **score_images(images, labels)}


def read_folder(folder: str | Path) -> Tensor:
    """Every PNG/JPEG in a folder (not recursive) as grey images in [-1, 1]."""
    from PIL import Image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not files:
        raise SystemExit(f"error: {folder}: no .png or .jpg images")
    arrays = [np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in files]
    if len({a.shape for a in arrays}) != 1:
        raise SystemExit(f"error: {folder}: images of different sizes")
    return torch.from_numpy(np.stack(arrays)).unsqueeze(1) / 127.5 - 1


def describe(name: str, f: dict[str, Any]) -> str:
    """One table row."""
    agree = f"  agree {f['agree']:.1%}" if "agree" in f else ""
    return (f"  {name:<14} classes {f['classes']:>2}/10  confident {f['confident']:6.1%}  IS {f['is']:5.2f}  "
            f"FD {f['fd']:7.2f}{agree}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run folder, a checkpoint file, or a folder of PNG images")
    parser.add_argument("--no-ema", action="store_true", help="raw G only (default: the EMA of G, then raw G)")
    parser.add_argument("--num", type=int, help="samples (default: as many as held-out real digits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--standing-stats", action="store_true",
                        help="recompute the EMA's BatchNorm statistics as training now does before a checkpoint "
                             "(for checkpoints written before it did)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = Path(args.path)
    from ganforge.run import RunDir

    is_run = (path.is_dir() and RunDir(path, read_only=True).checkpoints.is_dir()) or path.suffix == ".pt"
    results: dict[str, Any] = {}
    if is_run:
        for use_ema in ([False] if args.no_ema else [True, False]):
            results["ema" if use_ema else "raw"] = score_run(path, use_ema, args.num, args.seed, args.standing_stats)
        resolution = next(iter(results.values()))["resolution"]
    else:
        images = read_folder(path)
        results["images"] = score_images(images)
        resolution = images.shape[-1]
    results["real"] = real_floor(resolution)
    if args.json:
        print(json.dumps(results))
        return
    floor = results["real"]
    print(f"judge: CNN on {resolution}x{resolution} real digits, {floor['judge_accuracy']:.1%} accurate on "
          f"{floor['num']} held-out digits")
    step = next((f"step {r['step']}, " for r in results.values() if "step" in r), "")
    print(f"{path} ({step}{next(iter(results.values()))['num']} samples, seed {args.seed}):")
    for name, figures in results.items():
        label = {"ema": "EMA of G", "raw": "raw G", "images": "images", "real": "real (floor)"}[name]
        extra = f"   {figures['fd'] / floor['fd']:.2f}x floor" if name != "real" and floor["fd"] > 0 else ""
        print(describe(label, figures) + extra)


if __name__ == "__main__":
    main()
