"""The size check: a config's memory needs, estimated before anything is built, refused in one
line naming the key when they exceed the memory available."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import CONFIGS, tiny_config, write_config
from ganforge import footprint
from ganforge.build import build_data, build_discriminator, build_generator, validate
from ganforge.config import load_config, parse_config
from ganforge.errors import ConfigError
from ganforge.footprint import Memory
from ganforge.registry import DISCRIMINATORS, GENERATORS

GiB = 2**30


@pytest.fixture
def two_gib(monkeypatch):
    """A machine with 2 GiB of RAM, whatever this one has."""
    monkeypatch.setattr(footprint, "available_memory", lambda device, processes=1: Memory(2 * GiB, "RAM"))


def shipped(name: str, *overrides: str):
    cfg, _ = load_config(CONFIGS / name, list(overrides))
    return cfg


@pytest.mark.parametrize("kind", GENERATORS.names())
def test_the_meta_count_equals_the_real_networks_for_every_architecture(kind):
    """Every registered G (with a D of its family) builds on the meta device without reading a
    value, and counts what the real build holds, parameter for parameter."""
    data = {"kind": "gaussian_grid", "num_samples": 64} if kind == "mlp" else {"kind": "digits", "resolution": 32}
    d_kind = kind if kind in DISCRIMINATORS.names() else "dcgan"
    cfg = parse_config({"data": data, "generator": {"kind": kind}, "discriminator": {"kind": d_kind}})
    info = build_data(cfg).info
    counted = footprint.count_state(cfg, None, lambda: build_generator(cfg.generator, info),
                                    lambda: build_discriminator(cfg.discriminator, info))
    assert counted is not None, f"{kind}: its constructor cannot run on the meta device"
    torch.manual_seed(0)
    G, D = build_generator(cfg.generator, info), build_discriminator(cfg.discriminator, info)
    real = footprint._real_state(G, D)
    assert counted == real and real[0] > 0 and real[1] > 0


@pytest.mark.parametrize(("config", "override", "fragment"), [
    ("stylegan2_cifar10.yaml", "generator.mapping_layers=100000",
     "generator.mapping_layers=100000 (default 8): training G and D needs more than 2 GiB"),
    ("gaussian_grid.yaml", "generator.depth=100000", "generator.depth=100000 (default 3): training G and D needs"),
    ("gaussian_grid.yaml", "discriminator.width=10000000", "discriminator.width=10000000 (default 256): "),
    ("wgan_gp_cifar10.yaml", "discriminator.extra_blocks=100000", "discriminator.extra_blocks=100000 (default 2): "),
])
def test_networks_too_large_are_refused_by_the_meta_count(two_gib, config, override, fragment, monkeypatch):
    built = []
    monkeypatch.setattr("ganforge.build.build_networks", lambda *a: built.append(a))  # never reached
    with pytest.raises(ConfigError) as caught:
        validate(shipped(config, override))
    message = str(caught.value)
    assert message.startswith(fragment) and message.endswith("but there are 2 GiB of RAM; use smaller sizes")
    assert "parameters counted before the check stopped" in message and not built


def test_a_batch_too_large_is_refused_with_its_estimate(two_gib):
    with pytest.raises(ConfigError, match=r"^train\.batch_size=10000000: one step needs ~\d+(\.\d+)? GiB "
                                          r"\(10,000,000 samples per process and micro-batch at \d+(\.\d+)? KiB of "
                                          r"activations each, and \d+ KiB of training state\) but there are 2 GiB of "
                                          r"RAM; lower train\.batch_size or raise train\.accumulate$"):
        validate(shipped("tiny.yaml", "train.batch_size=10000000"))


def test_activations_scale_with_the_samples_each_process_takes(two_gib):
    """A step's activations follow the micro-batch: the batch over processes x accumulation."""
    _, base = validate(shipped("tiny.yaml", "train.batch_size=64"))
    _, half = validate(shipped("tiny.yaml", "train.batch_size=64", "train.accumulate=2"))
    _, two = validate(shipped("tiny.yaml", "train.batch_size=64"), processes=2)
    assert base.micro_batch == 64 and half.micro_batch == two.micro_batch == 32
    assert base.activation_bytes == 2 * half.activation_bytes == 2 * two.activation_bytes > 0
    assert base.state_bytes == half.state_bytes
    # The parameters: DCGAN's G and D of tiny.yaml, counted, times weight, gradient, two Adam
    # moments (and G_ema for G), plus buffers.
    cfg = shipped("tiny.yaml")
    G = build_generator(cfg.generator, build_data(cfg).info)
    assert base.g_parameters == sum(p.numel() for p in G.parameters())
    assert base.state_bytes >= 20 * base.g_parameters + 16 * base.d_parameters


def test_the_memory_is_the_least_of_ram_cgroup_and_address_space_shared_by_local_processes(monkeypatch):
    monkeypatch.setattr(footprint, "_physical_ram", lambda: 64 * GiB)
    monkeypatch.setattr(footprint, "_cgroup_limit", lambda: 16 * GiB)
    monkeypatch.setattr(footprint, "_address_space_left", lambda: None)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert footprint.available_memory("cpu") == Memory(16 * GiB, "memory allowed to this job (cgroup)")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four processes share this node's memory
    assert footprint.available_memory("cpu") == Memory(4 * GiB, "memory allowed to this job (cgroup), shared by 4 "
                                                                 "processes")
    if not torch.cuda.is_available():
        assert footprint.available_memory("cuda") is None  # `ganforge config` of a GPU config on a laptop


def test_dry_run_and_config_print_the_estimate(cli, tmp_path):
    path = write_config(tmp_path, tiny_config(tmp_path / "out"))
    dry = cli("train", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    size_line = dry.stdout.splitlines()[-1]
    assert size_line.startswith("size: G 4.27 K parameters, D 2.46 K; one step needs ~") and \
        "(training state " in size_line and "at 8 samples per process and micro-batch)" in size_line
    shown = cli("config", str(path))
    assert shown.exit_code == 0 and f"# size: {size_line[len('size: '):]}" in shown.stdout
    assert yaml.safe_load(shown.stdout)["train"]["batch_size"] == 8  # a comment: still the resolved YAML
