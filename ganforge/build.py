"""The one factory that turns config sections into objects; components never see YAML."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ganforge.config import Component, Config
from ganforge.data import DataInfo, DataSource
from ganforge.errors import ConfigError
from ganforge.losses import Loss
from ganforge.registry import (
    DATASETS,
    DISCRIMINATORS,
    GENERATORS,
    LOSSES,
    OPTIMIZERS,
    REGULARIZERS,
    SCHEDULES,
    Registry,
)
from ganforge.regularizers import Regularizer


def build(registry: Registry, component: Component, where: str, **provided: Any) -> Any:
    """Call the builder registered as `component.kind` with its params and whatever it accepts
    of `provided` (values ganforge fills in, such as the data's resolution)."""
    entry = registry.get(component.kind, where)
    accepted = inspect.signature(entry.builder).parameters
    kwargs = {**component.params, **{k: v for k, v in provided.items() if k in accepted}}
    try:
        return entry.builder(**kwargs)
    except ValueError as e:
        # Constructors reject impossible combinations with ValueError; say where it came from.
        raise ConfigError(f"{where} ({component.kind}): {e}") from None


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: cuda was asked for but no CUDA GPU is available; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device: {name} does not exist ({torch.cuda.device_count()} GPUs)")
    if device.type == "mps" and not (torch.backends.mps.is_available()):
        raise ConfigError("train.device: mps was asked for but is not available; use auto or cpu")
    return device


def build_data(cfg: Config) -> DataSource:
    """The configured data set (cheap: checks paths, loads nothing yet)."""
    return build(DATASETS, cfg.data, "data")


def build_generator(cfg_generator: Component, info: DataInfo) -> nn.Module:
    """The generator for data described by `info`."""
    return build(GENERATORS, cfg_generator, "generator", **info.model_args())


def build_discriminator(cfg_discriminator: Component, info: DataInfo) -> nn.Module:
    """The discriminator for data described by `info`."""
    return build(DISCRIMINATORS, cfg_discriminator, "discriminator", **info.model_args())


def build_loss(cfg: Config) -> Loss:
    """The adversarial loss."""
    return build(LOSSES, cfg.loss, "loss")


def build_regularizers(cfg: Config) -> list[tuple[str, Regularizer]]:
    """The regularizers, in config order, as (kind, object); combinations that make no sense
    (weight clipping with a gradient penalty, label smoothing with the hinge loss) are errors."""
    kinds = [c.kind for c in cfg.regularizers]
    regs = []
    for i, c in enumerate(cfg.regularizers):
        reg = build(REGULARIZERS, c, f"regularizers.{i}")
        for other in reg.incompatible:
            if other in kinds or other == cfg.loss.kind:
                what = f"loss {other}" if other == cfg.loss.kind else f"regularizer {other}"
                raise ConfigError(f"regularizers.{i}: {c.kind} cannot be combined with {what}; remove one of them")
        if kinds.count(c.kind) > 1:
            raise ConfigError(f"regularizers.{i}: {c.kind} is listed twice")
        regs.append((c.kind, reg))
    return regs


def build_networks(cfg: Config, info: DataInfo) -> tuple[nn.Module, nn.Module, list[tuple[str, Regularizer]]]:
    """G, D and the regularizers, with the regularizers' changes to the networks made
    (spectral normalisation): the same on every path, training or loading a checkpoint."""
    G = build_generator(cfg.generator, info)
    D = build_discriminator(cfg.discriminator, info)
    regs = build_regularizers(cfg)
    for i, (kind, reg) in enumerate(regs):
        try:
            reg.setup(G, D)
        except ValueError as e:
            raise ConfigError(f"regularizers.{i} ({kind}): {e}") from None
    return G, D, regs


def build_optimizer(component: Component, model: nn.Module, where: str) -> torch.optim.Optimizer:
    """An optimizer over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build(OPTIMIZERS, component, where, params=params)


def build_scheduler(component: Component, optimizer: torch.optim.Optimizer, total_steps: int, where: str
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR whose factor comes from the registered schedule."""
    factor = build(SCHEDULES, component, where, total_steps=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def validate(cfg: Config) -> DataInfo:
    """Build what can be built cheaply (data source, both networks) to surface config errors
    before anything runs; returns the data description."""
    info = build_data(cfg).info
    build_networks(cfg, info)
    build_loss(cfg)
    from ganforge.metrics.evaluate import check_metrics

    check_metrics(cfg.eval.metrics, info.is_image, cfg.eval.best, num_samples=cfg.eval.num_samples)
    return info
