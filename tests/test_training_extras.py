"""The loop's time budget (train.max_minutes) and fine-tuning from another run (init, FreezeD)."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config, write_config
from ganforge.checkpoint import load_checkpoint
from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.run import RunDir, find_checkpoint
from ganforge.training.loop import train


def run_training(tmp_path, name, resume=None, overrides=(), **sections):
    path = write_config(tmp_path, tiny_config(tmp_path / name, **sections), f"{name}.yaml")
    cfg, cfg_dict = load_config(path, list(overrides))
    run = RunDir(cfg.output.dir)
    run.create() if resume is None else run.open_existing()
    try:
        return train(cfg, cfg_dict, run, resume=resume, progress=False)
    finally:
        run.release_lock()


def test_time_budget_stops_with_a_checkpoint_that_resumes(tmp_path):
    # A budget of 6 ms is spent after the first step: the run stops there, checkpointed.
    result = run_training(tmp_path, "budget", overrides=["train.max_minutes=0.0001"])
    assert result.budget_spent and result.interrupted
    assert result.step < result.total_steps
    payload = load_checkpoint(*find_checkpoint(tmp_path / "budget"))
    assert payload.step == result.step
    resumed = run_training(tmp_path, "budget", resume=payload)
    assert resumed.step == resumed.total_steps and not resumed.budget_spent


def test_no_budget_runs_to_the_end(tmp_path):
    result = run_training(tmp_path, "whole")
    assert not result.budget_spent and result.step == result.total_steps


def test_fine_tuning_starts_from_the_checkpoint_and_freeze_d_keeps_its_first_layer(tmp_path):
    run_training(tmp_path, "source")
    source = load_checkpoint(*find_checkpoint(tmp_path / "source")).state
    # With learning and FreezeD: D's first layer keeps the source weights, the rest moves.
    run_training(tmp_path, "tuned", init={"checkpoint": str(tmp_path / "source"), "freeze_d_layers": 1},
                 train={"steps": 3, "batch_size": 8, "seed": 5, "device": "cpu", "ema": {"decay": 0.9}})
    tuned = load_checkpoint(*find_checkpoint(tmp_path / "tuned")).state
    weights = [k for k in source["D"] if k.endswith("weight")]
    first, last = weights[0], weights[-1]
    assert torch.equal(tuned["D"][first], source["D"][first])
    assert not torch.equal(tuned["D"][last], source["D"][last])
    # (seed 5, not the source run's 0: without the init, the first layer would start elsewhere)
    assert tuned["step"] == 3  # a fresh run: its own step count, not the source's


def test_cuda_graph_mode_off_cuda_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"train.compile: reduce-overhead .* needs one CUDA device, not the cpu"):
        run_training(tmp_path, "graphs", overrides=["train.compile=reduce-overhead"])
