"""Every command with its output redirected (a batch job's log): no carriage return, a few plain
progress lines a minute at most, and none with --quiet.

The commands run in this process (CliRunner's streams are no terminal, as a file is not) with
the progress clock sped up, so that a run of seconds looks like minutes to `Progress`: each
reading of the clock moves it on by TICK seconds. Counting lines against that clock proves the
rate limit; lines that do appear prove the command reports progress off a terminal at all.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, tiny_config, write_config
from ganforge import progress
from ganforge.metrics.features import FeatureExtractor

TICK = 3.0  # simulated seconds per reading of the progress clock
# A progress line: `... 12/64 ( 19%) ...`.
PROGRESS_LINE = re.compile(r"\b\d+/\d+ \(\s*\d+%\)")


class FastClock:
    """Stands in for progress._now: TICK seconds more at each reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += TICK
        return self.now


class MeanColour(FeatureExtractor):
    """A stand-in feature extractor (no Inception weights here): per-channel means and spreads."""

    name = "mean-colour"

    def forward(self, images):
        x = images.float()
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1), None


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained tiny run, a folder of images, a projection target."""
    from typer.testing import CliRunner

    from ganforge.cli import app

    tmp = tmp_path_factory.mktemp("batch")
    config = write_config(tmp, tiny_config(tmp / "runs" / "tiny"))
    assert CliRunner().invoke(app, ["train", str(config), "-q"]).exit_code == 0
    rng = np.random.default_rng(0)
    for folder in ("images", "real"):
        (tmp / folder).mkdir()
        for i in range(24):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp / folder / f"{i:03d}.png")
    return tmp


def commands(tmp):
    """(name, arguments, takes --quiet) for every command of `ganforge --help`."""
    run = str(tmp / "runs" / "tiny")
    long = write_config(tmp, tiny_config(tmp / "runs" / "long", train={"steps": 12, "batch_size": 8, "device": "cpu"},
                                         log={"every": 1}), "long.yaml")
    return {
        "train": ([str(long)], True),
        "sample": ([run, "--num", "64", "--batch-size", "2", "--out", str(tmp / "sampled")], True),
        "interpolate": ([run, "--out", str(tmp / "walk.gif"), "--num-frames", "24", "--rows", "1", "--cols", "1"],
                        True),
        "project": ([run, "--target", str(tmp / "images" / "000.png"), "--out", str(tmp / "projected"), "--steps",
                     "30", "--frames", "2"], True),
        "dataset": ([str(tmp / "images"), "--out", str(tmp / "data.zip"), "--resolution", "8", "--workers", "0"],
                    True),
        "eval": ([run, "--metrics", "fid", "--num", "24", "--real-num", "24", "--batch-size", "2", "--cache-dir",
                  str(tmp / "stats")], True),
        "eval-images": ([str(tmp / "images"), "--reference", str(tmp / "real"), "--batch-size", "2",
                         "--num-workers", "0"], True),
        "export": ([run, "--format", "torchscript", "--out", str(tmp / "g.pt")], False),
        "info": ([run], False),
        "runs": ([str(tmp / "runs")], False),
        "report": ([run], False),
        "config": ([str(long)], False),
        "list": ([], False),
        "import": ([str(ROOT / "tests" / "fixtures" / "reference" / "stylegan2_ada" / "orig-32.pkl"), "--out",
                    str(tmp / "imported")], False),
    }


NAMES = ("train", "sample", "interpolate", "project", "dataset", "eval", "eval-images", "export", "info", "runs",
         "report", "config", "list", "import")
# Commands that do long work: off a terminal they must say how far they are, and take --quiet.
REPORTING = ("train", "sample", "interpolate", "project", "dataset", "eval", "eval-images")


def test_every_command_is_tested(tmp_path):
    from ganforge.cli import COMMANDS

    assert set(NAMES) == set(COMMANDS) == set(commands(tmp_path))


@pytest.mark.parametrize(("name", "quiet"), [(name, False) for name in NAMES] + [(name, True) for name in REPORTING],
                         ids=[*NAMES, *(f"{name}-quiet" for name in REPORTING)])
def test_redirected_output_has_no_carriage_return_and_few_progress_lines(name, quiet, files, monkeypatch):
    from typer.testing import CliRunner

    import ganforge.build
    import ganforge.metrics.folders
    from ganforge.cli import app

    args, takes_quiet = commands(files)[name]
    assert takes_quiet == (name in REPORTING)
    clock = FastClock()
    monkeypatch.setattr(progress, "_now", clock)
    stand_in = lambda *a, **k: MeanColour()  # noqa: E731
    monkeypatch.setattr(ganforge.build, "build_extractor", stand_in)
    monkeypatch.setattr(ganforge.metrics.folders, "build_extractor", stand_in)
    if name in ("train", "dataset"):
        args = [*args, "--overwrite"]  # the same output a second time (with and without -q)
    result = CliRunner().invoke(app, [name, *args, *(["-q"] if quiet else [])], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.stdout + result.stderr
    assert "\r" not in text
    lines = [line for line in text.splitlines() if PROGRESS_LINE.search(line)]
    minutes = clock.now / 60
    print(f"{name}{' -q' if quiet else ''}: {len(lines)} progress lines in {minutes:.1f} simulated minutes")
    if quiet:
        assert lines == []
    else:
        assert len(lines) <= 3 * minutes + 2, lines  # LINE_INTERVAL apart, besides the first record and the end
        if name in REPORTING:
            assert lines, f"{name} said nothing of its progress in {minutes:.1f} minutes"
