#!/usr/bin/env python
"""The sweeps behind the shipped digits recipes' settings, rerunnable.

Each sweep trains one config with a list of overrides per variant, for each seed, through
`ganforge train` (a fresh process, one CPU thread, so two jobs share a 2-core machine fairly),
and scores the EMA of G and raw G at fixed step counts with scripts/quality_digits.py. Quality
is compared at fixed steps, not fixed seconds, so a busy machine does not change the answer;
variants that change a step's cost (widths, batch) say how many steps they get in the same time.
Results are appended to a JSON-lines file, one line per (sweep, variant, seed); finished lines
are skipped on a rerun, so a sweep can be stopped and continued. With --extend, a job whose
folder holds the same run at fewer steps continues it with `ganforge train --resume` (exact resume:
the same run as one trained from scratch to the new length), so a recipe can be checked at 4x
its length for 3/4 of the cost.

    python scripts/sweep_digits.py --list
    python scripts/sweep_digits.py quickstart --variants shipped lr5e-4 --seeds 0 1 2 --jobs 2
    python scripts/sweep_digits.py quickstart --table          # mean (min-max) over seeds per variant and step
    python scripts/sweep_digits.py quickstart --speed 400      # steps/s of each variant (on an idle machine)
    python scripts/sweep_digits.py stylegan2_digits --variants shipped --points 3000 6000 9000 12000 --extend
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from ganforge.logrecord import IMAGES_SEEN, IMG_PER_S, STEP, is_training_record  # noqa: E402
from ganforge.run import RunDir  # noqa: E402
from ganforge.runinfo import read_log  # noqa: E402


@dataclass(frozen=True)
class Sweep:
    """One config, the steps at which it is scored, and named lists of overrides."""

    config: str
    points: tuple[int, ...]
    variants: dict[str, list[str]] = field(default_factory=dict)


def lr(g: float, d: float | None = None) -> list[str]:
    """Overrides for both learning rates."""
    return [f"optim.g.lr={g}", f"optim.d.lr={d if d is not None else g}"]


def betas(b1: float, b2: float) -> list[str]:
    """Overrides for both optimizers' Adam betas."""
    return [f"optim.g.betas=[{b1},{b2}]", f"optim.d.betas=[{b1},{b2}]"]


TRANSLATE = "regularizers=[{kind: diffaugment, policy: [translation]}]"


def regs(*items: str) -> list[str]:
    """One override for the regularizer list."""
    return [f"regularizers=[{', '.join(items)}]"]


def r1(weight: float, every: int = 16) -> str:
    """Lazy R1 on real data."""
    return f"{{kind: r1, weight: {weight}, every: {every}}}"


def decay(start: float) -> list[str]:
    """Both learning rates constant until `start` x the run, then linearly down to 0 at its end."""
    return [f"schedule.{n}={{kind: linear_decay, start: {start}}}" for n in "gd"]


# Both learning rates decayed linearly to 0 over the run, as the CIFAR-10 recipes do.
LINEAR_DECAY = decay(0.0)
AUG = "{kind: diffaugment, policy: [translation]}"
SMOOTH = "{kind: label_smoothing, real_target: 0.9}"

# The quickstart's sweep ran on the recipe it shipped with before (DCGAN's Adam 2e-4, betas
# (0.5, 0.999), no regularizer): every variant but "shipped" starts from that recipe, so its name
# and figures keep their meaning now that configs/quickstart.yaml is the winner ("shipped" =
# "old" + "r1,lr1e-3,betas0.5/0.99" + channels_last; the first 3 seeds of "shipped" ran without
# channels_last, which came later and changes the speed, not the quality per step). 1,250 steps
# were the old recipe's 2 idle minutes; the shipped one is scored at 300 to 6,000 steps (4x its
# 1,500). Checkpoints are written every gcd(points) steps.
# The DCGAN networks with a bias on G's output layer and D's first and last layers, and the G step
# on fresh noise: ganforge's DCGAN before it followed pytorch/examples (issue 29). Every quickstart
# variant measured before then ran with these; OLD keeps them, so its variants keep their meaning.
DCGAN_BEFORE_29 = ["generator.bias=true", "discriminator.bias=true", "train.g_noise=fresh"]
OLD = ["regularizers=[]", "train.channels_last=false", *DCGAN_BEFORE_29,
       *[f"optim.{n}.{k}={v}" for n in "gd" for k, v in (("lr", 2e-4), ("betas", "[0.5,0.999]"))]]
# The ResNet G/D with PyTorch's default initialisation (and, for SNGAN, a bias on D's output):
# ganforge's `resnet` before it followed its references (issue 29).
RESNET_BEFORE_29 = ["generator.init=default", "discriminator.init=default"]
SNGAN_BEFORE_29 = [*RESNET_BEFORE_29, "discriminator.output_bias=true"]
# The references' initialisation without D's output bias (resnet's defaults since issue 29).
GLOROT = ["generator.init=glorot", "discriminator.init=glorot", "discriminator.output_bias=false"]
SWEEPS: dict[str, Sweep] = {
    "quickstart": Sweep("configs/quickstart.yaml", (300, 1000, 1500, 3000, 6000), {
        "shipped": [],
        # Issue 29: the quickstart as shipped before it (DCGAN with biases, fresh G noise), and the
        # two changes apart: pytorch/examples' networks (no biases) with fresh noise, or with the D
        # step's noise reused as pytorch/examples' G step does.
        "shipped_before_29": DCGAN_BEFORE_29,
        "no_biases,fresh_noise": ["generator.bias=false", "discriminator.bias=false", "train.g_noise=fresh"],
        "no_biases,d_step_noise": ["generator.bias=false", "discriminator.bias=false", "train.g_noise=d_step"],
        # Without biases G's output cannot reach the digits' black background in 1,500 steps (FD 377 and
        # 399 against 9.7 for seed 0): the quickstart keeps them, and these two tell which matters.
        "biases,d_step_noise": ["generator.bias=true", "discriminator.bias=true", "train.g_noise=d_step"],
        "g_bias,d_step_noise": ["generator.bias=true", "discriminator.bias=false", "train.g_noise=d_step"],
        # Issue 29: lazy R1 in StyleGAN2-ADA's own phase (its own Adam step, D's Adam rescaled by 16/17)
        # against the folded step the quickstart was measured with.
        "lazy_separate": ["train.lazy=separate"],
        "old": OLD,
        "lr5e-4": OLD + lr(5e-4),
        "lr1e-3": OLD + lr(1e-3),
        "ttur1e-4/4e-4": OLD + lr(1e-4, 4e-4),
        "betas0/0.99": OLD + betas(0.0, 0.99),
        "lr5e-4,betas0/0.99": OLD + lr(5e-4) + betas(0.0, 0.99),
        "translation": OLD + [TRANSLATE],
        "lr5e-4,translation": OLD + lr(5e-4) + [TRANSLATE],
        "r1": OLD + ["regularizers=[{kind: r1, weight: 0.1, every: 16}]"],
        "hinge": OLD + ["loss.kind=hinge"],
        # LeCam as ganforge had it before issue 29: decay 0.99, from the start (now 0.9 after 1,000 steps).
        "lecam": OLD + ["regularizers=[{kind: lecam, weight: 0.3, decay: 0.99, start: 0}]"],
        "label_smoothing": OLD + ["regularizers=[{kind: label_smoothing, real_target: 0.9}]"],
        "d_width16": OLD + ["discriminator.base_width=16"],
        "batch32": OLD + ["train.batch_size=32"],
        "res16": OLD + ["data.resolution=16"],
        "r1w1": OLD + regs(r1(1.0)),
        "r1,lr5e-4": OLD + lr(5e-4) + regs(r1(0.1)),
        "r1,translation": OLD + regs(r1(0.1), AUG),
        "r1,lr5e-4,translation": OLD + lr(5e-4) + regs(r1(0.1), AUG),
        "r1w1,lr5e-4,translation": OLD + lr(5e-4) + regs(r1(1.0), AUG),
        "r1,lr1e-3,translation": OLD + lr(1e-3) + regs(r1(0.1), AUG),
        "r1w1,lr5e-4": OLD + lr(5e-4) + regs(r1(1.0)),
        "r1,lr5e-4,betas0.5/0.99": OLD + lr(5e-4) + regs(r1(0.1)) + betas(0.5, 0.99),
        "r1,lr5e-4,d_norm_none": OLD + lr(5e-4) + regs(r1(0.1)) + ["discriminator.norm=none"],
        # Around the best of the first screen (r1 0.1, lr 5e-4, betas 0.5/0.99):
        "r1,lr1e-3,betas0.5/0.99": OLD + lr(1e-3) + regs(r1(0.1)) + betas(0.5, 0.99),
        "r1g0.3,lr5e-4,betas0.5/0.99": OLD + lr(5e-4) + regs(r1(0.3)) + betas(0.5, 0.99),
        "r1,lr5e-4,betas0.5/0.99,translation": OLD + lr(5e-4) + regs(r1(0.1), AUG) + betas(0.5, 0.99),
        "r1,lr5e-4,betas0.5/0.99,smoothing": OLD + lr(5e-4) + regs(r1(0.1), SMOOTH) + betas(0.5, 0.99),
        "r1,lr5e-4/1e-3,betas0.5/0.99": OLD + lr(5e-4, 1e-3) + regs(r1(0.1)) + betas(0.5, 0.99),
        "r1,lr5e-4,betas0.5/0.9": OLD + lr(5e-4) + regs(r1(0.1)) + betas(0.5, 0.9),
        "r1,lr1e-3,betas0.5/0.99,smoothing": OLD + lr(1e-3) + regs(r1(0.1), SMOOTH) + betas(0.5, 0.99),
        "r1,lr2e-3,betas0.5/0.99": OLD + lr(2e-3) + regs(r1(0.1)) + betas(0.5, 0.99),
        "r1g0.3,lr1e-3,betas0.5/0.99": OLD + lr(1e-3) + regs(r1(0.3)) + betas(0.5, 0.99),
        # The same in bf16 autocast: 1.6x the steps per CPU second on this machine's AVX512-BF16 CPU.
        "r1,lr1e-3,betas0.5/0.99,bf16": OLD + lr(1e-3) + regs(r1(0.1)) + betas(0.5, 0.99) + ["train.precision=bf16"],
        "r1,lr5e-4,rampup0.1": OLD + lr(5e-4) + regs(r1(0.1)) + ["train.ema.rampup=0.1"],
        "r1,lr5e-4,rampup0.2": OLD + lr(5e-4) + regs(r1(0.1)) + ["train.ema.rampup=0.2"],
        # Batch 32 makes about 1.7x the steps of batch 64 in the same time (17.2 against 9.9 steps/s).
        "r1,lr5e-4,translation,batch32": OLD + lr(5e-4) + regs(r1(0.1), AUG) + ["train.batch_size=32"],
        # Memory layout and precision of the shipped recipe (compare speed with --speed; its 3-seed
        # quality runs are named "shipped,channels_last" and "shipped,channels_last,bf16").
        "shipped,nchw": ["train.channels_last=false"],
        "shipped,nchw,bf16": ["train.channels_last=false", "train.precision=bf16"],
        "shipped,channels_last": ["train.channels_last=true"],
        "shipped,channels_last,bf16": ["train.channels_last=true", "train.precision=bf16"],
        # A longer EMA horizon late in the run (the ramp-up caps the half-life at rampup x the images seen).
        "channels_last,rampup0.1": ["train.channels_last=true", "train.ema.rampup=0.1"],
        "channels_last,rampup0.2": ["train.channels_last=true", "train.ema.rampup=0.2"],
        # D's normalisation: per-sample layer or instance norm instead of BatchNorm (R1's gradient
        # then does not mix the samples of a batch).
        "channels_last,d_layer_norm": ["train.channels_last=true", "discriminator.norm=layer"],
        "channels_last,d_instance_norm": ["train.channels_last=true", "discriminator.norm=instance"],
        # Learning rate decayed linearly to 0 from `start` of the run (the run's length = the last point).
        "channels_last,decay0.5": ["train.channels_last=true", *decay(0.5)],
        # A shorter EMA horizon than the shipped ramp-up (0.1 and 0.2 were worse than 0.05 above).
        "rampup0.025": ["train.ema.rampup=0.025"],
        # Half the batch: more steps in the same seconds. Run with --points 1000 1750 2500 and compared
        # at equal CPU seconds with "shipped" at 1000 and 1500 (2,500 steps of batch 32 cost about what
        # 1,500 of batch 64 do; README).
        "shipped,batch32": ["train.batch_size=32"],
    }),
    # The CIFAR-10 recipe's linear decay to 0 ("linear_decay"; results named "shipped" before
    # 2026-11-26 ran it) against a constant rate ("constant_lr"), as for wgan_gp_digits.
    # Variants measured before issue 29 ran PyTorch's default initialisation and a bias on D's
    # output (SNGAN_BEFORE_29 keeps their meaning); "glorot" is the references' initialisation
    # without that bias (the resnet default since issue 29; results named "shipped" from then to
    # 2026-12-04 ran it), "g_batch128" also updates G on the CIFAR-10 recipe's 128 fakes instead
    # of 64. The shipped recipe is "constant_lr" again: it sets init default and the output bias.
    "sngan_digits": Sweep("configs/sngan_digits.yaml", (2500,), {
        "shipped": [],
        "linear_decay": SNGAN_BEFORE_29 + LINEAR_DECAY,
        # Miyato et al. 2018, Table 1's setting C (Adam 2e-4, betas (0.5, 0.999), one D step per G
        # step), among the best for SN-GANs there, at a third of the recipe's cost per step.
        "setting_c": [*SNGAN_BEFORE_29, *LINEAR_DECAY, *betas(0.5, 0.999), "train.d_steps_per_g_step=1"],
        "constant_lr": SNGAN_BEFORE_29 + ["schedule.g.kind=constant", "schedule.d.kind=constant"],
        "glorot": GLOROT,
        "glorot,g_batch128": GLOROT + ["train.g_batch_size=128"],
    }),
    # DiffAugment (translation, cutout) against R1 alone: augmentation slowed the quickstart's short
    # runs. "diffaugment" is the recipe as it shipped before (its first result is named "shipped" in
    # old results files); "no_diffaugment" won and is now the shipped recipe.
    "stylegan2_digits": Sweep("configs/stylegan2_digits.yaml", (3000,), {
        "shipped": [],
        "diffaugment": regs(r1(0.1), "{kind: diffaugment, policy: [translation, cutout]}"),
        "no_diffaugment": regs(r1(0.1)),
        # Issue 29: R1 folded into D's regular step every 16th step (one optimizer step, weight x 16,
        # no Adam rescaling) against StyleGAN2-ADA's own phase ("shipped": train.lazy: separate).
        "folded": ["train.lazy=folded"],
    }),
    "biggan_digits": Sweep("configs/biggan_digits.yaml", (3000,), {"shipped": []}),
    # The CIFAR-10 recipe decays the learning rate to 0 over the run ("linear_decay"; results named
    # "shipped" before 2026-11-26 ran it). A constant rate ("constant_lr") learned more at this length
    # and is now the shipped recipe. Three critic steps per generator step cost 40% less per step.
    # As for sngan_digits: variants measured before issue 29 ran PyTorch's default initialisation
    # (RESNET_BEFORE_29 keeps their meaning; the critic's output keeps its bias either way).
    "wgan_gp_digits": Sweep("configs/wgan_gp_digits.yaml", (2500,), {
        "shipped": [],
        "linear_decay": RESNET_BEFORE_29 + LINEAR_DECAY,
        "constant_lr": RESNET_BEFORE_29 + ["schedule.g.kind=constant", "schedule.d.kind=constant"],
        "n_critic3": [*RESNET_BEFORE_29, *LINEAR_DECAY, "train.d_steps_per_g_step=3"],
        "glorot": ["train.g_batch_size=64"],
        "glorot,g_batch128": ["train.g_batch_size=128"],
    }),
}


def job_key(sweep: str, variant: str, seed: int, points: tuple[int, ...]) -> str:
    """Identifies a finished job in the results file."""
    return f"{sweep}|{variant}|{seed}|{','.join(map(str, points))}"


# What an extended job may change in the run it continues: its length and checkpointing.
EXTENDABLE = {"train.steps", "checkpoint.every", "checkpoint.keep"}
# Learning-rate schedules that do not depend on train.steps. Any other is stretched over the new
# length on resume (a linear decay that reached 0 restarts part-way up), which is another run than
# one trained from scratch to that length.
LENGTH_FREE_SCHEDULES = {"constant"}


def extendable_from(out: Path, config: Path, sets: list[str], points: tuple[int, ...]) -> int | None:
    """The step of `out`'s newest checkpoint when the folder holds this job's run stopped short of
    max(points) (the same config but for EXTENDABLE keys, constant learning rates, and a checkpoint
    kept at each point up to that step); None when the job must train from scratch."""
    from ganforge.config import config_to_dict, load_config, parse_config
    from ganforge.config.schema import changed_keys
    from ganforge.run import load_latest_good

    run = RunDir(out, read_only=True)
    if not run.checkpoint_files():
        return None
    payload = load_latest_good(out)
    wanted = load_config(config, sets)[1]
    stored = parse_config(payload.config)
    if set(changed_keys(config_to_dict(stored), wanted)) - EXTENDABLE:
        return None
    if {stored.schedule.g.kind, stored.schedule.d.kind} - LENGTH_FREE_SCHEDULES:
        return None
    if payload.step >= max(points) or not all(run.checkpoint_file(p).is_file() for p in points if p <= payload.step):
        return None
    return payload.step


def run_job(sweep: str, variant: str, seed: int, points: tuple[int, ...], work: Path,
            extend: bool = False) -> dict[str, Any]:
    """Train one variant and seed up to max(points) (continuing its folder's shorter run if `extend`
    and it holds one) and score the checkpoints at `points`."""
    import quality_digits as qd
    import torch

    torch.set_num_threads(1)
    spec = SWEEPS[sweep]
    out = work / sweep / f"{variant.replace('/', '_')}-s{seed}"
    every = 0
    for p in points:
        every = gcd(every, p)
    sets = [*spec.variants[variant], f"train.seed={seed}", f"train.steps={max(points)}", f"output.dir={out}",
            f"checkpoint.every={every}", "checkpoint.keep=1000", "train.device=cpu"]
    resumed_from = extendable_from(out, ROOT / spec.config, sets, points) if extend else None
    if resumed_from is None:
        cmd = [sys.executable, "-m", "ganforge", "train", str(ROOT / spec.config), "--quiet", "--overwrite"]
    else:  # only what may change: the rest comes from the run's own config
        cmd = [sys.executable, "-m", "ganforge", "train", "--resume", str(out), "--quiet"]
        sets = [s for s in sets if s.split("=", 1)[0] in EXTENDABLE]
    for s in sets:
        cmd += ["--set", s]
    load_before, start = os.getloadavg()[0], time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the one-thread training process: about its wall time on an idle core, whatever the load.
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    run = RunDir(out, read_only=True)
    speeds = [r[IMG_PER_S] for r in read_log(out) if is_training_record(r)]
    scores = {}
    for p in points:
        file = run.checkpoint_file(p)
        scores[str(p)] = {"ema": qd.score_run(file, True), "raw": qd.score_run(file, False)}
    scored = {run.checkpoint_file(p) for p in points}
    for file in run.checkpoint_files():
        if file not in scored:
            file.unlink()  # only the scored checkpoints are kept
    return {"resumed_from": resumed_from, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "median_img_per_s": round(statistics.median(speeds), 1), "scores": scores}


def measure_speed(sweep: str, variants: list[str], steps: int, work: Path) -> None:
    """Steps/s of each variant as a user runs it (torch's default threads), one after the other,
    with the load average around each: run this when the machine is otherwise idle."""
    spec = SWEEPS[sweep]
    print(f"{sweep}: steps/s over steps {steps // 2}-{steps} (the first half warms up), {os.cpu_count()} CPUs")
    for variant in variants:
        out = work / "speed"
        cmd = [sys.executable, "-m", "ganforge", "train", str(ROOT / spec.config), "--quiet", "--overwrite"]
        for s in [*spec.variants[variant], f"train.steps={steps}", f"log.every={steps // 2}", f"output.dir={out}",
                  "checkpoint.every=1000000", "samples.every=1000000", "train.device=cpu"]:
            cmd += ["--set", s]
        before = os.getloadavg()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        last = [r for r in read_log(out) if is_training_record(r)][-1]
        images = last[IMAGES_SEEN] / last[STEP]
        print(f"  {variant:<26} {last[IMG_PER_S] / images:6.2f} steps/s   load average {before[0]:.2f} -> "
              f"{os.getloadavg()[0]:.2f}", flush=True)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every line of the results file."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(results: list[dict[str, Any]], sweep: str) -> None:
    """Mean (min-max) over seeds of each variant's EMA figures at each step; raw G's FD beside."""
    from collections import defaultdict

    latest: dict[tuple[str, str, int], dict[str, Any]] = {}  # a seed scored twice at a step: the last run counts
    for r in results:
        if r["sweep"] == sweep and "scores" in r:
            for step, s in r["scores"].items():
                latest[(r["variant"], step, r["seed"])] = s
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (variant, step, _), s in latest.items():
        groups[(variant, step)].append(s)
    floors = {}
    print(f"{sweep}: EMA of G (raw G's FD beside), mean (min-max) over seeds")
    print(f"  {'variant':<32}{'step':>6}{'seeds':>6}{'classes':>9}{'confident':>11}{'IS':>7}{'FD':>22}{'raw FD':>9}")
    for (variant, step), rows in sorted(groups.items(), key=lambda kv: (int(kv[0][1]), kv[0][0])):
        resolution = rows[0]["ema"]["resolution"]
        if resolution not in floors:
            import quality_digits as qd

            floors[resolution] = qd.real_floor(resolution)

        def stat(key: str, which: str = "ema", rows: list[dict[str, Any]] = rows) -> list[float]:
            return [row[which][key] for row in rows]

        fd = stat("fd")
        print(f"  {variant:<32}{step:>6}{len(rows):>6}{min(stat('classes')):>6}-{max(stat('classes')):<2}"
              f"{statistics.mean(stat('confident')):>10.1%}{statistics.mean(stat('is')):>7.2f}"
              f"{statistics.mean(fd):>8.1f} ({min(fd):.1f}-{max(fd):.1f}){statistics.mean(stat('fd', 'raw')):>9.1f}")
    for resolution, f in floors.items():
        print(f"  real digits ({resolution} px, held out): classes {f['classes']}, confident {f['confident']:.1%}, "
              f"IS {f['is']:.2f}, FD {f['fd']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", choices=list(SWEEPS))
    parser.add_argument("--variants", nargs="+", help="default: all of the sweep's")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--points", nargs="+", type=int, help="steps to score at (default: the sweep's)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel training processes (one thread each)")
    parser.add_argument("--results", type=Path, default=ROOT / "runs" / "sweep_digits" / "results.jsonl")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "sweep_digits")
    parser.add_argument("--list", action="store_true", help="print the sweeps and their variants")
    parser.add_argument("--table", action="store_true", help="print the results so far")
    parser.add_argument("--speed", type=int, metavar="STEPS",
                        help="measure each variant's steps/s over STEPS steps instead (needs an idle machine)")
    parser.add_argument("--extend", action="store_true",
                        help="continue a job's shorter run in its folder (same config) instead of starting over")
    args = parser.parse_args()
    if args.list or not args.sweep:
        for name, spec in SWEEPS.items():
            print(f"{name}: {spec.config}, scored at steps {', '.join(map(str, spec.points))}")
            for variant, overrides in spec.variants.items():
                print(f"  {variant:<32} {' '.join(overrides) or '(as shipped)'}")
        return
    if args.table:
        table(read_results(args.results), args.sweep)
        return
    spec = SWEEPS[args.sweep]
    points = tuple(sorted(args.points or spec.points))
    unknown = set(args.variants or []) - set(spec.variants)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; valid: {', '.join(spec.variants)}")
    if args.speed:
        measure_speed(args.sweep, args.variants or list(spec.variants), args.speed, args.work)
        return
    done = {job_key(r["sweep"], r["variant"], r["seed"], tuple(r["points"])) for r in read_results(args.results)
            if "scores" in r}
    jobs = [(v, s) for s in args.seeds for v in (args.variants or spec.variants)
            if job_key(args.sweep, v, s, points) not in done]

    import quality_digits as qd

    from ganforge.config import load_config

    # Train the judge once, before parallel jobs would race to.
    qd.load_judge(load_config(ROOT / spec.config)[0].data.params["resolution"])
    args.results.parent.mkdir(parents=True, exist_ok=True)

    def one(job: tuple[str, int]) -> None:
        variant, seed = job
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps([args.sweep, variant, seed, points,
                                                                               str(args.work), args.extend])],
                             capture_output=True, text=True)
        try:
            result = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
        record = {"sweep": args.sweep, "variant": variant, "seed": seed, "points": list(points),
                  "overrides": spec.variants[variant], **result}
        with args.results.open("a") as f:
            f.write(json.dumps(record) + "\n")
        summary = "; ".join(f"{p}: EMA FD {s['ema']['fd']:.1f} raw {s['raw']['fd']:.1f}"
                            for p, s in result.get("scores", {}).items()) or result.get("error")
        print(f"{variant} seed {seed}: {summary}", flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, jobs))
    table(read_results(args.results), args.sweep)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sweep, variant, seed, points, work, extend = json.loads(sys.argv[2])
        print(json.dumps(run_job(sweep, variant, seed, tuple(points), Path(work), extend)))
    else:
        main()
