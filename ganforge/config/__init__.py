"""Typed, frozen run configs: YAML files with `base:` inheritance and `--set` overrides.

A config is one runnable experiment. `schema` holds its sections (frozen dataclasses), `parse` the
type-checking engine that turns a raw mapping into them, and `load` the YAML files around both.
"""

from ganforge.config.load import apply_overrides, dump_yaml, load_config
from ganforge.config.parse import component_params, config_to_dict, parse_config, type_name
from ganforge.config.schema import NETWORKS, Component, Config, check_resumable, resumable_keys, unresumable_changes

__all__ = [
    "NETWORKS",
    "Component",
    "Config",
    "apply_overrides",
    "check_resumable",
    "component_params",
    "config_to_dict",
    "dump_yaml",
    "load_config",
    "parse_config",
    "resumable_keys",
    "type_name",
    "unresumable_changes",
]
