"""Shared helpers: tiny configs, in-process and subprocess CLI runs."""

from __future__ import annotations

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
