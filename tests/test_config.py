"""Config loading: inheritance, overrides, defaults, and one-line errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from conftest import CONFIGS, assert_one_line_error, tiny_config, write_config
from ganforge.config import Component, check_resumable, config_to_dict, load_config, parse_config, resumable_keys
from ganforge.config.schema import RESUMABLE
from ganforge.errors import ConfigError
from ganforge.registry import GENERATORS, LOSSES


def load(tmp_path, data, overrides=()):
    return load_config(write_config(tmp_path, data), list(overrides))


def test_tiny_config_resolves_every_default(tmp_path):
    cfg, resolved = load(tmp_path, tiny_config(tmp_path / "out"))
    assert cfg.train.steps == 6 and cfg.train.batch_size == 8
    assert cfg.generator == Component("dcgan", {"latent_dim": 8, "base_width": 8, "max_width": 512, "norm": "batch",
                                                "bias": False})
    # Defaults come from the builders' signatures and show up in the resolved config.
    assert resolved["optim"]["g"] == {"kind": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "weight_decay": 0.0,
                                      "eps": 1e-8, "implementation": "auto"}
    assert resolved["loss"] == {"kind": "non_saturating"}
    # The resolved dict parses back to the same config (checkpoints rely on this).
    assert parse_config(resolved) == cfg


def test_base_inheritance_and_kind_change(tmp_path):
    write_config(tmp_path, tiny_config(tmp_path / "out", loss={"kind": "hinge"}), "base.yaml")
    child = {"base": "base.yaml", "train": {"steps": 11},
             "generator": {"kind": "dcgan", "base_width": 16},
             "discriminator": {"kind": "dcgan", "norm": "none"}}
    cfg, _ = load(tmp_path, child)
    assert cfg.train.steps == 11 and cfg.train.batch_size == 8  # merged, not replaced
    assert cfg.generator.params["latent_dim"] == 8 and cfg.generator.params["base_width"] == 16
    assert cfg.loss.kind == "hinge"
    # Changing a component's kind drops the base's parameters (they belonged to the other kind).
    write_config(tmp_path, {"base": "base.yaml", "loss": {"kind": "wasserstein"},
                            "generator": {"kind": "mlp"}, "data": {"kind": "gaussian_grid"},
                            "discriminator": {"kind": "mlp"}}, "child2.yaml")
    cfg2, _ = load_config(tmp_path / "child2.yaml")
    assert cfg2.generator.kind == "mlp" and "base_width" not in cfg2.generator.params


def test_set_overrides_parse_yaml_values(tmp_path):
    cfg, _ = load(tmp_path, tiny_config(tmp_path / "out"),
                  ["train.steps=600", "checkpoint.every=50", "optim.d.betas=[0.0, 0.9]",
                   "loss=hinge", "train.precision=bf16", "optim.g.lr=1e-4"])
    assert cfg.train.steps == 600 and cfg.checkpoint.every == 50
    assert cfg.optim.d.params["betas"] == (0.0, 0.9)
    assert cfg.loss.kind == "hinge" and cfg.train.precision == "bf16"
    assert cfg.optim.g.params["lr"] == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as text: accepted


def test_output_dir_defaults_to_config_name(tmp_path):
    data = tiny_config(tmp_path)
    del data["output"]
    cfg, _ = load_config(write_config(tmp_path, data, "my_experiment.yaml"))
    assert cfg.output.dir == "runs/my_experiment"


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"train": {"stpes": 5}}, ["train.stpes", "unknown key", "did you mean 'train.steps'"]),
        ({"generator": {"kind": "dcgan", "base_widht": 8}}, ["generator.base_widht", "generator.base_width"]),
        ({"train": {"steps": "many"}}, ["train.steps", "expected an integer", "'many'"]),
        ({"train": {"steps": 0}}, ["train.steps", "must be >= 1", "got 0"]),
        ({"train": {"ema": {"decay": 1.5}}}, ["train.ema.decay", "must be < 1.0"]),
        ({"train": {"precision": "fp8"}}, ["train.precision", "must be one of fp32, bf16, fp16"]),
        ({"loss": {"kind": "hinje"}}, ["loss.kind", "unknown loss 'hinje'", "did you mean 'hinge'",
                                       "valid: " + ", ".join(LOSSES.names())]),
        ({"generator": {"kind": "stylegan9"}}, ["generator.kind", "did you mean 'stylegan2'",
                                                "valid: " + ", ".join(GENERATORS.names())]),
        ({"optim": {"g": {"kind": "adam", "betas": [0.5]}}}, ["optim.g.betas", "expected a list of 2 values"]),
        ({"optim": {"g": {"kind": "adam", "lr": -1}}}, ["optim.g.lr", "must be > 0"]),
        ({"regularizers": [{"kind": "r1", "weight": "x"}]}, ["regularizers.0.weight", "expected a number"]),
        ({"generator": {"kind": "dcgan", "resolution": 32}}, ["generator.resolution", "set by ganforge"]),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path, change, fragments):
    path = write_config(tmp_path, tiny_config(tmp_path / "out", **change))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path.resolve()) in message or "run.yaml" in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_error_from_set_names_the_override(tmp_path):
    with pytest.raises(ConfigError, match=r"--set train\.batch_size=-3: train\.batch_size: must be >= 1"):
        load(tmp_path, tiny_config(tmp_path / "out"), ["train.batch_size=-3"])


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="inheritance loops"):
        load_config(loop)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg, resolved = load(tmp_path, tiny_config(tmp_path / "out", regularizers=[{"kind": "r1", "weight": 1.0}]))
    again = parse_config(yaml.safe_load(yaml.safe_dump(resolved)))
    assert again == cfg and config_to_dict(again) == resolved


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_validate(name):
    """At full size: the config resolves and parses back, its networks and regularizers build
    together, and G's samples have the data's shape and D rates each of them."""
    import torch

    from ganforge.build import build_data, build_networks
    from ganforge.data import DataInfo
    from ganforge.errors import DataError
    from ganforge.models import conditioning_classes

    cfg, resolved = load_config(CONFIGS / name)
    assert parse_config(resolved) == cfg
    try:
        info = build_data(cfg).info
    except DataError:
        # Downloadable data is not on this machine: use the shape the config asks for.
        channels = 3 if cfg.data.kind == "cifar10" else 1
        resolution = cfg.data.params["resolution"]
        info = DataInfo(cfg.data.kind, (channels, resolution, resolution), 10)
    G, D, regularizers = build_networks(cfg, info)
    assert [kind for kind, _ in regularizers] == [c.kind for c in cfg.regularizers]
    classes = conditioning_classes(G)
    labels = torch.arange(2) % classes if classes else None
    with torch.no_grad():
        samples = G.eval()(torch.randn(2, G.latent_dim), labels)
        logits = D.eval()(samples, labels)
    assert samples.shape == (2, *info.shape) and logits.shape == (2,) and torch.isfinite(logits).all()


# -- the CLI's side of config errors --------------------------------------------------------------


def test_cli_config_error_is_one_line_exit_2(tmp_path):
    from conftest import run_cli

    path = write_config(tmp_path, tiny_config(tmp_path / "out", train={"stpes": 5}))
    result = run_cli("config", str(path))
    assert_one_line_error(result, 2, "train.stpes", "did you mean 'train.steps'")


def test_cli_config_prints_resolved_yaml(cli, tmp_path):
    path = write_config(tmp_path, tiny_config(tmp_path / "out"))
    result = cli("config", str(path), "--set", "train.steps=600")
    assert result.exit_code == 0
    printed = yaml.safe_load(result.stdout)
    assert printed["train"]["steps"] == 600
    assert printed["discriminator"]["max_width"] == 512


def test_cli_unwritable_output_folder(tmp_path):
    from conftest import run_cli

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = write_config(tmp_path, tiny_config(blocker / "run"))
    result = run_cli("train", str(path), "-q")
    assert_one_line_error(result, 2, "output.dir", "not writable", "--set output.dir")


def changed(resolved: dict, dotted: str, value) -> dict:
    """A copy of a resolved config with one dotted key set to `value`."""
    head, _, rest = dotted.partition(".")
    return {**resolved, head: changed(resolved[head], rest, value) if rest else value}


def test_resume_may_change_exactly_the_fields_marked_resumable(tmp_path):
    _, before = load(tmp_path, tiny_config(tmp_path / "out"))
    # The changes a resume allowed when cli.py kept them as a list of strings: the same set.
    assert set(resumable_keys()) == {
        "train.steps", "train.device", "train.accumulate", "train.compile", "train.channels_last",
        "train.deterministic", "train.sync_batchnorm", "train.max_minutes", "train.auto_resume",
        "train.peer_timeout_minutes", "log.every", "samples.every",
        "checkpoint.every", "checkpoint.keep", "eval.",
        # Trackers: adding one on resume mirrors the rest of the run (whole section or any key in it).
        "log.wandb", "log.wandb.", "log.mlflow", "log.mlflow."}
    for key, value in [("train.steps", 99), ("train.device", "cuda"), ("checkpoint.keep", 9),
                       ("eval.num_samples", 64), ("eval.extractor.kind", "other")]:
        check_resumable(before, changed(before, key, value))
    for key, value in [("train.batch_size", 3), ("train.seed", 5), ("log.tensorboard", True),
                       ("generator.base_width", 16), ("optim.g.lr", 0.1), ("train.ema.decay", 0.5)]:
        with pytest.raises(ConfigError, match=rf"^--set {key}: cannot change when resuming \(it would alter the "
                                              r"networks, data or optimizer state\); resumable changes: "
                                              r"train\.steps, .*, eval\.\*$"):
            check_resumable(before, changed(before, key, value))


@dataclass(frozen=True)
class Budget:
    steps: int = field(default=1, metadata=RESUMABLE)
    width: int = 8


@dataclass(frozen=True)
class Notes:
    text: str = ""


@dataclass(frozen=True)
class ToySchema:
    budget: Budget = field(default_factory=Budget)
    notes: Notes = field(default_factory=Notes, metadata=RESUMABLE)


def test_resumable_changes_are_read_from_field_metadata():
    assert resumable_keys(ToySchema) == ["budget.steps", "notes."]
    before = {"budget": {"steps": 1, "width": 8}, "notes": {"text": "a"}}
    check_resumable(before, changed(changed(before, "budget.steps", 2), "notes.text", "b"), ToySchema)
    with pytest.raises(ConfigError, match=r"--set budget\.width: .*; resumable changes: budget\.steps, notes\.\*$"):
        check_resumable(before, changed(before, "budget.width", 16), ToySchema)


def test_a_range_message_does_not_depend_on_which_module_declared_it_first():
    # typing caches Annotated[...] by equality: Range(lt=1) must not stand in for Range(lt=1.0).
    from typing import Annotated

    from ganforge.params import Range

    as_int = Annotated[float, Range(ge=0, lt=1)]
    as_float = Annotated[float, Range(ge=0.0, lt=1.0)]
    assert as_int.__metadata__[0].violation(1.5) == "must be < 1"
    assert as_float.__metadata__[0].violation(1.5) == "must be < 1.0"
