"""The config as a JSON Schema (draft-07, which yaml-language-server and most editors read), made
from what the loader checks: the sections' dataclasses, each registry's kinds with their
builders' keyword arguments, their types, `Literal` choices and `Range` limits.

A file with `base:` may leave out sections and kinds that its base gives, so it is checked
against the same schema without the required sections and with `kind` optional (the loader
checks the merged result). `ganforge config --schema` prints it; tests/test_schema.py validates
every shipped config with it and checks that it refuses what the loader refuses.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Annotated, Any, Literal, Union

from ganforge.config.parse import component_params
from ganforge.config.schema import Component, Config
from ganforge.params import Range

DRAFT = "http://json-schema.org/draft-07/schema#"
# The key of a config file that names the file it extends (config/load.py).
BASE_KEY = "base"
# YAML 1.1 (PyYAML) reads `2e-4` as text; the loader takes such text as the number it means.
NUMBER_TEXT = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a config file."""
    from ganforge.registry import ALL_REGISTRIES

    definitions: dict[str, Any] = {}
    for name, registry in ALL_REGISTRIES.items():
        definitions[f"{name}_kinds"] = _kinds(registry, partial=False)
        definitions[f"{name}_kinds_partial"] = _kinds(registry, partial=True)
    definitions["config"] = _section(Config, partial=False)
    definitions["config_with_base"] = _section(Config, partial=True)
    definitions["config_with_base"]["properties"][BASE_KEY] = {
        "type": "string", "minLength": 1, "description": "A config file this one extends (relative to this file)."}
    return {
        "$schema": DRAFT,
        "title": "ganforge config",
        "description": (inspect.getdoc(Config) or "") + " Made by `ganforge config --schema`.",
        "type": "object",
        "if": {"required": [BASE_KEY]},
        "then": {"$ref": "#/definitions/config_with_base"},
        "else": {"$ref": "#/definitions/config"},
        "definitions": definitions,
    }


def _section(cls: type, partial: bool) -> dict[str, Any]:
    """A dataclass section: its fields, no other key; components by reference to their registry."""
    hints = typing.get_type_hints(cls, include_extras=True)
    properties: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        registry = f.metadata.get("registry")
        if registry is not None:
            ref = {"$ref": f"#/definitions/{registry}_kinds{'_partial' if partial else ''}"}
            if typing.get_origin(hints[f.name]) is tuple:  # a list of components
                properties[f.name] = {"type": ["array", "null"], "items": ref}
            else:
                default_kind = f.default_factory().kind if f.default_factory is not dataclasses.MISSING else None
                properties[f.name] = ref if default_kind is None else {
                    "anyOf": [ref, _default_kind(registry, default_kind)] if not partial else [ref],
                    "default": {"kind": default_kind}}
                if default_kind is None and not partial:
                    required.append(f.name)
            continue
        prop = _type(hints[f.name], partial)
        default = _default(f)
        if default is not dataclasses.MISSING:
            prop["default"] = default
        properties[f.name] = prop
    out: dict[str, Any] = {"type": ["object", "null"] if cls is not Config else "object",
                           "description": _first_line(cls), "properties": properties,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _kinds(registry: Any, partial: bool) -> dict[str, Any]:
    """A component of a registry: its short name alone, or {kind: K, K's parameters}."""
    names = registry.names()
    options: list[dict[str, Any]] = [{"type": "string", "enum": names, "description": f"a {registry.what} by name"}]
    for entry in registry.entries():
        options.append(_kind(registry, entry, partial))
    if partial:  # `kind` given by the base: any kind's parameters
        merged: dict[str, Any] = {}
        for entry in registry.entries():
            merged.update(_params(registry, entry, partial)[0])
        options.append({"type": "object", "not": {"required": ["kind"]}, "properties": merged,
                        "additionalProperties": False, "description": f"parameters of the base's {registry.what}"})
    return {"description": f"a {registry.what}: {', '.join(names)}", "anyOf": options}


def _kind(registry: Any, entry: Any, partial: bool) -> dict[str, Any]:
    properties, required = _params(registry, entry, partial)
    return {"type": "object", "description": f"{entry.name}: {entry.description}",
            "properties": {"kind": {"const": entry.name, "description": entry.description}, **properties},
            "required": ["kind", *required], "additionalProperties": False}


def _default_kind(registry_name: str, kind: str) -> dict[str, Any]:
    """A section that leaves out `kind` and so takes its default kind, with that kind's parameters."""
    from ganforge.registry import ALL_REGISTRIES

    registry = ALL_REGISTRIES[registry_name]
    properties, required = _params(registry, registry.get(kind), partial=False)
    return {"type": ["object", "null"], "not": {"required": ["kind"]}, "properties": properties,
            "required": required, "additionalProperties": False,
            "description": f"{kind} (the default): {registry.get(kind).description}"}


def _params(registry: Any, entry: Any, partial: bool) -> tuple[dict[str, Any], list[str]]:
    properties, required = {}, []
    for spec in component_params(entry.builder, registry.injected):
        prop = _type(spec.type, partial)
        if spec.required:
            required.append(spec.name)
        elif _jsonable(spec.default):
            prop["default"] = _plain(spec.default)
        properties[spec.name] = prop
    return properties, ([] if partial else required)


def _type(tp: Any, partial: bool) -> dict[str, Any]:
    """The schema of a type hint as the parser reads it (parse.py `_coerce`)."""
    limits: list[Range] = []
    if typing.get_origin(tp) is Annotated:
        tp, *extras = typing.get_args(tp)
        limits = [e for e in extras if isinstance(e, Range)]
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if dataclasses.is_dataclass(tp):
        return _section(tp, partial)
    if tp is Component:
        return {"type": "object"}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (Union, types.UnionType):
        options = [_type(a, partial) for a in typing.get_args(tp) if a is not type(None)]
        if type(None) in typing.get_args(tp):
            options.append({"type": "null"})
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        out: dict[str, Any] = {"type": "array"}
        fixed = origin is tuple and args and typing.get_args(tp)[-1] is not Ellipsis
        if fixed:
            out["items"] = [_type(a, partial) for a in args]
            out["minItems"] = out["maxItems"] = len(args)
        elif args:
            out["items"] = _type(args[0], partial)
        return out
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer", **_bounds(limits)}
    if tp is float:
        return {"type": ["number", "string"], "pattern": NUMBER_TEXT, **_bounds(limits)}
    if tp is str:
        return {"type": "string"}
    if origin is dict or tp is dict:
        return {"type": "object"}
    return {}


def _bounds(limits: list[Range]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in limits:
        for key, bound in (("minimum", r.ge), ("exclusiveMinimum", r.gt), ("maximum", r.le),
                           ("exclusiveMaximum", r.lt)):
            if bound is not None:
                out[key] = bound
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return _plain(f.default) if _jsonable(f.default) else dataclasses.MISSING
    return dataclasses.MISSING


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) or (
        isinstance(value, (list, tuple)) and all(_jsonable(v) for v in value))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""
