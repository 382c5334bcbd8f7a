"""scripts/sweep_digits.py --extend: a job continues its folder's run only when that run is the same
config stopped short of the job's length, with a checkpoint at each point it already passed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import sweep_digits as sweep  # noqa: E402

from conftest import tiny_config, write_config  # noqa: E402


def job_sets(out: Path, steps: int, *extra: str, seed: int = 0) -> list[str]:
    """The overrides a sweep job adds to the config (as run_job builds them)."""
    return [*extra, f"train.seed={seed}", f"train.steps={steps}", f"output.dir={out}", "checkpoint.every=2",
            "checkpoint.keep=1000", "train.device=cpu"]


def test_extend_continues_only_the_same_run_stopped_short(tmp_path, cli):
    out = tmp_path / "run"
    config = write_config(tmp_path, tiny_config(out))
    args = ["train", str(config), "--quiet"]
    for s in job_sets(out, 4):
        args += ["--set", s]
    assert cli(*args).exit_code == 0

    assert sweep.extendable_from(out, config, job_sets(out, 8), (2, 4, 8)) == 4
    # Another learning rate is another run; so is a seed.
    assert sweep.extendable_from(out, config, job_sets(out, 8, "optim.g.lr=0.0001"), (2, 4, 8)) is None
    assert sweep.extendable_from(out, config, job_sets(out, 8, seed=1), (2, 4, 8)) is None
    # A point the run passed without keeping a checkpoint there cannot be scored.
    assert sweep.extendable_from(out, config, job_sets(out, 8), (3, 8)) is None
    # Nothing to extend: the run is already as long as the job; an empty folder.
    assert sweep.extendable_from(out, config, job_sets(out, 4), (2, 4)) is None
    assert sweep.extendable_from(tmp_path / "none", config, job_sets(tmp_path / "none", 8), (8,)) is None


def test_extend_never_continues_a_schedule_that_depends_on_the_length(tmp_path, cli):
    # A linear decay over train.steps ends at 0; resumed to a longer train.steps it is stretched and
    # climbs back part-way up, which is not the run trained from scratch to that length.
    out = tmp_path / "run"
    config = write_config(tmp_path, tiny_config(out))
    decay = ["schedule.g.kind=linear_decay", "schedule.d.kind=linear_decay"]
    args = ["train", str(config), "--quiet"]
    for s in job_sets(out, 4, *decay):
        args += ["--set", s]
    assert cli(*args).exit_code == 0
    assert sweep.extendable_from(out, config, job_sets(out, 8, *decay), (2, 4, 8)) is None
