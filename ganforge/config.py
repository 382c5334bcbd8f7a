"""Typed, frozen run configs: YAML files with `base:` inheritance and `--set` overrides.

A config is one runnable experiment. Sections are frozen dataclasses; component sections
(`generator: {kind: dcgan, base_width: 64}`) name a registered builder whose keyword arguments
and their type hints are the schema for the remaining keys. Every error names the file (or
`--set`), the key path and what would be valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from ganforge.errors import ConfigError, reading
from ganforge.params import Range

# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


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


CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: budget, batch, update ratio, seed, device and numerics."""

    steps: Annotated[int, Range(ge=1)] = 10_000  # generator updates
    batch_size: Annotated[int, Range(ge=1)] = 64  # real images per discriminator update, over all processes
    accumulate: Annotated[int, Range(ge=1)] = 1  # micro-batches per update on each process (gradient accumulation)
    d_steps_per_g_step: Annotated[int, Range(ge=1)] = 1
    seed: Annotated[int, Range(ge=0, lt=2**32)] = 0  # numpy's limit; torch adds offsets to it
    device: str = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    # torch.compile the networks (regularizers run uncompiled): false, true (= "default") or a mode.
    compile: bool | CompileMode = False
    # Wall-clock budget of one `ganforge train` invocation: when spent, training stops as on SIGTERM
    # (finishes the step, saves a checkpoint); --resume continues. null: no budget.
    max_minutes: Annotated[float, Range(gt=0.0)] | None = None
    sync_batchnorm: bool = False  # multi-GPU: BatchNorm statistics over all processes (CUDA only)
    deterministic: bool = True  # on CUDA: deterministic cuDNN kernels; false lets cuDNN autotune
    on_nonfinite: Literal["stop", "rollback"] = "stop"  # what a NaN/inf loss or weight does
    rollback_lr_factor: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.5  # lr multiplier per rollback
    max_rollbacks: Annotated[int, Range(ge=1)] = 3
    ema: EMAConfig = field(default_factory=EMAConfig)

    @property
    def compile_mode(self) -> str | None:
        """The torch.compile mode, or None when the networks run uncompiled."""
        if self.compile is False:
            return None
        return "default" if self.compile is True else self.compile


@dataclass(frozen=True)
class LogConfig:
    """How often losses, learning rates and speed go to the progress bar and log.jsonl."""

    every: Annotated[int, Range(ge=1)] = 100
    tensorboard: bool = False  # also write event files to RUN/tensorboard (pip install 'ganforge[tensorboard]')


@dataclass(frozen=True)
class SamplesConfig:
    """How often a grid from fixed noise is written, and how many samples it shows."""

    every: Annotated[int, Range(ge=1)] = 1000
    num: Annotated[int, Range(ge=1, le=100_000)] = 64


@dataclass(frozen=True)
class CheckpointConfig:
    """How often the complete training state is saved, and how many checkpoints are kept."""

    every: Annotated[int, Range(ge=1)] = 1000
    keep: Annotated[int, Range(ge=1)] = 3


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


@dataclass(frozen=True)
class InitConfig:
    """Weights to start a new run from (fine-tuning): another run's checkpoint and what to take from it."""

    checkpoint: str | None = None  # a checkpoint file or run folder; null: random initialisation
    load: tuple[Literal["G", "D", "G_ema"], ...] = ("G", "D", "G_ema")  # the networks copied from it
    # FreezeD (Mo et al. 2020): D's first N layers keep the loaded weights and are not trained.
    freeze_d_layers: Annotated[int, Range(ge=0)] = 0
    # false: layers whose shapes differ (another resolution or class count) keep their fresh weights.
    strict_shapes: bool = True

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
    eval: EvalConfig = field(default_factory=EvalConfig)
    init: InitConfig = field(default_factory=InitConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


# --------------------------------------------------------------------------------------------
# Component parameters, read from the builders' signatures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One keyword argument of a component builder."""

    name: str
    type: Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def component_params(builder: Any, injected: tuple[str, ...] = ()) -> list[ParamSpec]:
    """The user-settable keyword arguments of `builder` (a class or function), with types."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    hints = typing.get_type_hints(target, include_extras=True)
    specs = []
    for name, p in inspect.signature(builder).parameters.items():
        if name in injected or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        specs.append(ParamSpec(name, hints.get(name, Any), p.default))
    return specs


def type_name(tp: Any) -> str:
    """A short human name for a type hint (`float > 0`, `one of fp32|bf16`)."""
    base, limits = _strip_annotated(tp)
    origin = typing.get_origin(base)
    if origin is Literal:
        text = "one of " + "|".join(str(a) for a in typing.get_args(base))
    elif origin in (Union, types.UnionType):
        text = " or ".join("null" if a is type(None) else type_name(a) for a in typing.get_args(base))
    elif origin in (tuple, list):
        args = [a for a in typing.get_args(base) if a is not Ellipsis]
        text = f"list of {type_name(args[0])}" if args else "list"
    elif isinstance(base, type):
        text = {"str": "text", "bool": "true/false", "int": "integer", "float": "number"}.get(
            base.__name__, base.__name__
        )
    else:
        text = str(base)
    return text + "".join(f" {r}" for r in limits)


# --------------------------------------------------------------------------------------------
# Loading YAML: base inheritance, overrides, origins for error messages
# --------------------------------------------------------------------------------------------

Origins = dict[tuple[str, ...], str]


# A config has a few hundred values; far more means YAML aliases multiplying one another.
MAX_VALUES = 100_000


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, with every failure a yaml.YAMLError and only trees let through."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as e:
        # PyYAML's constructors let some bad scalars out as plain Python errors (2001-02-30, !!int x).
        raise yaml.YAMLError(f"{' '.join(str(e).split())}") from None
    _check_tree(data)
    return data


def _check_tree(data: Any) -> None:
    """Refuse data that refers to itself (`&a [*a]`) or repeats aliases into millions of values."""
    count, stack = 0, [(data, ())]
    while stack:
        node, parents = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise yaml.YAMLError(f"more than {MAX_VALUES} values (aliases repeated?); a config is far smaller")
        if isinstance(node, (dict, list)):
            if id(node) in parents:
                raise yaml.YAMLError("an alias refers to a mapping or list that contains it")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, (*parents, id(node))) for child in children)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with reading(path, "a YAML config file"):
            data = load_yaml(path.read_bytes().decode("utf-8"))
    except ConfigError:
        if not path.exists():
            raise ConfigError(f"config file not found: {path}") from None
        raise
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def _record_origins(data: Any, prefix: tuple[str, ...], source: str, origins: Origins) -> None:
    origins[prefix] = source
    if isinstance(data, dict):
        for key, value in data.items():
            _record_origins(value, (*prefix, str(key)), source, origins)


def _merge(base: dict, child: dict) -> dict:
    """Child keys win; nested mappings merge, except a component whose `kind` changes."""
    out = dict(base)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("kind") == value.get("kind", old.get("kind")):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def _load_with_base(path: Path, origins: Origins, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config inheritance loops: {chain}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    merged: dict[str, Any] = {}
    if base is not None:
        if not isinstance(base, str) or not base or "\0" in base:
            raise ConfigError(f"{path}: base: expected a file name, got {base!r}")
        merged = _load_with_base(path.parent / base, origins, (*seen, path))
    _record_origins(data, (), str(path), origins)
    return _merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (['section', 'key'], value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    try:
        parsed = load_yaml(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value  # not YAML: the text itself
    return key.strip().split("."), parsed


# A value set by a command-line flag: (dotted key, value, the flag as the user wrote it).
Flag = tuple[str, Any, str]


def apply_overrides(raw: dict[str, Any], overrides: list[str], origins: Origins, flags: list[Flag] | None = None
                    ) -> dict[str, Any]:
    """Apply `--set a.b=v` overrides, then values of flags such as `--max-minutes`, to a raw config
    mapping (returns a new mapping)."""
    raw = _merge({}, raw)
    for text in overrides:
        keys, value = parse_override(text)
        _set_key(raw, keys, value, f"--set {text}", origins)
    for dotted, value, label in flags or []:
        _set_key(raw, dotted.split("."), value, label, origins)
    return raw


def _set_key(raw: dict[str, Any], keys: list[str], value: Any, label: str, origins: Origins) -> None:
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{label}: {'.'.join(keys[: i + 1])} is not a section")
        else:
            child = node[key] = dict(child)
        node = child
    old = node.get(keys[-1])
    if isinstance(old, dict) and isinstance(value, dict):
        value = _merge(old, value)
    node[keys[-1]] = value
    _record_origins(value, tuple(keys), label, origins)


def load_config(path: str | Path, overrides: list[str] | None = None, flags: list[Flag] | None = None
                ) -> tuple[Config, dict[str, Any]]:
    """Read, merge, override and validate a config file; returns (config, resolved dict)."""
    path = Path(path)
    origins: Origins = {}
    raw = _load_with_base(path, origins)
    raw = apply_overrides(raw, overrides or [], origins, flags)
    output = raw.get("output")
    if output is None or (isinstance(output, dict) and not output.get("dir")):
        # The run folder defaults to runs/<config name>, relative to where ganforge runs.
        raw["output"] = {**(output or {}), "dir": f"runs/{path.stem}"}
    cfg = parse_config(raw, origins, default_source=str(path))
    return cfg, config_to_dict(cfg)


# --------------------------------------------------------------------------------------------
# Validation: raw mapping -> typed Config
# --------------------------------------------------------------------------------------------


class _Parser:
    """Walks a raw mapping against the schema, naming file and key path in every error."""

    def __init__(self, origins: Origins | None, default_source: str) -> None:
        self.origins = origins or {}
        self.default_source = default_source

    def fail(self, path: tuple[str, ...], message: str) -> ConfigError:
        source = self.default_source
        for n in range(len(path), -1, -1):
            if path[:n] in self.origins:
                source = self.origins[path[:n]]
                break
        dotted = ".".join(path) or "(top level)"
        return ConfigError(f"{source}: {dotted}: {message}")

    def unknown_key(self, path: tuple[str, ...], key: str, valid: list[str]) -> ConfigError:
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" (did you mean {'.'.join((*path, close[0]))!r}?)" if close else ""
        return self.fail((*path, key), f"unknown key{hint}; valid keys here: {', '.join(valid)}")

    # -- dataclass sections --------------------------------------------------------------

    def dataclass(self, cls: type, value: Any, path: tuple[str, ...]) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping of keys, got {value!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls, include_extras=True)
        for key in value:
            if key not in fields:
                raise self.unknown_key(path, str(key), list(fields))
        kwargs = {}
        for name, f in fields.items():
            sub = (*path, name)
            registry = f.metadata.get("registry")
            present = name in value
            if registry is not None and name == "regularizers":
                items = value.get(name) or []
                if not isinstance(items, list):
                    raise self.fail(sub, "expected a list of {kind: ...} entries")
                kwargs[name] = tuple(self.component(registry, v, (*sub, str(i))) for i, v in enumerate(items))
            elif registry is not None:
                default_kind = f.default_factory().kind if f.default_factory is not dataclasses.MISSING else None
                if present:
                    kwargs[name] = self.component(registry, value[name], sub, default_kind)
                elif default_kind is not None:
                    kwargs[name] = self.component(registry, {"kind": default_kind}, sub)
                else:
                    raise self.fail(sub, f"missing section (add `{name}: {{kind: ...}}`)")
            elif present:
                kwargs[name] = self.value(hints[name], value[name], sub)
            elif dataclasses.is_dataclass(hints[name]):
                kwargs[name] = self.dataclass(hints[name], {}, sub)
        try:
            return cls(**kwargs)
        except ValueError as e:  # a section's own check across its keys (__post_init__)
            raise self.fail(path, str(e)) from None

    # -- components -----------------------------------------------------------------------

    def component(self, registry_name: str, value: Any, path: tuple[str, ...],
                  default_kind: str | None = None) -> Component:
        from ganforge.registry import ALL_REGISTRIES

        registry = ALL_REGISTRIES[registry_name]
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected {{kind: ...}} naming a {registry.what}, got {value!r}")
        if "kind" not in value and default_kind is not None:
            value = {"kind": default_kind, **value}
        if "kind" not in value:
            raise self.fail(path, f"missing `kind`; valid kinds: {', '.join(registry.names())}")
        kind = value["kind"]
        if not isinstance(kind, str):
            raise self.fail((*path, "kind"), f"expected the name of a {registry.what}, got {kind!r}; valid: "
                                             f"{', '.join(registry.names())}")
        if kind not in registry:
            close = difflib.get_close_matches(str(kind), registry.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(
                (*path, "kind"),
                f"unknown {registry.what} {kind!r}{hint}; valid: {', '.join(registry.names())}",
            )
        specs = {s.name: s for s in component_params(registry.get(kind).builder, registry.injected)}
        params: dict[str, Any] = {}
        for key, v in value.items():
            if key == "kind":
                continue
            if key in registry.injected:
                raise self.fail((*path, key), "is set by ganforge from the data and training sections")
            if key not in specs:
                raise self.unknown_key(path, str(key), ["kind", *specs])
            params[key] = self.value(specs[key].type, v, (*path, key))
        for name, spec in specs.items():
            if name not in params:
                if spec.required:
                    raise self.fail((*path, name), f"missing (a {type_name(spec.type)}) for {kind}")
                params[name] = spec.default
        return Component(kind, params)

    # -- plain values ---------------------------------------------------------------------

    def value(self, tp: Any, value: Any, path: tuple[str, ...]) -> Any:
        base, limits = _strip_annotated(tp)
        out = self._coerce(base, value, path)
        for limit in limits:
            if isinstance(out, (int, float)) and not isinstance(out, bool):
                why = limit.violation(out)
                if why:
                    raise self.fail(path, f"{why}, got {value!r}")
        return out

    def _coerce(self, tp: Any, value: Any, path: tuple[str, ...]) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, value, path)
        if origin is Literal:
            choices = typing.get_args(tp)
            # Types must match too: YAML's `true` equals 1 but is no channel count.
            if not any(value == c and type(value) is type(c) for c in choices):
                close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(path, f"must be one of {', '.join(map(str, choices))}, got {value!r}{hint}")
            return value
        if origin in (Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.value(arg, value, path)
                except ConfigError as e:
                    errors.append(e)
            if len(errors) > 1:  # several kinds of value fit here: name them all
                raise self.fail(path, f"expected {type_name(tp)}, got {value!r}")
            raise errors[0]
        if origin in (tuple, list):
            args = typing.get_args(tp)
            if not isinstance(value, (list, tuple)):
                raise self.fail(path, f"expected a list ({type_name(tp)}), got {value!r}")
            if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
                raise self.fail(path, f"expected a list of {len(args)} values, got {len(value)}")
            item_types = [args[0]] * len(value) if (not args or args[-1] is Ellipsis or origin is list) \
                else list(args)
            if not args:
                item_types = [Any] * len(value)
            items = [self.value(t, v, (*path, str(i))) for i, (t, v) in enumerate(zip(item_types, value))]
            return tuple(items) if origin is tuple else items
        if tp is bool:
            if not isinstance(value, bool):
                raise self.fail(path, f"expected true or false, got {value!r}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise self.fail(path, f"expected an integer, got {value!r}")
            if not -(2**63) <= value < 2**63:  # nothing ganforge counts needs more than 64 bits
                raise self.fail(path, f"{value} is too large for an integer here")
            return value
        if tp is float:
            number = None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                number = value
            elif isinstance(value, str):
                # YAML 1.1 reads `2e-4` (no dot) as text; accept it as the number it means.
                with contextlib.suppress(ValueError):
                    number = float(value)
            if number is None:
                raise self.fail(path, f"expected a number, got {value!r}")
            try:
                number = float(number)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):  # inf and nan pass every range check; no setting means them
                raise self.fail(path, f"expected a finite number, got {value!r}")
            return number
        if tp is str:
            if not isinstance(value, str):
                raise self.fail(path, f"expected text, got {value!r}")
            return value
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                raise self.fail(path, f"expected a mapping, got {value!r}")
            return dict(value)
        raise self.fail(path, f"unsupported parameter type {tp!r}")


def _strip_annotated(tp: Any) -> tuple[Any, list[Range]]:
    if typing.get_origin(tp) is Annotated:
        base, *extras = typing.get_args(tp)
        return base, [e for e in extras if isinstance(e, Range)]
    return tp, []


def parse_config(raw: Mapping[str, Any], origins: Origins | None = None, default_source: str = "config") -> Config:
    """Validate a raw mapping (from YAML or a checkpoint) into a typed Config."""
    return _Parser(origins, default_source).dataclass(Config, dict(raw), ())


# --------------------------------------------------------------------------------------------
# Back to plain data
# --------------------------------------------------------------------------------------------


def config_to_dict(cfg: Any) -> Any:
    """A typed config as plain YAML/JSON-ready data (tuples become lists)."""
    if isinstance(cfg, Component):
        return {"kind": cfg.kind, **{k: config_to_dict(v) for k, v in cfg.params.items()}}
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Resolved config text, in the section order of the schema."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None, width=100)
