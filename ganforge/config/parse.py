"""The type-checking engine: a raw mapping (from YAML or a checkpoint) -> a typed, frozen Config.

Dataclass fields and component builders' keyword arguments, with their type hints, are the schema;
every error names the file (or `--set`), the key path and what would be valid.
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
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from ganforge.config.schema import Component, Config
from ganforge.errors import ConfigError
from ganforge.params import Range

# Where each key path of a raw config came from (a file, or `--set ...`), for error messages.
Origins = dict[tuple[str, ...], str]


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
            if registry is not None and typing.get_origin(hints[name]) is tuple:  # a list of components
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
        builder = registry.get(kind).builder
        specs = {s.name: s for s in component_params(builder, registry.injected)}
        params: dict[str, Any] = {}
        for key, v in value.items():
            if key == "kind":
                continue
            if key in registry.injected:
                raise self.fail((*path, key), "is set by ganforge from the data and training sections")
            if retired_message(builder, kind, str(key)):
                raise self.fail((*path, key), retired_message(builder, kind, str(key)))  # type: ignore[arg-type]
            if key not in specs:
                raise self.unknown_key(path, str(key), ["kind", *specs])
            params[key] = self.value(specs[key].type, v, (*path, key))
        for name, spec in specs.items():
            if name not in params:
                if spec.required:
                    raise self.fail((*path, name), f"missing (a {type_name(spec.type)}) for {kind}")
                # Through the same coercion as a value given in the file (a tuple default of a list
                # parameter becomes a list), so that the resolved config parses back to an equal one.
                params[name] = self.value(spec.type, spec.default, (*path, name))
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


def retired_message(builder: Any, kind: str, key: str) -> str | None:
    """What became of parameter `key` of a component that no longer has it (its builder's
    `retired_params`), or None."""
    retired = getattr(builder, "retired_params", {})
    return f"{kind} has no such parameter: {retired[key]}" if key in retired else None


def retired_parameter(raw: Mapping[str, Any]) -> str | None:
    """`generator.key: what became of it` for the first network parameter of a raw (stored)
    config that its component has retired, or None: a checkpoint of an earlier network."""
    from ganforge.registry import ALL_REGISTRIES

    for section in ("generator", "discriminator"):
        value = raw.get(section)
        registry = ALL_REGISTRIES[section]
        if isinstance(value, Mapping) and isinstance(value.get("kind"), str) and value["kind"] in registry:
            builder = registry.get(value["kind"]).builder
            for key in value:
                message = retired_message(builder, value["kind"], str(key))
                if message:
                    return f"{section}.{key}: {message}"
    return None


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
