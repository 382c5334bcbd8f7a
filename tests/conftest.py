"""Shared helpers: tiny configs, in-process and subprocess CLI runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Tests run on CPU with a fixed thread count so that results repeat exactly, in this process and
# in the ganforge processes the tests start (a reduction split over other thread counts rounds
# differently, and runs compared bit for bit must not differ by that).
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"


def write_config(folder: Path, data: dict, name: str = "run.yaml") -> Path:
    """Write a config dict as YAML into `folder`; returns its path."""
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_config(out_dir: Path, **sections: dict) -> dict:
    """configs/tiny.yaml (a seconds-long DCGAN run on digits at 16x16) writing to `out_dir`;
    keyword sections replace the file's."""
    cfg = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    cfg["output"] = {"dir": str(out_dir)}
    cfg.update(sections)
    return cfg


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """Run `python -m ganforge ARGS` in a fresh process, as a user would."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ganforge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    """Exit code `code`, one `error:` line on stderr containing every fragment, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def one_line_error(result, code: int, *fragments: str) -> str:
    """The in-process CLI's one `error:` line, with exit code `code` and every fragment."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


@pytest.fixture
def cli():
    """In-process CLI runner (fast: torch is already imported)."""
    from typer.testing import CliRunner

    from ganforge.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


class LinearD(nn.Module):
    """A discriminator D(x) = <w, x>: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, labels=None):
        return (x.flatten(1) * self.w).sum(1)


# -- test-strength: stand-in networks and the collected test ids --------------------------------


def stand_in_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of the FID Inception architecture whose features vary strongly with the input:
    He-scaled random weights (std sqrt(2 / fan_in)), identity BatchNorm statistics and no biases,
    so every layer keeps its activations at unit scale. (PyTorch's default initialisation shrinks
    them layer after layer: features then move by 1e-8 when the input changes, and a wrong resize
    or rounding before the network would pass any tolerance.)"""
    import math

    from ganforge.metrics.inception import FIDInception

    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in FIDInception().net.state_dict().items():
        if key.endswith("running_var") or (key.endswith("weight") and value.dim() == 1):
            value = torch.ones_like(value)
        elif value.dim() >= 2:  # conv and linear weights
            value = torch.randn(value.shape, generator=g) * math.sqrt(2.0 / value[0].numel())
        elif value.is_floating_point():  # biases, running means
            value = torch.zeros_like(value)
        state[key] = value
    return state


# The test ids of this session's collection, for the guards in tests/test_guards.py.
COLLECTED_IDS: list[str] = []


def pytest_collection_finish(session) -> None:
    COLLECTED_IDS[:] = [item.nodeid for item in session.items]


# Tests left out of this session by -k, -m or --deselect (the guards then collect the suite anew).
DESELECTED: list[str] = []


def pytest_deselected(items) -> None:
    DESELECTED.extend(item.nodeid for item in items)


def tiny_section(part: str, kind: str, **extra) -> dict:
    """The config section of the generator or discriminator `kind` (`part`) with the tiny settings
    it declares where it registers, and `extra` on top."""
    from ganforge.registry import DISCRIMINATORS, GENERATORS

    registry = GENERATORS if part == "generator" else DISCRIMINATORS
    return {"kind": kind, **registry.tiny(kind), **extra}


def networks_for(kinds) -> dict:
    """The generator and discriminator sections for a run with the regularizers `kinds`: the
    networks a regularizer declares it needs, else configs/tiny.yaml's kinds, at their tiny settings."""
    from ganforge.registry import REGULARIZERS

    shipped = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    needs = [REGULARIZERS.get(k).properties.get("networks") for k in kinds]
    networks = next((n for n in needs if n), {part: {"kind": shipped[part]["kind"]} for part in ("generator",
                                                                                                 "discriminator")})
    return {part: tiny_section(part, **section) for part, section in networks.items()}


def tiny_overrides(cfg) -> list[str]:
    """`--set` overrides that shrink a loaded config's networks to the tiny settings their kinds declare."""
    from ganforge.registry import DISCRIMINATORS, GENERATORS

    return [f"{part}.{key}={json.dumps(value)}" for part, registry in (("generator", GENERATORS),
                                                                       ("discriminator", DISCRIMINATORS))
            for key, value in registry.tiny(getattr(cfg, part).kind).items()]


# --------------------------------------------------------------------------------------------
# CI=true: a test that skips itself fails instead
# --------------------------------------------------------------------------------------------
# CI (.ci/run) installs every extra the tests exercise, so a test or module that skips itself
# (`pytest.importorskip`, `pytest.skip`, or a `skip`/`skipif` mark, whose condition may well be a
# missing package) means the install is incomplete: under CI=true it fails, naming why it would
# have skipped. The one skip CI allows is a platform condition (an OS, /proc, a CUDA device),
# declared as such: `@pytest.mark.platform(condition, reason="...")`.


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "platform(condition, reason): skip where the platform lacks what the test "
                                       "needs (an OS, /proc, a CUDA device); the only skip that CI=true allows")


def _platform_skip(item) -> str | None:
    """The reason of the first `platform` mark on `item` whose condition holds, if any."""
    for mark in item.iter_markers("platform"):
        if len(mark.args) != 1 or not isinstance(mark.args[0], bool) or not mark.kwargs.get("reason"):
            raise TypeError(f"{item.nodeid}: write pytest.mark.platform(<bool condition>, reason='...')")
        if mark.args[0]:
            return mark.kwargs["reason"]
    return None


def pytest_runtest_setup(item) -> None:
    reason = _platform_skip(item)
    if reason is not None:
        pytest.skip(f"platform: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _ci() and report.skipped and _platform_skip(item) is None and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (f"CI=true: this test skipped itself ({_skip_reason(report)}); install what it needs, "
                           "or mark a platform condition with pytest.mark.platform")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"CI=true: {collector.nodeid} skipped itself ({_skip_reason(report)}); install what it needs"
