"""Config fuzzing: one mutation of a shipped config either validates or is refused in one line.

Each example takes a file from configs/ and changes one thing: a value of the wrong type, out of
range, huge or negative; an unknown kind; a deleted key; a list where a mapping goes; an unknown
key; random bytes (often not UTF-8) in the file; the file cut short. `ganforge train MUTANT
--dry-run` (parse, build data source and networks, no training) must then exit 0, or exit 2 with
exactly one `error:` line and no traceback.

CI runs a few hundred examples, the same ones every time (derandomized); set
GANFORGE_FUZZ_EXAMPLES=5000 to look further.
"""

from __future__ import annotations

import collections
import copy
import os
import resource
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CONFIGS

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz test needs hypothesis (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("GANFORGE_FUZZ_EXAMPLES", "250"))
NAMES = sorted(p.name for p in CONFIGS.glob("*.yaml"))
RAW = {name: yaml.safe_load((CONFIGS / name).read_text()) for name in NAMES}

# Values of the wrong type, out of range, huge and negative. Sizes such as mapping_layers: 100000,
# depth, extra_blocks, widths or batch_size: 10000000 reach the size check (ganforge/footprint.py),
# which counts the networks on the meta device and refuses them before anything is allocated;
# those beyond 64 bits the parser refuses.
BAD_VALUES: list[Any] = [
    -1, 0, 1, 2, 3, 100_000, 10_000_000, -0.5, 0.5, 1.5, 1e-12, -(10**30), 10**30, 2**63, 10**400, 1e30, 1e308, -1e308,
    float("inf"), float("-inf"), float("nan"), True, False, None, "", "0", "1e-4", "yes", "auto",
    "not a value", "é", "\x00", [], [1, 2], ["a"], {}, {"kind": "nope"}, {"a": 1},
]
VALUES = st.one_of(
    st.sampled_from(BAD_VALUES),
    st.integers(-8, 16),
    st.floats(-8, 8),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(-3, 3), max_size=2),
)
HOW = ["value", "value", "value", "delete", "unknown_kind", "as_list", "unknown_key", "bytes", "cut"]


def key_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a config (mapping keys and list indexes), sections and leaves."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += key_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += key_paths(value, (*prefix, i))
    return out


PATHS = {name: key_paths(raw) for name, raw in RAW.items()}


@st.composite
def mutants(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(config name, what was changed, the mutant file's bytes)."""
    name = draw(st.sampled_from(NAMES))
    raw = copy.deepcopy(RAW[name])
    how = draw(st.sampled_from(HOW))
    if how in ("bytes", "cut"):
        text = (CONFIGS / name).read_bytes()
        at = draw(st.integers(0, len(text)))
        if how == "cut":
            return name, f"cut at byte {at}", text[:at]
        junk = draw(st.binary(min_size=1, max_size=6))
        return name, f"{junk!r} at byte {at}", text[:at] + junk + text[at:]
    path = draw(st.sampled_from(PATHS[name]))
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    key, old = path[-1], parent[path[-1]]
    if how == "delete":
        del parent[key]
    elif how == "unknown_kind":
        kinds = [p for p in PATHS[name] if p[-1] == "kind"]
        path = draw(st.sampled_from(kinds))
        node = raw
        for k in path[:-1]:
            node = node[k]
        node["kind"] = draw(st.sampled_from([node["kind"] + "x", node["kind"].upper(), "dcgan", "mlp", "r1", "fid"])
                            | st.text(max_size=8))
    elif how == "as_list":
        parent[key] = list(old.items()) if isinstance(old, dict) else [old]
    elif how == "unknown_key" and isinstance(old, dict):
        old[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
    else:
        parent[key] = draw(VALUES)
    return name, f"{how} {'.'.join(map(str, path))}", yaml.safe_dump(raw, allow_unicode=True).encode()


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    """A copy of configs/, so that mutants beside it find their `base:` files."""
    folder = tmp_path_factory.mktemp("configs")
    for name in NAMES:
        shutil.copy(CONFIGS / name, folder / name)
    return folder


@pytest.fixture
def memory_limit():
    """Cap this process's address space for the test at 2 GiB more than it holds: the size check
    then compares a mutant with those 2 GiB, and one that got past it would fail to allocate
    instead of taking a shared machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        in_use = int(f.read().split()[0]) * resource.getpagesize()
    cap = in_use + 2 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.platform(not Path("/proc/self/statm").exists(), reason="the memory cap reads /proc (Linux)")
def test_every_mutant_of_a_shipped_config_validates_or_is_one_line(config_dir, memory_limit, monkeypatch):
    from typer.testing import CliRunner

    from ganforge.cli import app

    monkeypatch.chdir(config_dir)  # the dry run writes nothing; relative data roots resolve here
    runner = CliRunner()
    outcomes: collections.Counter[str] = collections.Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutants())
    def check(mutant: tuple[str, str, bytes]) -> None:
        name, change, data = mutant
        path = config_dir / f"mutant-{name}"
        path.write_bytes(data)
        result = runner.invoke(app, ["train", str(path), "--dry-run"], catch_exceptions=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        context = (name, change, result.exit_code, result.stderr[-2000:])
        assert "Traceback" not in result.output + result.stderr, context
        if result.exit_code == 0:
            assert not errors and "valid;" in result.stdout, context
            outcomes["valid"] += 1
        else:
            assert result.exit_code == 2 and len(errors) == 1, context
            outcomes["refused"] += 1

    check()
    print(f"\nfuzz: {sum(outcomes.values())} mutants: {outcomes['valid']} valid, {outcomes['refused']} refused")
    # Both sides were explored: some mutants stay valid (a harmless value), most are refused.
    assert outcomes["valid"] > 0 and outcomes["refused"] > outcomes["valid"]


HUGE = [("stylegan2_cifar10.yaml", "generator.mapping_layers=100000"),
        ("gaussian_grid.yaml", "generator.depth=100000"),
        ("gaussian_grid.yaml", "discriminator.width=10000000"),
        ("wgan_gp_cifar10.yaml", "discriminator.extra_blocks=100000"),
        ("tiny.yaml", "train.batch_size=10000000"),
        ("wgan_gp_digits.yaml", "train.batch_size=10000000")]


@pytest.mark.platform(not Path("/proc/self/statm").exists(), reason="the memory cap reads /proc (Linux)")
def test_huge_sizes_are_refused_by_the_size_check_within_the_cap(config_dir, memory_limit, monkeypatch):
    """The sizes that used to validate and then fill memory: one line naming the key, with the
    estimate against the 2 GiB this test may use."""
    from typer.testing import CliRunner

    from ganforge.cli import app

    monkeypatch.chdir(config_dir)
    for name, override in HUGE:
        result = CliRunner().invoke(app, ["train", name, "--dry-run", "--set", override], catch_exceptions=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output, (name, result.output)
        assert errors[0].startswith(f"error: {override}") and "of address space left to this process" in errors[0]
