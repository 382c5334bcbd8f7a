"""The training loop: D step(s), G step, EMA update, then one maintenance block."""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganforge.build import build_data, build_loss, evaluator_for, resolve_device
from ganforge.checkpoint import Checkpoint
from ganforge.config import Config
from ganforge.data import Batches, DataSource, Position
from ganforge.distributed import Dist, barrier, check_batch_splits, peer_failure
from ganforge.errors import ConfigError, PeerError, TrainingAborted
from ganforge.losses import Loss
from ganforge.metrics.evaluate import Evaluator
from ganforge.rng import restore_rng, seed_everything
from ganforge.run import RunDir
from ganforge.training.state import TrainState, create_state, restore_training, set_scheduled_lrs
from ganforge.training.steps import EMA, G_PHASE, Runtime, discriminator_step, generator_step, make_runtime
from ganforge.training.upkeep import Maintenance, NonFinite


@dataclass
class TrainResult:
    """How training ended."""

    step: int
    total_steps: int
    interrupted: bool
    last_checkpoint: Path | None
    budget_spent: bool = False  # stopped by train.max_minutes (not by a signal)


@dataclass
class Prepared:
    """Everything a run builds before its first step, built without writing anything: what
    `train` runs on. Built first, so that a run is refused before its folder is made or replaced."""

    cfg: Config
    ctx: Dist
    device: torch.device
    source: DataSource
    state: TrainState
    loss: Loss
    batches: Batches
    runtime: Runtime
    ema: EMA
    evaluator: Evaluator | None
    resume: Checkpoint | None


def prepare(cfg: Config, resume: Checkpoint | None = None, ctx: Dist | None = None,
            device: torch.device | None = None, progress: bool = True) -> Prepared:
    """Build data, networks (with the init weights and freezing), optimizers, loss, batch stream
    and evaluator from the seeded RNGs; a resumed run then takes its state, data position and
    RNG states from `resume`. Reads (and downloads what the data set fetches), writes no run file."""
    ctx = ctx or Dist()
    device = device or resolve_device(cfg.train.device)
    configure_backends(device, cfg.train.deterministic)
    check_process_setup(cfg, ctx, device)
    seed_everything(cfg.train.seed)
    source = build_data(cfg)
    if ctx.is_main:
        source.prepare()  # downloads, while the other processes wait
    barrier(ctx)
    state = create_state(cfg, source.info, device, sync_batchnorm=cfg.train.sync_batchnorm and ctx.enabled,
                         load_init=resume is None)  # a resumed run has its own weights
    loss = build_loss(cfg)
    batches = source.batches(cfg.train.batch_size, cfg.train.seed, device, ctx.rank, ctx.world_size)
    if resume is not None:
        restore_training(state, batches, resume)
        set_scheduled_lrs(state)  # a longer train.steps stretches the schedules from this step on
        restore_rng(resume.rng)
    runtime = make_runtime(cfg, state, ctx, device)
    ema = EMA.for_run(state, cfg)
    # Built before the first step, so missing weights or data stop the run at once.
    evaluator = evaluator_for(cfg, source, device, progress=progress) if cfg.eval.every and ctx.is_main else None
    return Prepared(cfg, ctx, device, source, state, loss, batches, runtime, ema, evaluator, resume)


def check(cfg: Config, nproc: int = 1, resume: Checkpoint | None = None) -> int | None:
    """What `prepare` would refuse, found without loading the training data, downloading, or
    using the training device (`train --dry-run`): the processes and device settings, the
    networks built on the CPU with the init weights loaded and D's layers frozen (or the resumed
    state loaded), the loss, and the batch against the data set's size. Returns that size (None
    where it is known only once the data set is fetched)."""
    check_process_setup(cfg, Dist(0, nproc), resolve_device(cfg.train.device))
    source = build_data(cfg)
    state = create_state(cfg, source.info, torch.device("cpu"), load_init=resume is None)
    if resume is not None:
        state.load_state_dict(resume.state)
    build_loss(cfg)
    size = source.count()
    if size is not None:
        Position(size, cfg.train.batch_size)  # refuses a batch larger than the data set
    return size


def train(
    cfg: Config,
    cfg_dict: dict[str, Any],
    run: RunDir,
    resume: Checkpoint | None = None,
    stop: threading.Event | None = None,
    progress: bool = True,
    ctx: Dist | None = None,
    device: torch.device | None = None,
    prepared: Prepared | None = None,
) -> TrainResult:
    """Train a GAN as configured, writing logs, samples and checkpoints into `run` (rank 0);
    from what `prepare` built, or building it first."""
    p = prepared or prepare(cfg, resume, ctx, device, progress)
    ctx, device, state, batches, info = p.ctx, p.device, p.state, p.batches, p.source.info
    loss, regularizers, rt, ema = p.loss, state.regularizers, p.runtime, p.ema
    if p.resume is not None:
        run.rewind(state.step, cfg_dict)  # log records and checkpoints after it belong to a lost future
    upkeep = Maintenance(cfg, cfg_dict, run, state, batches, ema, info, ctx, device, p.evaluator,
                         p.source.reference_points(5000), progress)

    d_steps, batch_size, total = cfg.train.d_steps_per_g_step, cfg.train.batch_size, cfg.train.steps
    channels_last = cfg.train.channels_last and info.is_image
    stop = stop or threading.Event()
    batches.stop_on(stop)  # a wait for data ends on Ctrl+C or SIGTERM too
    if ctx.is_main:
        print(f"data: {batches.describe(info)}", flush=True)
    stopping = False
    # train.max_minutes: a wall-time budget for this process (a cluster job's limit); when spent,
    # the run stops as on SIGTERM, with a checkpoint, and `--resume` continues it.
    deadline = time.monotonic() + cfg.train.max_minutes * 60 if cfg.train.max_minutes else math.inf
    try:
        while state.step < total and not stopping:
            if cfg.train.compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten now
            # The data's epoch as the step starts (top-k's schedule counts finished epochs).
            epoch = batches.state_dict().get("epoch", 0)
            # (1) Update D on `d_steps_per_g_step` fresh real batches.
            for i in range(d_steps):
                real, labels = next(batches)
                if channels_last:
                    real = real.contiguous(memory_format=torch.channels_last)
                upkeep.meter.add(discriminator_step(state, rt, loss, regularizers, real, labels,
                                                    d_update=state.step * d_steps + i, phase=i))
            # (2) Update G.
            upkeep.meter.add(generator_step(state, rt, loss, regularizers, labels, real, phase=G_PHASE, epoch=epoch))
            # (3) Update G_ema, the learning rates and the regularizers' schedules (ADA's p).
            state.step += 1
            ema.update(state.step)
            state.sched_g.step()
            state.sched_d.step()
            for _, reg in regularizers:
                reg.after_step(state.step)
            # (4) Maintenance: log, samples, eval, checkpoint; a non-finite state stops or rolls back.
            if time.monotonic() >= deadline:
                upkeep.budget_spent = True
                stop.set()
            stopping = upkeep.stop_requested(stop)
            try:
                upkeep.after_step(last=state.step == total or stopping)
            except NonFinite as event:
                upkeep.recover(event)
    except torch.cuda.OutOfMemoryError:
        raise TrainingAborted(
            f"out of GPU memory at step {state.step} with train.batch_size={batch_size} "
            f"({batch_size // (ctx.world_size * cfg.train.accumulate)} per device and micro-batch); raise "
            f"train.accumulate or lower the batch size (the last checkpoint, {run.latest_checkpoint() or 'none yet'}, "
            "is intact)"
        ) from None
    except Exception as e:
        # Another process died or went silent: one line here, and torchrun (--max-restarts)
        # restarts the group, which continues from the last checkpoint.
        why = peer_failure(e) if ctx.enabled else None
        if why is None:
            raise
        raise PeerError(f"process {ctx.rank} of {ctx.world_size} stopped at step {state.step}: another process "
                        f"failed or stopped answering ({why}); the last checkpoint, "
                        f"{run.latest_checkpoint() or 'none yet'}, is intact") from None
    finally:
        upkeep.close()
    return TrainResult(state.step, total, state.step < total, upkeep.last_checkpoint, upkeep.budget_spent)


def check_process_setup(cfg: Config, ctx: Dist, device: torch.device) -> None:
    """Refuse what this process cannot run: a batch that does not split over the processes and
    micro-batches, SyncBatchNorm off CUDA, CUDA graphs anywhere but on one CUDA device."""
    check_batch_splits(cfg.train, ctx)
    if cfg.train.sync_batchnorm and ctx.enabled and device.type != "cuda":
        raise ConfigError("train.sync_batchnorm: SyncBatchNorm needs CUDA devices; set it to false on the CPU")
    if cfg.train.compile_mode == "reduce-overhead" and (device.type != "cuda" or ctx.enabled):
        # CUDA graphs: nothing to gain elsewhere (and a slow compile); under DDP they are untested.
        where = "more than one process" if ctx.enabled else f"the {device.type}"
        raise ConfigError(f"train.compile: reduce-overhead (CUDA graphs) needs one CUDA device, not {where}; "
                          "use true or default")


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """Deterministic kernels (same seed, same run) or autotuned ones (faster). On CUDA,
    deterministic mode also picks PyTorch's deterministic implementations where they exist; an
    operation without one (e.g. some interpolation backwards) runs anyway, with a warning naming it."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        if deterministic:
            # cuBLAS needs a fixed workspace for reproducible matmuls (read when cuBLAS starts).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
