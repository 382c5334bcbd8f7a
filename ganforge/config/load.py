"""Config files: YAML with `base:` inheritance, `--set` overrides and flags, and the resolved text."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ganforge.about import RUNS_FOLDER
from ganforge.config.parse import Origins, config_to_dict, parse_config
from ganforge.config.schema import Config
from ganforge.errors import ConfigError, reading

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
        raw["output"] = {**(output or {}), "dir": f"{RUNS_FOLDER}/{path.stem}"}
    cfg = parse_config(raw, origins, default_source=str(path))
    return cfg, config_to_dict(cfg)



def dump_yaml(data: Mapping[str, Any]) -> str:
    """Resolved config text, in the section order of the schema."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None, width=100)
