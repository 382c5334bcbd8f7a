#!/usr/bin/env python
"""Fine-tuning versus training from scratch on a small new data set: digits 5-9 after 0-4.

StyleGAN2-ADA's most used workflow in miniature. A DCGAN is trained on the digits 0-4 (an image
folder written from scikit-learn's digits); then a few hundred digits 5-9 are learned twice with
the same config and budget: from random weights, and starting from the 0-4 model (`init`), and
optionally with FreezeD (`--freeze-d N`). Every checkpoint is judged on what was asked for:

  target    share of samples a classifier labels, with probability >= 0.9, as one of 5-9
  fd        Frechet distance between the classifier's features of the samples and of the real 5-9
  classes   how many of 5-9 take at least 2% of the samples

The classifier is scripts/quality_digits.py's CNN where that script is present (fd needs it),
else scripts/class_accuracy.py's SVM on the 8x8 originals.

    python scripts/finetune_digits.py                       # a few CPU minutes
    python scripts/finetune_digits.py --pretrain-steps 3000 --steps 1500 --freeze-d 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

SCRIPTS = Path(__file__).resolve().parent
SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def write_folders(root: Path, resolution: int, per_class: int, seed: int) -> tuple[Path, Path]:
    """digits 0-4 (all) and 5-9 (`per_class` of each) as PNG folders with one sub-folder per
    digit, resized as ganforge's `digits` data set does."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from ganforge.data.images import resize_images

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255.0 / 16.0))).to(torch.uint8).unsqueeze(1)
    x = resize_images(x, resolution).squeeze(1).numpy()
    rng = np.random.default_rng(seed)
    folders = (root / "digits0-4", root / f"digits5-9-{per_class}each")
    for folder, classes, limit in ((folders[0], SOURCE, None), (folders[1], TARGET, per_class)):
        if folder.is_dir():
            continue
        for k in classes:
            index = np.flatnonzero(d.target == k)
            if limit is not None:
                index = rng.choice(index, size=limit, replace=False)
            (folder / str(k)).mkdir(parents=True)
            for i in index:
                Image.fromarray(x[i]).save(folder / str(k) / f"{i:04d}.png")
    return folders


def config(data: Path, out: Path, args: argparse.Namespace, steps: int, init: dict[str, Any] | None) -> dict:
    """One DCGAN run at `args.resolution`; `init`: the fine-tuning section."""
    every = max(1, steps // args.points)
    cfg = {
        "data": {"kind": "image_folder", "path": str(data), "resolution": args.resolution, "channels": 1,
                 "labels": "none", "in_memory": True, "num_workers": 0},
        "generator": {"kind": "dcgan", "latent_dim": 32, "base_width": args.width},
        "discriminator": {"kind": "dcgan", "base_width": args.width},
        "loss": {"kind": "non_saturating"},
        "optim": {"g": {"kind": "adam", "lr": 2.0e-4, "betas": [0.5, 0.999]},
                  "d": {"kind": "adam", "lr": 2.0e-4, "betas": [0.5, 0.999]}},
        "train": {"steps": steps, "batch_size": args.batch_size, "seed": args.seed, "device": "cpu",
                  "ema": {"decay": 0.99, "rampup": 0.05}},
        "log": {"every": every}, "samples": {"every": every, "num": 64},
        "checkpoint": {"every": every, "keep": args.points + 1},
        "output": {"dir": str(out)},
    }
    if init is not None:
        cfg["init"] = init
    return cfg


def train_run(cfg: dict, folder: Path) -> Path:
    """Train a config dict in-process (an existing finished run is reused); returns the run folder."""
    import yaml

    from ganforge.config import load_config
    from ganforge.run import RunDir
    from ganforge.training.loop import train

    run_path = Path(cfg["output"]["dir"])
    if (run_path / "checkpoints" / "index.json").is_file():
        return run_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_path.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    parsed, resolved = load_config(path)
    run = RunDir(parsed.output.dir)
    run.create(overwrite=True)
    start = time.perf_counter()
    try:
        train(parsed, resolved, run, progress=False)
    finally:
        run.release_lock()
    print(f"  trained {run_path.name}: {parsed.train.steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    return run_path


def make_scorer(resolution: int) -> tuple[str, Callable[[torch.Tensor], dict[str, float]]]:
    """(judge name, images (N, 1, H, W) in [-1, 1] -> target / fd / classes)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import quality_digits as q
    except ImportError:
        q = None
    if q is not None:
        judge = q.load_judge(resolution)
        x, y, _, _ = q.real_digits(resolution)
        real = q._features(judge.model, x[torch.isin(y, torch.tensor(TARGET))])
        mu, sigma = real.mean(0), np.cov(real, rowvar=False)

        @torch.no_grad()
        def score(images: torch.Tensor) -> dict[str, float]:
            images = q.to_8bit(images)
            p = torch.cat([judge.model(b) for b in images.split(500)]).double().softmax(1)
            feats = q._features(judge.model, images)
            fd = q.frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), mu, sigma)
            return figures(p.numpy(), fd)

        return f"quality_digits CNN ({judge.accuracy:.1%} on held-out real digits)", score

    import class_accuracy as c

    model, held_out, _ = c.train_classifier()

    def score_svm(images: torch.Tensor) -> dict[str, float]:
        return figures(model.predict_proba(c.shrink(images)), float("nan"))

    return f"class_accuracy SVM ({held_out:.1%} on held-out real digits)", score_svm


def figures(p: np.ndarray, fd: float) -> dict[str, float]:
    """target / fd / classes from class probabilities (N, 10)."""
    label, confident = p.argmax(1), p.max(1) >= 0.9
    in_target = np.isin(label, TARGET)
    share = np.bincount(label, minlength=10)[list(TARGET)] / len(label)
    return {"target": float((in_target & confident).mean()), "fd": fd, "classes": int((share >= 0.02).sum())}


def curve(run: Path, score: Callable[[torch.Tensor], dict[str, float]], num: int, start: Path | None = None
          ) -> dict[int, dict[str, float]]:
    """Judge figures of every checkpoint of a run (and of `start` as step 0)."""
    from ganforge.checkpoint import CheckpointIndex
    from ganforge.generation.drawing import draw, load_generator
    from ganforge.run import RunDir

    files = [(0, start)] if start is not None else []
    folder = RunDir(run, read_only=True).checkpoints
    files += [(e.step, folder / e.file) for e in CheckpointIndex(folder).entries]
    out = {}
    for step, file in files:
        images = draw(load_generator(file, device="cpu"), num, seed=1)
        out[step] = score(images)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/finetune_digits"))
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--width", type=int, default=32, help="DCGAN base_width")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pretrain-steps", type=int, default=1500, help="steps on digits 0-4")
    parser.add_argument("--steps", type=int, default=600, help="steps on digits 5-9, for each of the runs")
    parser.add_argument("--per-class", type=int, default=40, help="images of each of 5-9 (a few hundred in all)")
    parser.add_argument("--points", type=int, default=6, help="checkpoints along each curve")
    parser.add_argument("--freeze-d", type=int, default=0, help="also fine-tune with D's first N blocks frozen")
    parser.add_argument("--num", type=int, default=500, help="samples judged per checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    source, target = write_folders(args.out / "data", args.resolution, args.per_class, args.seed)
    print(f"data: {source} (0-4, all), {target} (5-9, {args.per_class} each)", flush=True)
    pretrained = train_run(config(source, args.out / f"pretrain-{args.pretrain_steps}", args, args.pretrain_steps,
                                  None), args.out)
    runs = {"scratch": None, "finetune": {"checkpoint": str(pretrained)}}
    if args.freeze_d:
        runs[f"finetune_freezed{args.freeze_d}"] = {"checkpoint": str(pretrained), "freeze_d_layers": args.freeze_d}
    # Run folders are named by their budget, so that a longer comparison reuses the pretrained run.
    folders = {name: train_run(config(target, args.out / f"{name}-{args.steps}", args, args.steps, init), args.out)
               for name, init in runs.items()}

    judge, score = make_scorer(args.resolution)
    print(f"judge: {judge}; {args.num} samples of the EMA generator per checkpoint")
    curves = {name: curve(folder, score, args.num, pretrained if runs[name] else None)
              for name, folder in folders.items()}
    real = score(real_target(args.resolution))
    print(f"real digits 5-9 (all of them): target {real['target']:.1%}  fd {real['fd']:.2f}  "
          f"classes {real['classes']}")
    steps = sorted({s for c in curves.values() for s in c})
    header = "step".rjust(6) + "".join(f" | {name:^26}" for name in curves)
    print(header + "\n" + "".ljust(6) + "".join(" | " + "target     fd    classes".center(26) for _ in curves))
    for step in steps:
        cells = []
        for c in curves.values():
            f = c.get(step)
            cells.append(f"{f['target']:>6.1%} {f['fd']:>8.2f} {f['classes']:>5}".center(26) if f else " " * 26)
        print(f"{step:>6}" + "".join(f" | {cell}" for cell in cells))


def real_target(resolution: int) -> torch.Tensor:
    """All real digits 5-9 at `resolution` in [-1, 1] (the figures' ceiling)."""
    from ganforge.data import to_unit_range
    from ganforge.data.images import digits

    x, y = digits(resolution).load()
    return to_unit_range(x[torch.isin(y, torch.tensor(TARGET))])


if __name__ == "__main__":
    main()
