"""The one factory that turns config sections into objects; components never see YAML."""

from __future__ import annotations

import copy
import inspect
import re
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ganforge.accepts import check_accepts
from ganforge.config import NETWORKS, Component, Config, parse_config
from ganforge.config.schema import Network
from ganforge.data import DataInfo, DataSource
from ganforge.errors import CheckpointError, ConfigError
from ganforge.footprint import Footprint, check_fits
from ganforge.losses import Loss
from ganforge.metrics.catalog import EvalOptions, check_metrics, declared, default_metrics, views_of
from ganforge.metrics.evaluate import Evaluator, check_evaluable
from ganforge.metrics.features import FeatureExtractor
from ganforge.metrics.ppl import load_metric_lpips
from ganforge.models import conditioning_classes, reads_labels
from ganforge.registry import (
    DATASETS,
    DISCRIMINATORS,
    EXTRACTORS,
    GENERATORS,
    LOSSES,
    METRICS,
    OPTIMIZERS,
    REGULARIZERS,
    SCHEDULES,
    Entry,
    Registry,
)
from ganforge.regularizers import Regularizer
from ganforge.regularizers.base import lazy_intervals

if TYPE_CHECKING:
    from ganforge.checkpoint import Checkpoint


def build(registry: Registry, component: Component, where: str, *, provider: str = "ganforge", **provided: Any
          ) -> Any:
    """Call the builder registered as `component.kind` with its params and whatever it accepts
    of `provided` (values ganforge fills in, such as the data's resolution; `provider` says where
    they come from, for errors)."""
    entry = registry.get(component.kind, where)
    accepted = inspect.signature(entry.builder).parameters
    kwargs = {**component.params, **{k: v for k, v in provided.items() if k in accepted}}
    missing = [name for name, p in accepted.items()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in kwargs]
    if missing:
        # A builder that needs what this data does not give (an image architecture on vectors):
        # say so, rather than let the call fail with a TypeError.
        gives = ", ".join(k for k in provided if k != "num_classes") or "nothing"
        hint = f"; change {where}.kind or data.kind" if provider.startswith("data") else ""
        raise ConfigError(f"{where} ({component.kind}): needs {', '.join(missing)}{_needed_from(missing)}, but "
                          f"{provider} gives {gives}{hint}")
    try:
        return entry.builder(**kwargs)
    except (ValueError, TypeError) as e:
        # Constructors reject impossible combinations with ValueError (a TypeError is a value of the
        # wrong kind that got through); say where it came from.
        raise ConfigError(f"{where} ({component.kind}): {' '.join(str(e).split())}") from None
    except (RuntimeError, OverflowError, MemoryError) as e:
        detail = f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
        if isinstance(e, RuntimeError) and _NEGATIVE.search(str(e)):
            raise ConfigError(f"{where} ({component.kind}): a layer size works out negative ({detail}); check "
                              "its sizes") from None
        if isinstance(e, RuntimeError) and not _TOO_LARGE.search(str(e)):
            raise  # not about the parameters: a bug, which keeps its traceback
        raise ConfigError(f"{where} ({component.kind}): its sizes ask for more memory than there is ({detail}); "
                          "use smaller sizes") from None


# How PyTorch says that a tensor cannot be allocated, or that its size overflows or is negative.
_TOO_LARGE = re.compile(r"allocat|overflow|out of memory|too large", re.IGNORECASE)
_NEGATIVE = re.compile(r"negative dimension", re.IGNORECASE)


def _needed_from(missing: list[str]) -> str:
    """` from image data` when the missing arguments are what image data gives, and so on."""
    if set(missing) <= {"channels", "resolution"}:
        return " from image data"
    if set(missing) <= {"data_dim"}:
        return " from vector data"
    return ""


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
    """The generator for data described by `info` (refused before it is built if it cannot take them)."""
    check_accepts(GENERATORS.get(cfg_generator.kind, "generator"), info, "generator", cfg_generator.kind)
    return build(GENERATORS, cfg_generator, "generator", provider=f"data ({info.name})", **info.model_args())


def build_discriminator(cfg_discriminator: Component, info: DataInfo) -> nn.Module:
    """The discriminator for data described by `info` (refused before it is built if it cannot take them)."""
    check_accepts(DISCRIMINATORS.get(cfg_discriminator.kind, "discriminator"), info, "discriminator",
                  cfg_discriminator.kind)
    return build(DISCRIMINATORS, cfg_discriminator, "discriminator", provider=f"data ({info.name})",
                 **info.model_args())


def build_loss(cfg: Config) -> Loss:
    """The adversarial loss."""
    return build(LOSSES, cfg.loss, "loss")


def build_regularizers(cfg: Config, info: DataInfo | None = None) -> list[tuple[str, Regularizer]]:
    """The regularizers, in config order, as (kind, object); combinations that make no sense
    (weight clipping with a gradient penalty, label smoothing with the hinge loss, an image
    augmentation on vector data when `info` is given, two lazy intervals for one player with
    `train.lazy: separate`) are errors."""
    kinds = [c.kind for c in cfg.regularizers]
    regs = []
    for i, c in enumerate(cfg.regularizers):
        if info is not None:
            check_accepts(REGULARIZERS.get(c.kind, f"regularizers.{i}"), info, f"regularizers.{i}", c.kind)
        reg = build(REGULARIZERS, c, f"regularizers.{i}")
        for other in reg.incompatible:
            if other in kinds:
                raise ConfigError(f"regularizers.{i}: {c.kind} cannot be combined with regularizer {other}; "
                                  "remove one of them")
        check_loss_shape(REGULARIZERS.get(c.kind), LOSSES.get(cfg.loss.kind, "loss"), f"regularizers.{i}")
        if kinds.count(c.kind) > 1:
            raise ConfigError(f"regularizers.{i}: {c.kind} is listed twice")
        regs.append((c.kind, reg))
    if cfg.train.lazy == "separate":
        try:
            lazy_intervals(regs)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return regs


def check_loss_shape(regularizer: Entry, loss: Entry, where: str) -> None:
    """A ConfigError if the regularizer declares the loss shapes it works with and the loss's is not one."""
    shapes = regularizer.properties.get("loss_shapes")
    if shapes is not None and loss.properties["shape"] not in shapes:
        fitting = [e.name for e in LOSSES.entries() if e.properties["shape"] in shapes]
        raise ConfigError(f"{where}: {regularizer.name} works with {' or '.join(shapes)}-shaped losses "
                          f"({', '.join(fitting)}), not {loss.name} ({loss.properties['shape']}); "
                          "change loss.kind or remove it")


def build_networks(cfg: Config, info: DataInfo) -> tuple[nn.Module, nn.Module, list[tuple[str, Regularizer]]]:
    """G, D and the regularizers, with the regularizers' changes to the networks made
    (spectral normalisation): the same on every path, training or loading a checkpoint."""
    check_compatible(cfg, info)
    G = build_generator(cfg.generator, info)
    D = build_discriminator(cfg.discriminator, info)
    if reads_labels(D) and not conditioning_classes(G):
        # D would be asked the class of fakes that have none: the first step would fail.
        raise ConfigError(f"discriminator ({cfg.discriminator.kind}): is conditional, but generator "
                          f"({cfg.generator.kind}) is not, so its samples have no class; set generator.conditional: "
                          "true (where the generator has it) or discriminator.conditional: false")
    regs = build_regularizers(cfg, info)
    for i, (kind, reg) in enumerate(regs):
        try:
            reg.setup(G, D)
        except ValueError as e:
            raise ConfigError(f"regularizers.{i} ({kind}): {e}") from None
    return G, D, regs


def build_stored_networks(config: Any, data_info: Any, source: str | Path) -> tuple[nn.Module, nn.Module, DataInfo]:
    """G and D (fresh) from a stored resolved config and data description (a checkpoint's, a model
    folder's), as training built them; one CheckpointError line naming `source` where they make none."""
    try:
        info = DataInfo.from_dict(data_info)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: its stored data description is missing or malformed "
                              f"({type(e).__name__}: {e})") from None
    try:
        if not isinstance(config, Mapping):
            raise ConfigError(f"a mapping was expected, not {type(config).__name__}")
        # parse_config names the key path; the file is named once, in front.
        G, D, _ = build_networks(parse_config(config, default_source="config"), info)
    except ConfigError as e:
        raise CheckpointError(f"{source}: its stored config is not valid for this ganforge ({e})") from None
    return G, D, info


def load_weights(module: nn.Module, weights: Any, name: str, origin: str | Path,
                 described_by: str = "its stored config") -> None:
    """Load a state dict into `module` (strict: every key, every shape); where it does not fit,
    one CheckpointError line naming the first parameter that differs and both shapes."""
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{origin}: holds no {name} weights")
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError) as e:  # torch's report of a mismatch is many lines
        first = " ".join(str(e).split())[:200]
        raise CheckpointError(_weights_mismatch(module, weights, name, origin, described_by) or
                              f"{origin}: {name} weights do not fit the network {described_by} describes "
                              f"({type(e).__name__}: {first})") from None


def _weights_mismatch(module: nn.Module, weights: Mapping[str, Any], name: str, origin: str | Path,
                      described_by: str) -> str | None:
    """The first difference between `weights` and the module's state dict, as one line (None: none found)."""
    target = module.state_dict()
    missing = [k for k in target if k not in weights]
    unexpected = [k for k in weights if k not in target]
    if missing or unexpected:
        key = (missing or unexpected)[0]
        where = ("is missing from the file" if missing else
                 f"is in the file but not in the network {described_by} describes")
        more = len(missing) + len(unexpected) - 1
        return f"{origin}: {name} parameter {key} {where}" + (f" (and {more} more)" if more else "")
    for key, value in target.items():
        stored = weights[key]
        if not isinstance(stored, Tensor):
            return f"{origin}: {name} parameter {key} is a {type(stored).__name__} in the file, not a tensor"
        if tuple(stored.shape) != tuple(value.shape):
            return (f"{origin}: {name} parameter {key} has shape {tuple(stored.shape)} in the file but "
                    f"{tuple(value.shape)} in the network {described_by} describes")
    return None


@dataclass(frozen=True)
class StoredNetworks:
    """Networks rebuilt from a checkpoint, in eval mode without gradients: those asked for (None:
    not asked for, or D where the checkpoint holds none), and the data they were built for."""

    info: DataInfo
    G: nn.Module | None = None
    G_ema: nn.Module | None = None
    D: nn.Module | None = None


def rebuild_networks(ckpt: Checkpoint, source: str | Path, names: Collection[Network], device: str = "cpu"
                     ) -> StoredNetworks:
    """The networks `names` (of G, G_ema, D) rebuilt from a checkpoint's config and loaded with its
    weights, on `device`; each failure is one CheckpointError line naming `source`. build_networks
    runs once (the regularizers change G and D together): D is dropped unless asked for, and G_ema
    is a copy of G where both are asked for."""
    if not names or set(names) - set(NETWORKS):
        raise ValueError(f"rebuild_networks: names must be some of {NETWORKS}, not {sorted(names)}")
    state = ckpt.state if isinstance(ckpt.state, Mapping) else {}
    G, D, info = build_stored_networks(ckpt.config, ckpt.data_info, source)
    nets: dict[str, nn.Module] = {}
    for name in ("G", "G_ema"):
        if name in names:
            nets[name] = G if not nets else copy.deepcopy(G)
            load_weights(nets[name], state.get(name), name, source)
    if "D" in names and isinstance(state.get("D"), Mapping):  # none in a file imported without its D
        load_weights(D, state["D"], "D", source)
        nets["D"] = D
    dev = resolve_device(device)
    return StoredNetworks(info, **{k: m.to(dev).eval().requires_grad_(False) for k, m in nets.items()})


def build_optimizer(component: Component, model: nn.Module, where: str) -> torch.optim.Optimizer:
    """An optimizer over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build(OPTIMIZERS, component, where, params=params)


def build_scheduler(component: Component, optimizer: torch.optim.Optimizer, total_steps: int, where: str
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR whose factor comes from the registered schedule."""
    factor = build(SCHEDULES, component, where, total_steps=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_extractor(component: Component, device: torch.device) -> FeatureExtractor:
    """The feature extractor of image metrics, on `device` (channels-last on the CPU, where it is faster)."""
    extractor = build(EXTRACTORS, component, "eval.extractor").to(device)
    return extractor.to(memory_format=torch.channels_last) if device.type == "cpu" else extractor


def evaluator_for(cfg: Config, source: DataSource, device: torch.device, progress: bool = True,
                  **overrides: Any) -> Evaluator:
    """An Evaluator from a config's eval section (keyword arguments override it). The metrics are
    checked before the extractor is built, which may load or download its weights."""
    e = cfg.eval
    options: dict[str, Any] = {
        "metrics": e.metrics, "num_samples": e.num_samples, "real_samples": e.real_samples,
        "batch_size": e.batch_size, "cache_dir": e.cache_dir, "extractor_cfg": e.extractor, "resize": e.resize,
        "protocol": e.protocol, "kid_subset_size": e.kid_subset_size, "dinov2_weights": e.dinov2_weights,
        "lpips": e.lpips,
    }
    options.update({k: v for k, v in overrides.items() if v is not None})
    extractor_cfg = options.pop("extractor_cfg")
    eval_options = EvalOptions(options.pop("resize"), options.pop("protocol"), options.pop("kid_subset_size"))
    metrics = check_evaluable(options.pop("metrics"), source.info, options["num_samples"])
    if source.info.is_image and views_of(metrics, eval_options, real=True):
        source.require_samples()  # a run without a data set says so before any weights are looked for
    lpips_path = options.pop("lpips")
    lpips = load_metric_lpips(lpips_path) if any("lpips" in declared(m).needs for m in metrics) else None
    # The Inception (eval.extractor) only when a metric reads its features: fd_dinov2 alone does not.
    needs_main = source.info.is_image and bool({"main", "torch-fidelity"} & set(views_of(metrics, eval_options)))
    extractor = build_extractor(extractor_cfg, device) if needs_main else None
    return Evaluator(cfg.data, source, metrics, extractor=extractor, device=device, progress=progress,
                     options=eval_options, lpips=lpips, **options)


def check_compatible(cfg: Config, info: DataInfo) -> None:
    """Refuse, in one line naming both keys, a generator, discriminator, regularizer or eval
    metric whose declared data (`accepts`) do not fit the data, before anything is built."""
    check_accepts(GENERATORS.get(cfg.generator.kind, "generator"), info, "generator", cfg.generator.kind)
    check_accepts(DISCRIMINATORS.get(cfg.discriminator.kind, "discriminator"), info, "discriminator",
                  cfg.discriminator.kind)
    for i, c in enumerate(cfg.regularizers):
        check_accepts(REGULARIZERS.get(c.kind, f"regularizers.{i}"), info, f"regularizers.{i}", c.kind)
    # Names, and images or 2D points, first: in the metrics' own words ("fid needs images; for 2D data use modes").
    check_metrics(cfg.eval.metrics, info.is_image)
    for name in default_metrics(cfg.eval.metrics, info.is_image):
        check_accepts(METRICS.get(name, "eval.metrics"), info, "eval.metrics", name)


def check_init(cfg: Config) -> None:
    """A new run's `init.checkpoint` names an existing checkpoint file or run folder."""
    if cfg.init.checkpoint is None:
        return
    from ganforge.run import find_checkpoint

    try:
        path, _ = find_checkpoint(Path(cfg.init.checkpoint).expanduser())
    except CheckpointError as e:
        raise ConfigError(f"init.checkpoint: {e}") from None
    # A cheap look at the file now, rather than a failed load after the run folder is made.
    if path.is_file() and not zipfile.is_zipfile(path):
        from ganforge.checkpoint import not_a_zip

        raise ConfigError(f"init.checkpoint: {not_a_zip(path)}; expected a step-N.pt file or a run folder that "
                          "`ganforge train` wrote")
    if not path.is_file():
        raise ConfigError(f"init.checkpoint: {path} is not a ganforge checkpoint (expected a step-N.pt file or a run "
                          "folder that `ganforge train` wrote)")


def validate(cfg: Config, processes: int = 1) -> tuple[DataInfo, Footprint]:
    """Build what can be built cheaply (data source, both networks) to surface config errors
    before anything runs, after checking that training with `processes` processes fits the
    device's memory; returns the data description and the memory estimate."""
    source = build_data(cfg)
    info = source.info
    source.require_samples()  # a run without a data set (kind: shape) has nothing to train on
    check_compatible(cfg, info)
    footprint = check_fits(cfg, processes, lambda: build_generator(cfg.generator, info),
                           lambda: build_discriminator(cfg.discriminator, info), lambda: build_networks(cfg, info)[:2])
    build_loss(cfg)
    check_metrics(cfg.eval.metrics, info.is_image, cfg.eval.best, num_samples=cfg.eval.num_samples)
    return info, footprint
