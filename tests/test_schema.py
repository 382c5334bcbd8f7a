"""`ganforge config --schema`: the JSON Schema of configs agrees with the loader."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from conftest import CONFIGS, one_line_error, tiny_config, write_config
from ganforge.config import load_config
from ganforge.config.jsonschema import config_schema
from ganforge.errors import ConfigError
from ganforge.registry import ALL_REGISTRIES


@pytest.fixture(scope="module")
def validator():
    schema = config_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_cli_prints_the_schema(cli):
    result = cli("config", "--schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == config_schema()
    one_line_error(cli("config", "--schema", str(CONFIGS / "tiny.yaml")), 2, "without a config file")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(validator, path):
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def test_the_schema_lists_every_kind_with_its_parameters(validator):
    schema = config_schema()["definitions"]
    for name, registry in ALL_REGISTRIES.items():
        options = schema[f"{name}_kinds"]["anyOf"]
        assert options[0]["enum"] == registry.names()
        assert [o["properties"]["kind"]["const"] for o in options[1:]] == registry.names()
    dcgan = next(o for o in schema["generator_kinds"]["anyOf"][1:] if o["properties"]["kind"]["const"] == "dcgan")
    assert dcgan["properties"]["latent_dim"] == {"type": "integer", "minimum": 1, "default": 100}
    train = schema["config"]["properties"]["train"]["properties"]
    assert train["precision"]["enum"] == ["fp32", "bf16", "fp16"]
    assert train["seed"]["exclusiveMaximum"] == 2**32


# Invalid configs, each a change to tiny.yaml: the loader and the schema both refuse them.
INVALID = [
    ("unknown section", {"trian": {"steps": 1}}),
    ("unknown key", {"train": {"stepz": 10}}),
    ("below a range", {"train": {"batch_size": 0}}),
    ("above a range", {"train": {"ema": {"decay": 1.0}}}),
    ("not in an enum", {"train": {"precision": "fp8"}}),
    ("wrong type", {"log": {"every": "often"}}),
    ("unknown kind", {"generator": {"kind": "dcgann"}}),
    ("unknown parameter", {"generator": {"kind": "dcgan", "widht": 8}}),
    ("parameter out of range", {"generator": {"kind": "dcgan", "latent_dim": 0}}),
    ("unknown tracker key", {"log": {"wandb": {"projekt": "x"}}}),
    ("missing section", {"data": None}),
]


@pytest.mark.parametrize("change", [c for _, c in INVALID], ids=[n for n, _ in INVALID])
def test_invalid_configs_are_refused_by_both(validator, tmp_path, change):
    cfg = tiny_config(tmp_path / "run")
    for key, value in change.items():
        if value is None:
            del cfg[key]
        else:
            cfg[key] = {**cfg.get(key, {}), **value} if key not in ("generator",) else value
    assert list(validator.iter_errors(cfg)), change
    with pytest.raises(ConfigError):
        load_config(write_config(tmp_path, cfg))


def test_a_file_with_a_base_may_leave_out_what_its_base_gives(validator, tmp_path):
    child = {"base": "tiny.yaml", "generator": {"base_width": 16}, "train": {"steps": 12}}
    assert list(validator.iter_errors(child)) == []
    assert list(validator.iter_errors({**child, "generator": {"widht": 16}}))
    assert list(validator.iter_errors({"generator": {"base_width": 16}}))  # no base: data etc. are missing
