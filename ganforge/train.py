"""The training loop: D step(s), G step, EMA update, then one maintenance block."""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import threading
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.build import (
    build_data,
    build_loss,
    build_networks,
    build_optimizer,
    build_scheduler,
    resolve_device,
)
from ganforge.checkpoint import Checkpoint, load_latest_good
from ganforge.config import Config
from ganforge.data import DataInfo
from ganforge.distributed import Dist, all_reduce_mean, any_rank, barrier, check_batch_split, stream_seed, wrap
from ganforge.errors import ConfigError, TrainingAborted
from ganforge.generation import class_rows, generate, grid_columns
from ganforge.imaging import grid, scatter
from ganforge.losses import Loss
from ganforge.models import conditioning_classes
from ganforge.progress import Progress
from ganforge.regularizers import Regularizer
from ganforge.rng import capture_rng, restore_rng, seed_everything
from ganforge.run import RunDir

# --------------------------------------------------------------------------------------------
# The state that a checkpoint holds
# --------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything training changes: networks, EMA, optimizers, schedules, scalers, step."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LambdaLR
    sched_d: torch.optim.lr_scheduler.LambdaLR
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    fixed_z: Tensor  # noise of the sample grids, fixed for the whole run
    fixed_labels: Tensor | None
    step: int = 0
    rollbacks: int = 0  # times a non-finite state was rolled back (train.on_nonfinite: rollback)
    lr_scale: float = 1.0  # product of the rollbacks' learning-rate factors
    best: dict[str, Any] | None = None  # best evaluation so far: {figure, value, step}
    regularizers: list[tuple[str, Regularizer]] = field(default_factory=list)  # with their own state

    def state_dict(self) -> dict[str, Any]:
        """Every field: components as their state dicts, the regularizers as a list of theirs, the rest as is."""
        # The step first, where checkpoint format 1 has always had it: the file's bytes stay the same.
        names = ["step", *(f.name for f in fields(self) if f.name != "step")]
        return {name: _field_state(getattr(self, name)) for name in names}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """The inverse of `state_dict`; a field that an older checkpoint lacks takes its default."""
        device = self.fixed_z.device
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in sd and (f.default is not MISSING or f.default_factory is not MISSING):
                if f.default is not MISSING:
                    setattr(self, f.name, f.default)
                continue  # the regularizers stay as built
            saved = sd[f.name]
            if hasattr(value, "load_state_dict"):
                value.load_state_dict(saved)
            elif isinstance(value, list):  # the regularizers: (name, regularizer) pairs
                for (_, reg), reg_state in zip(value, saved):
                    reg.load_state_dict(reg_state)
            elif isinstance(saved, Tensor):
                setattr(self, f.name, saved.to(device))
            elif isinstance(f.default, (int, float)):
                setattr(self, f.name, type(f.default)(saved))
            else:
                setattr(self, f.name, saved)


def _field_state(value: Any) -> Any:
    """One TrainState field as `state_dict` holds it."""
    if hasattr(value, "state_dict"):
        return value.state_dict()
    if isinstance(value, list):  # the regularizers: (name, regularizer) pairs
        return [reg.state_dict() for _, reg in value]
    return value


def create_state(cfg: Config, info: DataInfo, device: torch.device, sync_batchnorm: bool = False,
                 load_init: bool = True) -> TrainState:
    """Fresh networks, optimizers and schedules for `cfg` (seed the RNGs first). With
    `init.checkpoint` (fine-tuning) and `load_init`, the networks start from that checkpoint's
    weights; `init.freeze_d_layers` keeps D's first layers out of D's optimizer either way."""
    from ganforge import finetune

    memory_format = torch.channels_last if cfg.train.channels_last and info.is_image else torch.contiguous_format
    G, D, regularizers = build_networks(cfg, info)
    if sync_batchnorm:
        # Batch statistics over all ranks' shards; the state dict keys stay those of BatchNorm.
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
    G = G.to(device, memory_format=memory_format)
    D = D.to(device, memory_format=memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    if cfg.init.checkpoint is not None and load_init:
        networks = types.SimpleNamespace(G=G, D=D, G_ema=G_ema)
        for line in finetune.load_init(networks, cfg.init.checkpoint, info.num_classes, cfg.init.load,
                                       cfg.init.strict_shapes):
            warnings.warn(line, stacklevel=2)
    finetune.freeze_d_layers(D, cfg.init.freeze_d_layers)  # before D's optimizer: it skips frozen layers
    opt_g = build_optimizer(cfg.optim.g, G, "optim.g")
    opt_d = build_optimizer(cfg.optim.d, D, "optim.d")
    sched_g = build_scheduler(cfg.schedule.g, opt_g, cfg.train.steps, "schedule.g")
    sched_d = build_scheduler(cfg.schedule.d, opt_d, cfg.train.steps, "schedule.d")
    # A gradient scaler only does something for float16; for other precisions it is a no-op.
    fp16 = cfg.train.precision == "fp16"
    scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
    scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
    # The sample-grid noise comes from its own generator (seeded from the run seed), so drawing
    # it does not move the training noise stream.
    g = torch.Generator().manual_seed(cfg.train.seed + 2**31)
    fixed_z = torch.randn(cfg.samples.num, G.latent_dim, generator=g).to(device)
    classes = conditioning_classes(G)
    # Conditional runs: the grid shows one class per row.
    fixed_labels = class_rows(cfg.samples.num, classes, device) if classes else None
    return TrainState(G, D, G_ema, opt_g, opt_d, sched_g, sched_d, scaler_g, scaler_d, fixed_z, fixed_labels,
                      regularizers=regularizers)


# --------------------------------------------------------------------------------------------
# One step of each player
# --------------------------------------------------------------------------------------------

Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


def autocast_for(device: torch.device, precision: str) -> Autocast:
    """A context factory for the configured precision (no context at all for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


@dataclass
class Runtime:
    """How this process runs the step (never saved): the networks as trained (compiled and/or
    wrapped in DDP), numerics, and the noise streams of its micro-batches."""

    G_train: nn.Module  # G as updated: compiled and/or DDP
    D_train: nn.Module
    G_fast: nn.Module  # the other player's forward: compiled if asked, never DDP
    D_fast: nn.Module
    autocast: Autocast
    ctx: Dist
    accumulate: int
    seed: int
    generators: list[torch.Generator]

    def noise(self, micro: int, step: int, phase: int, rollbacks: int = 0) -> torch.Generator:
        """The noise stream of one micro-batch of one phase of one step. It depends only on
        (seed, step, phase, shard) and the number of rollbacks so far, so the same global batch
        split into the same number of shards (processes x accumulate) sees the same noise however
        the shards are spread, a resumed run needs no saved noise state, and a rolled-back run
        does not replay the noise that blew up. The global torch generator is seeded from the
        same coordinates, for networks that draw noise inside their forward (StyleGAN2's
        per-pixel noise and style mixing)."""
        shard = self.ctx.rank * self.accumulate + micro
        coords = (self.seed, step, phase, shard) + ((rollbacks,) if rollbacks else ())
        torch.manual_seed(stream_seed(*coords, -1))
        return self.generators[micro].manual_seed(stream_seed(*coords))

    def no_sync(self, module: nn.Module, micro: int) -> contextlib.AbstractContextManager[Any]:
        """Skip DDP's gradient all-reduce for all but the last micro-batch."""
        if micro < self.accumulate - 1 and isinstance(module, nn.parallel.DistributedDataParallel):
            return module.no_sync()
        return contextlib.nullcontext()


def _split(x: Tensor | None, parts: int) -> list[Tensor | None]:
    return list(x.chunk(parts)) if x is not None else [None] * parts


def fake_labels(G: nn.Module, n: int, device: torch.device, gen: torch.Generator) -> Tensor | None:
    """Classes asked of a conditional generator: uniform, from the step's noise stream."""
    classes = conditioning_classes(G)
    return torch.randint(classes, (n,), device=device, generator=gen) if classes else None


def augmented(regularizers: list[tuple[str, Regularizer]], x: Tensor, gen: torch.Generator, step: int) -> Tensor:
    """D's input after every augmenting regularizer (DiffAugment, ADA, instance noise)."""
    for _, reg in regularizers:
        x = reg.augment(x, gen, step)
    return x


class AugmentingD:
    """D as the loop uses it, for the regularizers' own passes: the inputs are images before
    augmentation and the augmentation runs inside the call, as StyleGAN2-ADA's `run_D`, so an
    input-gradient penalty (R1) includes the augmentation's Jacobian. Wraps the plain module: a
    double backward through torch.compile is not supported."""

    def __init__(self, D: nn.Module, regularizers: list[tuple[str, Regularizer]], gen: torch.Generator,
                 step: int) -> None:
        self.D, self.regularizers, self.gen, self.step = D, regularizers, gen, step

    def __call__(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.D(augmented(self.regularizers, x, self.gen, self.step), labels)

    def classify(self, x: Tensor) -> Tensor:
        """The auxiliary classifier's logits (AC-GAN) on the augmented input."""
        return self.D.classify(augmented(self.regularizers, x, self.gen, self.step))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.D, name)


def discriminator_step(
    state: TrainState,
    rt: Runtime,
    loss: Loss,
    regularizers: list[tuple[str, Regularizer]],
    real: Tensor,
    labels: Tensor | None,
    d_update: int,
    phase: int,
) -> dict[str, Tensor]:
    """One discriminator update on this rank's share of a real batch and as many fakes (in
    `accumulate` micro-batches); returns the detached losses, averaged."""
    A = rt.accumulate
    stats: dict[str, Tensor] = {}
    state.opt_d.zero_grad(set_to_none=True)
    for micro, (x, y) in enumerate(zip(real.chunk(A), _split(labels, A))):
        gen = rt.noise(micro, state.step, phase, state.rollbacks)
        z = torch.randn(x.shape[0], state.G.latent_dim, device=x.device, generator=gen)
        y_fake = fake_labels(state.G, x.shape[0], x.device, gen)
        with torch.no_grad(), rt.autocast():
            fake = rt.G_fast(z, y_fake)
        x_in = augmented(regularizers, x, gen, state.step)
        fake_in = augmented(regularizers, fake, gen, state.step)
        with rt.no_sync(rt.D_train, micro):
            with rt.autocast():
                real_logits, fake_logits = rt.D_train(x_in, y), rt.D_train(fake_in, y_fake)
                d_loss = loss.d_loss(real_logits, fake_logits)
            total = d_loss
            D_reg = AugmentingD(state.D, regularizers, gen, state.step)
            for name, reg in regularizers:
                # Regularizers differentiate through D in float32 (fp32 master weights, as the references).
                with torch.autocast(x.device.type, enabled=False):
                    term = reg.d_term(d_update, D_reg, x.float(), fake.float(), y, y_fake, real_logits.float(),
                                      fake_logits.float(), gen)
                if term is not None:
                    total = total + term.loss
                    stats[name] = stats.get(name, 0) + term.value.detach() / A
            state.scaler_d.scale(total / A).backward()
        stats["d_loss"] = stats.get("d_loss", 0) + d_loss.detach() / A
        for _, reg in regularizers:
            reg.observe(real_logits, state.step)
    state.scaler_d.step(state.opt_d)
    state.scaler_d.update()
    for _, reg in regularizers:
        reg.after_d_step(state.D)
    return stats


def generator_step(
    state: TrainState,
    rt: Runtime,
    loss: Loss,
    regularizers: list[tuple[str, Regularizer]],
    labels: Tensor | None,
    real: Tensor,
    phase: int,
    epoch: int = 0,
) -> dict[str, Tensor]:
    """One generator update against the current discriminator (`epoch`: the data stream's, for
    schedules counted in epochs); returns the detached losses."""
    A = rt.accumulate
    stats: dict[str, Tensor] = {}
    # D's weights get no gradients here: saves a third of its backward. Afterwards only the
    # parameters D's optimizer trains get them back (FreezeD's frozen layers stay frozen).
    state.D.requires_grad_(False)
    state.opt_g.zero_grad(set_to_none=True)
    for micro, (x, y) in enumerate(zip(real.chunk(A), _split(labels, A))):
        gen = rt.noise(micro, state.step, phase, state.rollbacks)
        z = torch.randn(x.shape[0], state.G.latent_dim, device=x.device, generator=gen)
        y_fake = fake_labels(state.G, x.shape[0], x.device, gen)
        with rt.no_sync(rt.G_train, micro):
            with rt.autocast():
                fake = rt.G_train(z, y_fake)
                fake_logits = rt.D_fast(augmented(regularizers, fake, gen, state.step), y_fake)
                real_logits = rt.D_fast(augmented(regularizers, x, gen, state.step), y) if loss.g_needs_real \
                    else None
                for _, reg in regularizers:
                    fake_logits = reg.g_logits(fake_logits, state.step, epoch)
                g_loss = loss.g_loss(fake_logits, real_logits)
            total = g_loss
            D_reg = AugmentingD(state.D, regularizers, gen, state.step)
            for name, reg in regularizers:
                with torch.autocast(x.device.type, enabled=False):
                    term = reg.g_term(state.step, state.G, D_reg, z, y_fake, fake.float(), gen)
                if term is not None:
                    total = total + term.loss
                    key = f"{name}_g" if reg.has_d_terms else name
                    stats[key] = stats.get(key, 0) + term.value.detach() / A
            state.scaler_g.scale(total / A).backward()
        stats["g_loss"] = stats.get("g_loss", 0) + g_loss.detach() / A
    state.scaler_g.step(state.opt_g)
    state.scaler_g.update()
    for group in state.opt_d.param_groups:
        for p in group["params"]:
            p.requires_grad_(True)
    return stats


class EMA:
    """G_ema <- decay * G_ema + (1 - decay) * G after each step; buffers are copied."""

    def __init__(self, ema: nn.Module, model: nn.Module, decay: float, start: int, rampup: float | None = None
                 ) -> None:
        self.decay, self.start, self.rampup = decay, start, rampup
        self.ema_params = list(ema.parameters())
        self.params = list(model.parameters())
        self.ema_buffers = list(ema.buffers())
        self.buffers = list(model.buffers())

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Average after `step` (the number of completed steps); before `start`, copy."""
        if self.decay == 0:
            return  # no averaging: `sync` copies G only when G_ema is read
        # As StyleGAN2-ADA: the ramp-up counts the images seen before this step, so the first
        # averaged step copies G.
        weight = 1.0 if step <= self.start else 1.0 - self.decay_at(step - self.start - 1)
        torch._foreach_lerp_(self.ema_params, self.params, weight)
        for e, b in zip(self.ema_buffers, self.buffers):
            e.copy_(b)

    def decay_at(self, steps: int) -> float:
        """The decay after `steps` averaging steps: with ramp-up, the half-life is at most
        rampup x steps (StyleGAN), so early weights are forgotten quickly."""
        if self.rampup is None:
            return self.decay
        half_life = math.log(0.5) / math.log(self.decay)
        return 0.5 ** (1.0 / max(min(half_life, steps * self.rampup), 1e-8))  # beta = 0.5 ** (batch / ema_nimg)

    @torch.no_grad()
    def sync(self) -> None:
        """With averaging off, make G_ema equal to G (before samples and checkpoints)."""
        if self.decay == 0:
            for e, p in zip(self.ema_params + self.ema_buffers, self.params + self.buffers):
                e.copy_(p)


# --------------------------------------------------------------------------------------------
# Helpers of the maintenance block
# --------------------------------------------------------------------------------------------


class Meter:
    """Collects detached loss tensors without host syncs; `pop` averages them in one sync."""

    def __init__(self) -> None:
        self.values: dict[str, list[Tensor]] = {}

    def add(self, stats: dict[str, Tensor]) -> None:
        for key, value in stats.items():
            self.values.setdefault(key, []).append(value)

    def pop(self, ctx: Dist | None = None) -> dict[str, float]:
        """Means since the last pop (averaged over ranks too), in one host sync."""
        keys = list(self.values)
        if not keys:
            return {}
        means = torch.stack([torch.stack(self.values[k]).float().mean() for k in keys])
        if ctx is not None:
            means = all_reduce_mean(means, ctx)
        self.values = {}
        return dict(zip(keys, means.tolist()))


def nonfinite_networks(state: TrainState) -> list[str]:
    """Names of the networks with a NaN or infinity in a parameter or buffer (one host sync)."""
    flags = []
    for net in (state.G, state.D, state.G_ema):
        tensors = [t for t in [*net.parameters(), *net.buffers()] if t.is_floating_point()]
        flags.append(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
    finite = torch.stack(flags).tolist()
    return [name for name, ok in zip(("G", "D", "G_ema"), finite) if not ok]


class NonFinite(Exception):
    """A loss or a network became NaN or infinite (`what` names it)."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"step {step}: {what} became non-finite")
        self.step, self.what = step, what


NONFINITE_ADVICE = "a lower learning rate, a gradient penalty or R1, or precision fp32 usually helps"


@dataclass
class TrainResult:
    """How training ended."""

    step: int
    total_steps: int
    interrupted: bool
    last_checkpoint: Path | None
    budget_spent: bool = False  # stopped by train.max_minutes (not by a signal)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def make_runtime(cfg: Config, state: TrainState, ctx: Dist, device: torch.device) -> Runtime:
    """Compile and/or wrap the networks for this process, and make its noise streams."""
    G_fast, D_fast = state.G, state.D
    mode = cfg.train.compile_mode
    if mode is not None:
        # "reduce-overhead" captures CUDA graphs: for small models whose step time is kernel launches.
        G_fast, D_fast = torch.compile(state.G, mode=mode), torch.compile(state.D, mode=mode)
    return Runtime(
        G_train=wrap(G_fast, ctx, device), D_train=wrap(D_fast, ctx, device), G_fast=G_fast, D_fast=D_fast,
        autocast=autocast_for(device, cfg.train.precision), ctx=ctx, accumulate=cfg.train.accumulate,
        seed=cfg.train.seed, generators=[torch.Generator(device) for _ in range(cfg.train.accumulate)],
    )


def train(
    cfg: Config,
    cfg_dict: dict[str, Any],
    run: RunDir,
    resume: Checkpoint | None = None,
    stop: threading.Event | None = None,
    progress: bool = True,
    ctx: Dist | None = None,
    device: torch.device | None = None,
) -> TrainResult:
    """Train a GAN as configured, writing logs, samples and checkpoints into `run` (rank 0)."""
    ctx = ctx or Dist()
    device = device or resolve_device(cfg.train.device)
    configure_backends(device, cfg.train.deterministic)
    check_batch_split(cfg.train.batch_size, ctx, cfg.train.accumulate)
    if cfg.train.sync_batchnorm and ctx.enabled and device.type != "cuda":
        raise ConfigError("train.sync_batchnorm: SyncBatchNorm needs CUDA devices; set it to false on the CPU")
    if cfg.train.compile_mode == "reduce-overhead" and (device.type != "cuda" or ctx.enabled):
        # CUDA graphs: nothing to gain elsewhere (and a slow compile); under DDP they are untested.
        where = "more than one process" if ctx.enabled else f"the {device.type}"
        raise ConfigError(f"train.compile: reduce-overhead (CUDA graphs) needs one CUDA device, not {where}; "
                          "use true or default")
    seed_everything(cfg.train.seed)
    source = build_data(cfg)
    if ctx.is_main:
        source.prepare()  # downloads, while the other processes wait
    barrier(ctx)
    info = source.info
    state = create_state(cfg, info, device, sync_batchnorm=cfg.train.sync_batchnorm and ctx.enabled,
                         load_init=resume is None)  # a resumed run has its own weights
    loss = build_loss(cfg)
    regularizers = state.regularizers
    batches = source.batches(cfg.train.batch_size, cfg.train.seed, device, ctx.rank, ctx.world_size)
    if resume is not None:
        restore_checkpoint(state, batches, run, resume)
        set_scheduled_lrs(state)  # a longer train.steps stretches the schedules from this step on
        restore_rng(resume.rng)
    rt = make_runtime(cfg, state, ctx, device)
    ema = EMA(state.G_ema, state.G, cfg.train.ema.decay, cfg.train.ema.start, cfg.train.ema.rampup)
    channels_last = cfg.train.channels_last and info.is_image
    evaluator = None
    if cfg.eval.every and ctx.is_main:
        from ganforge.metrics.evaluate import evaluator_for

        # Built before the first step, so missing weights or data stop the run at once.
        evaluator = evaluator_for(cfg, source, device, progress=progress)
    d_steps, batch_size, total = cfg.train.d_steps_per_g_step, cfg.train.batch_size, cfg.train.steps
    stop = stop or threading.Event()
    stopping = False
    # train.max_minutes: a wall-time budget for this process (a cluster job's limit); when spent,
    # the run stops as on SIGTERM, with a checkpoint, and `--resume` continues it.
    deadline = time.monotonic() + cfg.train.max_minutes * 60 if cfg.train.max_minutes else math.inf

    upkeep = Maintenance(cfg, cfg_dict, run, state, batches, ema, info, ctx, device, evaluator,
                         source.reference_points(5000), progress)
    try:
        while state.step < total and not stopping:
            if cfg.train.compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten now
            # (1) Update D on `d_steps_per_g_step` fresh real batches.
            for i in range(d_steps):
                real, labels = next(batches)
                if channels_last:
                    real = real.contiguous(memory_format=torch.channels_last)
                upkeep.meter.add(discriminator_step(state, rt, loss, regularizers, real, labels,
                                                    d_update=state.step * d_steps + i, phase=i))
            # (2) Update G.
            upkeep.meter.add(generator_step(state, rt, loss, regularizers, labels, real, phase=-1,
                                            epoch=batches.state_dict().get("epoch", 0)))
            # (3) Update G_ema and the learning rates.
            state.step += 1
            ema.update(state.step)
            state.sched_g.step()
            state.sched_d.step()
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
    finally:
        upkeep.close()
    return TrainResult(state.step, total, state.step < total, upkeep.last_checkpoint, upkeep.budget_spent)


class Maintenance:
    """The block after each step: log, sample grid, evaluation, checkpoint, each when due, and
    what happens when a loss or weight turns non-finite."""

    def __init__(self, cfg: Config, cfg_dict: dict[str, Any], run: RunDir, state: TrainState, batches: Any,
                 ema: EMA, info: DataInfo, ctx: Dist, device: torch.device, evaluator: Any,
                 reference: Tensor | None, progress: bool) -> None:
        self.cfg, self.cfg_dict, self.run, self.state, self.batches = cfg, cfg_dict, run, state, batches
        self.ema, self.info, self.ctx, self.device, self.evaluator = ema, info, ctx, device, evaluator
        self.reference = reference
        self.meter = Meter()
        self.last_checkpoint: Path | None = None
        self.budget_spent = False
        self.last_log = (time.perf_counter(), state.step)
        # A bar on a terminal; one plain line per log step otherwise (CI, nohup, SLURM logs).
        self.bar = Progress(total=cfg.train.steps, initial=state.step, desc=run.path.name,
                            enabled=progress and ctx.is_main)

    def _due(self, every: int) -> bool:
        return self.state.step % every == 0 or self.state.step == self.cfg.train.steps

    def stop_requested(self, stop: threading.Event) -> bool:
        """Alone: at every step. Several ranks agree at log steps (one small all-reduce)."""
        if not self.ctx.enabled:
            return stop.is_set()
        return any_rank(stop.is_set(), self.ctx, self.device) if self._due(self.cfg.log.every) else False

    def after_step(self, last: bool) -> None:
        """Everything due at this step (`last`: the run ends here)."""
        self.bar.update()
        if self._due(self.cfg.log.every) or last:
            self.log()
        if (self._due(self.cfg.samples.every) or last) and self.run.is_writer:
            self.samples()
        improved = False
        if self.evaluator is not None and self._due(self.cfg.eval.every):
            self.ema.sync()
            improved = evaluate_and_log(self.evaluator, self.state, self.info, self.run, self.cfg)
        if self._due(self.cfg.checkpoint.every) or last or improved:
            self.checkpoint(regular=self._due(self.cfg.checkpoint.every) or last, best=improved)

    def log(self) -> None:
        """Average losses since the last record (one host sync), speed, learning rates."""
        state, cfg, step = self.state, self.cfg, self.state.step
        images = cfg.train.batch_size * cfg.train.d_steps_per_g_step
        now = time.perf_counter()
        record = {"step": step, **self.meter.pop(self.ctx), "lr_g": state.opt_g.param_groups[0]["lr"],
                  "lr_d": state.opt_d.param_groups[0]["lr"],
                  "img_per_s": (step - self.last_log[1]) * images / max(now - self.last_log[0], 1e-9),
                  "images_seen": step * images}
        if self.batches.skipped:
            record["skipped_images"] = self.batches.skipped
        self.last_log = (now, step)
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise NonFinite(step, " and ".join(bad))
        self.run.append_log(record)
        self.bar.show(record)

    def samples(self) -> None:
        """The fixed-noise grid (2D data: a scatter plot over the real data)."""
        self.ema.sync()
        # Constant per-pixel noise (stylegan2), as the reference's training grids: the grid changes
        # only as the weights do, and drawing it leaves the global RNG alone.
        fake = generate(self.state.G_ema, self.state.fixed_z, self.state.fixed_labels, noise_mode="const")
        columns = grid_columns(len(fake), conditioning_classes(self.state.G))
        image = grid(fake, nrow=columns) if self.info.is_image else scatter(fake, self.reference)
        self.run.save_sample(image, self.state.step)

    def checkpoint(self, regular: bool, best: bool) -> None:
        """The complete state, after checking that every weight is finite."""
        self.ema.sync()
        state = self.state
        bad_nets = nonfinite_networks(state)
        if bad_nets:
            raise NonFinite(state.step, " and ".join(f"{n} weights" for n in bad_nets))
        if not self.run.is_writer:
            return
        ckpt = Checkpoint(step=state.step, config=self.cfg_dict, data_info=self.info.to_dict(),
                          state=state.state_dict(), data=self.batches.state_dict(), rng=capture_rng())
        if regular:
            self.last_checkpoint = self.run.save_checkpoint(ckpt, self.cfg.checkpoint.keep)
        if best:
            self.run.save_best(ckpt, state.best["figure"], state.best["value"])

    def recover(self, event: NonFinite) -> None:
        """Stop with what to do, or (train.on_nonfinite: rollback) continue from the last good state."""
        state, cfg = self.state, self.cfg
        if cfg.train.on_nonfinite != "rollback" or state.rollbacks >= cfg.train.max_rollbacks:
            limit = f" after {state.rollbacks} rollbacks" if state.rollbacks else ""
            raise TrainingAborted(f"{event}{limit}; nothing was saved over the last good checkpoint "
                                  f"({self.run.latest_checkpoint() or 'none yet'}); {NONFINITE_ADVICE}") from None
        roll_back(state, self.batches, self.run, cfg, event)
        self.meter = Meter()
        self.last_log = (time.perf_counter(), state.step)
        self.bar.reset(total=cfg.train.steps, initial=state.step)

    def close(self) -> None:
        self.bar.close()


def evaluate_and_log(evaluator: Any, state: TrainState, info: DataInfo, run: RunDir, cfg: Config) -> bool:
    """Evaluate G_ema, log the figures with what they were computed with; True if `eval.best`
    improved (state.best is then updated)."""
    from ganforge.metrics.evaluate import is_better

    result = evaluator(state.G_ema, seed=cfg.train.seed)
    run.append_log({"step": state.step, "eval": result.figures, "eval_num_samples": result.num_samples,
                    "eval_extractor": result.extractor, "eval_reference": result.reference,
                    "eval_seconds": round(result.seconds, 2)})
    figure = cfg.eval.best
    if figure is None or figure not in result.figures:
        return False
    value = float(result.figures[figure])
    old = state.best["value"] if state.best and state.best.get("figure") == figure else None
    if not math.isfinite(value) or not is_better(figure, value, old):
        return False
    state.best = {"figure": figure, "value": value, "step": state.step}
    return True


def restore_checkpoint(state: TrainState, batches: Any, run: RunDir, ckpt: Checkpoint) -> None:
    """Training state, data position and run folder back to `ckpt` (resume and rollback alike)."""
    state.load_state_dict(ckpt.state)
    batches.load_state_dict(ckpt.data)
    run.rewind(state.step)  # log records and checkpoints after it belong to a lost future


def roll_back(state: TrainState, batches: Any, run: RunDir, cfg: Config, event: NonFinite) -> None:
    """Reload the last good checkpoint, scale both learning rates down, move the noise on."""
    if run.latest_checkpoint() is None:
        raise TrainingAborted(f"{event} before the first checkpoint, so there is nothing to roll back to; "
                              f"{NONFINITE_ADVICE}") from None
    ckpt = load_latest_good(run.path)
    rollbacks = state.rollbacks + 1
    lr_scale = state.lr_scale * cfg.train.rollback_lr_factor
    restore_checkpoint(state, batches, run, ckpt)
    # The checkpoint's learning rates carry its own scale; bring them to the new one.
    for sched in (state.sched_g, state.sched_d):
        ratio = lr_scale / state.lr_scale
        sched.base_lrs = [base * ratio for base in sched.base_lrs]
    set_scheduled_lrs(state)
    state.rollbacks, state.lr_scale = rollbacks, lr_scale
    # The noise streams mix in the rollback count (Runtime.noise), so the blow-up is not replayed.
    run.append_log({"step": state.step, "event": "rollback", "from_step": event.step, "reason": str(event),
                    "lr_scale": lr_scale, "rollback": rollbacks})
    if run.is_writer:
        warnings.warn(f"{event}; rolled back to step {state.step} with learning rates x{lr_scale:g} "
                      f"(rollback {rollbacks} of {cfg.train.max_rollbacks})", stacklevel=2)


def set_scheduled_lrs(state: TrainState) -> None:
    """Set each optimizer's learning rates from its schedule at the current step (after loading
    a checkpoint, whose stored rates follow the schedule of the run that wrote it)."""
    for sched in (state.sched_g, state.sched_d):
        for group, base, factor in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * factor(sched.last_epoch)


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
