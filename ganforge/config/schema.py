"""The config schema: one frozen dataclass per section of a run config.

Component sections (`generator: {kind: dcgan, base_width: 64}`) name a registered builder whose
keyword arguments and their type hints are the schema for the remaining keys (see parse.py).
Fields that a resumed run may change carry `RESUMABLE` in their metadata.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ganforge.errors import ConfigError
from ganforge.params import Range

# Field metadata of a key (or a whole section) that may change when a run is resumed: budget and
# intervals, nothing that alters the networks, the data or the optimizer state.
RESUMABLE = {"resumable": True}

# The networks of a training state, as `init.load` names them and checkpoints store them.
Network = Literal["G", "D", "G_ema"]
NETWORKS: tuple[Network, ...] = typing.get_args(Network)


@dataclass(frozen=True)
class Component:
    """A component chosen by short name, with its fully resolved keyword arguments."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


def _component(registry: str, kind: str | None = None) -> Any:
    """A dataclass field holding a Component from `registry` (required when `kind` is None)."""
    meta = {"registry": registry}
    if kind is None:
        return field(metadata=meta)
    return field(default_factory=lambda: Component(kind), metadata=meta)


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizers of the generator and the discriminator (kinds from the optimizer registry)."""

    g: Component = _component("optimizer", "adam")
    d: Component = _component("optimizer", "adam")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedules of the generator and the discriminator, stepped once per step."""

    g: Component = _component("schedule", "constant")
    d: Component = _component("schedule", "constant")


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of the generator's weights, used for samples."""

    decay: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.999  # per step; 0 turns the average off
    start: Annotated[int, Range(ge=0)] = 0  # steps before averaging starts (EMA copies G until then)
    # StyleGAN2-ADA's ramp-up: the averaging half-life is at most rampup x the images seen so far, so
    # the random initial weights are forgotten quickly; null averages with `decay` from the start.
    rampup: Annotated[float, Range(gt=0.0)] | None = 0.05
    # BigGAN's standing statistics: before G_ema is read (samples, evaluation, checkpoints), its
    # BatchNorm statistics are recomputed from this many batches (train.batch_size) of its own
    # outputs, instead of the copies of G's, which belong to G's weights. 0 keeps the copies
    # (StyleGAN2-ADA's way); generators without BatchNorm are not affected.
    standing_stats: Annotated[int, Range(ge=0)] = 16


CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: budget, batch, update ratio, seed, device and numerics."""

    steps: Annotated[int, Range(ge=1)] = field(default=10_000, metadata=RESUMABLE)  # generator updates
    batch_size: Annotated[int, Range(ge=1)] = 64  # real images per discriminator update, over all processes
    # Samples per generator update, over all processes; null: batch_size. SNGAN and WGAN-GP update G
    # on twice D's batch (sngan_projection's n_gen_samples: 128, igul222's GEN_BS_MULTIPLE = 2).
    g_batch_size: Annotated[int, Range(ge=1)] | None = None
    # The generator step's noise: fresh draws, or `d_step`: the last D step's latent codes (and
    # classes) again, as pytorch/examples' DCGAN, whose G step reuses the D step's fakes.
    g_noise: Literal["fresh", "d_step"] = "fresh"
    # Lazy regularization (a regularizer with every > 1): `folded` adds its term to the regular update
    # of every k-th step (one optimizer step); `separate` gives it a phase of its own after that
    # update, with its own optimizer step, and scales the player's Adam lr by k/(k+1) and betas to
    # the power k/(k+1), as StyleGAN2-ADA's Dreg/Greg phases.
    # StyleGAN2-ADA's own phases: on stylegan2_digits (3 seeds) its EMA scored 17.7 against 19.8
    # folded (README, quality on the CPU); the quickstart sets `folded`, better there.
    lazy: Literal["folded", "separate"] = "separate"
    # Micro-batches per update on each process (gradient accumulation).
    accumulate: Annotated[int, Range(ge=1)] = field(default=1, metadata=RESUMABLE)
    d_steps_per_g_step: Annotated[int, Range(ge=1)] = 1
    seed: Annotated[int, Range(ge=0, lt=2**32)] = 0  # numpy's limit; torch adds offsets to it
    device: str = field(default="auto", metadata=RESUMABLE)  # auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = field(default=False, metadata=RESUMABLE)
    # torch.compile the networks (regularizers run uncompiled): false, true (= "default") or a mode.
    compile: bool | CompileMode = field(default=False, metadata=RESUMABLE)
    # Wall-clock budget of one `ganforge train` invocation: when spent, training stops as on SIGTERM
    # (finishes the step, saves a checkpoint); --resume continues. null: no budget.
    max_minutes: Annotated[float, Range(gt=0.0)] | None = field(default=None, metadata=RESUMABLE)
    # `ganforge train CONFIG` continues the run in output.dir from its newest good checkpoint
    # when there is one of this config (a requeued or restarted job), and starts it otherwise.
    auto_resume: bool = field(default=False, metadata=RESUMABLE)
    # Several processes: the longest one waits for the others at a barrier or an all-reduce
    # before it stops with one line. Rank 0 evaluates alone (eval.every) while the others wait,
    # so keep it above an evaluation's time.
    peer_timeout_minutes: Annotated[float, Range(gt=0.0)] = field(default=30.0, metadata=RESUMABLE)
    # Multi-GPU: BatchNorm statistics over all processes (CUDA only).
    sync_batchnorm: bool = field(default=False, metadata=RESUMABLE)
    # On CUDA: deterministic cuDNN kernels; false lets cuDNN autotune.
    deterministic: bool = field(default=True, metadata=RESUMABLE)
    on_nonfinite: Literal["stop", "rollback"] = "stop"  # what a NaN/inf loss or weight does
    rollback_lr_factor: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.5  # lr multiplier per rollback
    max_rollbacks: Annotated[int, Range(ge=1)] = 3
    ema: EMAConfig = field(default_factory=EMAConfig)

    def __post_init__(self) -> None:
        if self.g_noise == "d_step" and self.generator_batch != self.batch_size:
            raise ValueError(f"g_noise: d_step reuses the D step's noise, so g_batch_size ({self.g_batch_size}) must "
                             f"equal batch_size ({self.batch_size}); set g_noise: fresh or drop g_batch_size")

    @property
    def generator_batch(self) -> int:
        """Samples per generator update, over all processes."""
        return self.batch_size if self.g_batch_size is None else self.g_batch_size

    @property
    def compile_mode(self) -> str | None:
        """The torch.compile mode, or None when the networks run uncompiled."""
        if self.compile is False:
            return None
        return "default" if self.compile is True else self.compile


@dataclass(frozen=True)
class WandbConfig:
    """A Weights & Biases run that mirrors the log, the sample grids and the config (pip install 'ganforge[wandb]')."""

    project: str = "ganforge"
    entity: str | None = None  # a W&B user or team; null: the logged-in user's default
    # offline writes the run's files under RUN/wandb (`wandb sync` uploads them later).
    mode: Literal["online", "offline"] = "online"


@dataclass(frozen=True)
class MlflowConfig:
    """An MLflow run that mirrors the log, the sample grids and the config (pip install 'ganforge[mlflow]')."""

    tracking_uri: str | None = None  # http://host:5000, sqlite:///mlflow.db, file:...; null: MLFLOW_TRACKING_URI
    experiment: str = "ganforge"


@dataclass(frozen=True)
class LogConfig:
    """How often losses, learning rates and speed go to the progress bar and log.jsonl, and the
    experiment trackers that mirror it (a resumed run continues the same tracker run)."""

    every: Annotated[int, Range(ge=1)] = field(default=100, metadata=RESUMABLE)
    tensorboard: bool = False  # also write event files to RUN/tensorboard (pip install 'ganforge[tensorboard]')
    wandb: WandbConfig | None = field(default=None, metadata=RESUMABLE)
    mlflow: MlflowConfig | None = field(default=None, metadata=RESUMABLE)


@dataclass(frozen=True)
class SamplesConfig:
    """How often a grid from fixed noise is written, and how many samples it shows."""

    every: Annotated[int, Range(ge=1)] = field(default=1000, metadata=RESUMABLE)
    num: Annotated[int, Range(ge=1, le=100_000)] = 64


@dataclass(frozen=True)
class CheckpointConfig:
    """How often the complete training state is saved, and how many checkpoints are kept."""

    every: Annotated[int, Range(ge=1)] = field(default=1000, metadata=RESUMABLE)
    keep: Annotated[int, Range(ge=1)] = field(default=3, metadata=RESUMABLE)


@dataclass(frozen=True)
class EvalConfig:
    """Metrics during training (every N steps) and the defaults of `ganforge eval`."""

    every: Annotated[int, Range(ge=0)] = 0  # 0: no evaluation during training
    metrics: tuple[str, ...] = ()  # names from `ganforge list metric`; none: fid (images) or modes (2D)
    num_samples: Annotated[int, Range(ge=2)] = 10_000  # generated samples per evaluation
    real_samples: Annotated[int, Range(ge=2)] | None = None  # real samples for the reference (default: as many)
    best: str | None = None  # a figure (fid, kid, is, precision, ...) that picks checkpoints/best.pt
    extractor: Component = _component("extractor", "inception")
    batch_size: Annotated[int, Range(ge=1)] = 100
    cache_dir: str | None = None  # real-data statistics (default: ~/.cache/ganforge/stats)
    # How images reach the Inception's 299 px: legacy (pytorch-fid's bilinear, as published FIDs)
    # or clean (clean-fid's antialiased bicubic, as clean-fid's tables).
    resize: Literal["legacy", "clean"] = "legacy"
    # IS and KID resized and computed as pytorch-fid (ganforge's default) or torch-fidelity does.
    protocol: Literal["pytorch-fid", "torch-fidelity"] = "pytorch-fid"
    kid_subset_size: Annotated[int, Range(ge=2)] = 1000  # KID's subsets (torch-fidelity: needs this many)
    dinov2_weights: str | None = None  # fd_dinov2: dinov2_vitl14_pretrain.pth (default: the torch hub cache)
    lpips: str | None = None  # ppl: LPIPS's vgg.pth (default: the torch hub cache), as ganforge project --lpips


@dataclass(frozen=True)
class InitConfig:
    """Weights to start a new run from (fine-tuning): another run's checkpoint and what to take from it."""

    checkpoint: str | None = None  # a checkpoint file or run folder; null: random initialisation
    load: tuple[Network, ...] = NETWORKS  # the networks copied from it
    # FreezeD (Mo et al. 2020): D's first N layers keep the loaded weights and are not trained.
    freeze_d_layers: Annotated[int, Range(ge=0)] = 0
    # false: layers whose shapes differ (another resolution or class count) keep their fresh weights.
    strict_shapes: bool = True
    # With an `ada` regularizer here and in the checkpoint's run: start at the checkpoint's p
    # instead of `initial_p` (false starts at initial_p, as StyleGAN2-ADA's --resume does).
    ada_p: bool = True

    def __post_init__(self) -> None:
        if self.checkpoint is not None and not self.load:
            raise ValueError("load: name at least one of G, D, G_ema to take from init.checkpoint")


@dataclass(frozen=True)
class OutputConfig:
    """Where the run folder goes (default: runs/<config file name>)."""

    dir: str | None = None


@dataclass(frozen=True)
class Config:
    """One complete experiment."""

    data: Component = _component("data")
    generator: Component = _component("generator")
    discriminator: Component = _component("discriminator")
    loss: Component = _component("loss", "non_saturating")
    regularizers: tuple[Component, ...] = field(default=(), metadata={"registry": "regularizer"})
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig, metadata=RESUMABLE)  # every key in it
    init: InitConfig = field(default_factory=InitConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


# --------------------------------------------------------------------------------------------
# Resuming: which changes the fields' metadata allows
# --------------------------------------------------------------------------------------------


def resumable_keys(schema: type = Config, prefix: str = "") -> list[str]:
    """Dotted keys marked RESUMABLE, in schema order; a marked section ends in a dot (any key in it)."""
    hints = typing.get_type_hints(schema)
    keys = []
    for f in dataclasses.fields(schema):
        # A section, or an optional one (`log.wandb`: null or a mapping).
        optional = typing.get_args(hints[f.name]) if isinstance(hints[f.name], types.UnionType) else ()
        section = any(dataclasses.is_dataclass(t) for t in (hints[f.name], *optional))
        if f.metadata.get("resumable"):
            keys.append(f"{prefix}{f.name}" + ("." if section else ""))
            if section and not dataclasses.is_dataclass(hints[f.name]):
                keys.append(f"{prefix}{f.name}")  # the optional section itself, added or removed
        elif section:
            keys += resumable_keys(hints[f.name], f"{prefix}{f.name}.")
    return keys


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs (config_to_dict)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(dict.fromkeys([*old, *new]))
        return [k for key in keys for k in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def unresumable_changes(before: Mapping[str, Any], after: Mapping[str, Any], schema: type = Config) -> list[str]:
    """Dotted keys that differ between two plain configs and are not marked RESUMABLE, in config order."""
    allowed = resumable_keys(schema)
    return [key for key in changed_keys(dict(before), dict(after))
            if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in allowed)]


def check_resumable(before: Mapping[str, Any], after: Mapping[str, Any], schema: type = Config) -> None:
    """Refuse a resumed run's config that changes a key not marked RESUMABLE (ConfigError naming it)."""
    changes = unresumable_changes(before, after, schema)
    if changes:
        listed = ", ".join(k + "*" if k.endswith(".") else k for k in resumable_keys(schema))
        raise ConfigError(f"--set {changes[0]}: cannot change when resuming (it would alter the networks, data or "
                          f"optimizer state); resumable changes: {listed}")
