"""The training state: what a checkpoint holds, how a fresh one is built, and how one is restored."""

from __future__ import annotations

import copy
import types
import warnings
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from ganforge import finetune
from ganforge.build import build_networks, build_optimizer, build_scheduler
from ganforge.checkpoint import Checkpoint
from ganforge.config import Config
from ganforge.data import DataInfo
from ganforge.errors import ConfigError
from ganforge.generation import class_rows, running_stats_layers
from ganforge.models import conditioning_classes
from ganforge.regularizers import Regularizer
from ganforge.regularizers.base import lazy_intervals
from ganforge.run import RunDir


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
    memory_format = torch.channels_last if cfg.train.channels_last and info.is_image else torch.contiguous_format
    G, D, regularizers = build_networks(cfg, info)
    if sync_batchnorm:
        # Batch statistics over all ranks' shards; the state dict keys stay those of BatchNorm.
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
        check_synchronised(G, D)
    G = G.to(device, memory_format=memory_format)
    D = D.to(device, memory_format=memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    if cfg.init.checkpoint is not None and load_init:
        networks = types.SimpleNamespace(G=G, D=D, G_ema=G_ema)
        for line in finetune.load_init(networks, cfg.init.checkpoint, info.num_classes, cfg.init.load,
                                       cfg.init.strict_shapes, regularizers, cfg.init.ada_p):
            warnings.warn(line, stacklevel=2)
    finetune.freeze_d_layers(D, cfg.init.freeze_d_layers)  # before D's optimizer: it skips frozen layers
    opt_g = build_optimizer(cfg.optim.g, G, "optim.g")
    opt_d = build_optimizer(cfg.optim.d, D, "optim.d")
    if cfg.train.lazy == "separate":
        # Before the schedules, which take these rates as their base.
        for opt, interval in zip((opt_g, opt_d), lazy_intervals(regularizers)):
            rescale_for_lazy_phase(opt, interval)
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


def rescale_for_lazy_phase(optimizer: torch.optim.Optimizer, interval: int) -> None:
    """StyleGAN2-ADA's rescaling for a lazy phase every `interval` updates: the learning rate
    times k/(k+1) and Adam's betas to the power k/(k+1), k = interval (nothing for k = 1), so
    that k + 1 optimizer steps move the weights about as far as k would."""
    if interval <= 1:
        return
    ratio = interval / (interval + 1)
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "betas" in group:
            group["betas"] = tuple(beta**ratio for beta in group["betas"])


def check_synchronised(G: nn.Module, D: nn.Module) -> None:
    """Refuse train.sync_batchnorm for networks with statistics SyncBatchNorm cannot take over
    (biggan's own stored_mean / stored_var layout), rather than leave them per process."""
    for role, net in (("generator", G), ("discriminator", D)):
        keeping = {id(m) for m in running_stats_layers(net)}
        kept = [name for name, m in net.named_modules() if id(m) in keeping and not isinstance(m, nn.SyncBatchNorm)]
        if kept:
            raise ConfigError(f"train.sync_batchnorm: the {role}'s layer {kept[0]} keeps BatchNorm statistics in "
                              f"a layout SyncBatchNorm cannot take over; set {role}.cross_replica: true (biggan: "
                              "BigGAN-PyTorch's cross-replica layout, torch's BatchNorm) or "
                              "train.sync_batchnorm: false")


def restore_training(state: TrainState, batches: Any, ckpt: Checkpoint) -> None:
    """Training state and data position back to `ckpt` (nothing written)."""
    state.load_state_dict(ckpt.state)
    batches.load_state_dict(ckpt.data)


def restore_checkpoint(state: TrainState, batches: Any, run: RunDir, ckpt: Checkpoint) -> None:
    """Training state, data position and run folder back to `ckpt` (a rollback)."""
    restore_training(state, batches, ckpt)
    run.rewind(state.step, ckpt.config)  # log records and checkpoints after it belong to a lost future


def set_scheduled_lrs(state: TrainState) -> None:
    """Set each optimizer's learning rates from its schedule at the current step (after loading
    a checkpoint, whose stored rates follow the schedule of the run that wrote it)."""
    for sched in (state.sched_g, state.sched_d):
        for group, base, factor in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * factor(sched.last_epoch)

