"""Exact resume: stopping at step s and resuming gives bit-identical weights at step T."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config, write_config
from ganforge.checkpoint import find_checkpoint, load_checkpoint
from ganforge.config import load_config
from ganforge.run import RunDir
from ganforge.train import train


def run_training(tmp_path, name, sections, resume=None, overrides=()):
    path = write_config(tmp_path, tiny_config(tmp_path / name, **sections), f"{name}.yaml")
    cfg, cfg_dict = load_config(path, list(overrides))
    run = RunDir(cfg.output.dir)
    if resume is None:
        run.create()
    else:
        run.open_existing()
    result = train(cfg, cfg_dict, run, resume=resume, progress=False)
    run.release_lock()
    return result


def final_state(folder):
    return load_checkpoint(*find_checkpoint(folder))["state"]


def assert_same_weights(a, b):
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)
    # Optimizer moments too: the continuation is the same run, not only the same weights.
    for opt in ("opt_g", "opt_d"):
        for pid, st in a[opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b[opt]["state"][pid][k]), (opt, pid, k)


SETTINGS = {
    "plain": {},
    "everything": {
        # Lazy R1, a gradient penalty, two D steps per G step, a decaying schedule and EMA with a
        # late start: every piece of state that a resume must carry.
        "regularizers": [{"kind": "r1", "weight": 1.0, "every": 3}, {"kind": "gradient_penalty", "weight": 0.1}],
        "train": {"steps": 8, "batch_size": 8, "seed": 3, "device": "cpu", "d_steps_per_g_step": 2,
                  "ema": {"decay": 0.8, "start": 2}},
        "schedule": {"g": {"kind": "cosine", "warmup_steps": 2}, "d": {"kind": "linear_decay"}},
        "optim": {"g": {"kind": "adamw"}, "d": {"kind": "rmsprop", "lr": 1e-4}},
        "checkpoint": {"every": 3, "keep": 10},
    },
    "stylegan2_ada": {
        # Noise drawn inside G's forward (per-pixel noise, style mixing), lazy R1 and path length,
        # and ADA stopped between two of its adjustments (its running sums must travel too).
        "generator": {"kind": "stylegan2", "latent_dim": 8, "w_dim": 8, "mapping_layers": 1, "base_width": 4,
                      "max_width": 8},
        "discriminator": {"kind": "stylegan2", "base_width": 4, "max_width": 8},
        "regularizers": [{"kind": "r1", "weight": 0.1, "every": 2}, {"kind": "path_length", "every": 2},
                         {"kind": "ada", "interval": 2, "speed_images": 50, "initial_p": 0.3}],
        "train": {"steps": 8, "batch_size": 8, "seed": 2, "device": "cpu"},
        "checkpoint": {"every": 3, "keep": 10},
    },
    "toy_2d": {
        "data": {"kind": "gaussian_grid", "num_samples": 100},  # 100 / 8 -> epochs roll over
        "generator": {"kind": "mlp", "width": 16},
        "discriminator": {"kind": "mlp", "width": 16},
        "train": {"steps": 30, "batch_size": 8, "seed": 1, "device": "cpu"},
        "samples": {"every": 10, "num": 50},
        "checkpoint": {"every": 13, "keep": 10},
    },
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_resume_is_bit_identical(tmp_path, setting):
    sections = SETTINGS[setting]
    full = run_training(tmp_path, "full", sections)
    assert full.step == full.total_steps and not full.interrupted
    # Resume a second run from the first run's middle checkpoint.
    every = sections.get("checkpoint", {}).get("every", 3)
    middle = tmp_path / "full" / "checkpoints" / f"step-{every:08d}.pt"
    payload = load_checkpoint(middle)
    assert payload["step"] == every
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    result = run_training(tmp_path, "resumed", sections, resume=payload)
    assert result.step == full.step
    assert_same_weights(final_state(tmp_path / "full"), final_state(resumed_dir))


def test_checkpoint_holds_the_complete_state(tmp_path):
    run_training(tmp_path, "full", SETTINGS["everything"])
    payload = load_checkpoint(*find_checkpoint(tmp_path / "full"))
    assert payload["format"] == "ganforge-checkpoint" and payload["format_version"] == 1
    assert payload["step"] == 8 and payload["config"]["train"]["steps"] == 8
    assert set(payload["state"]) >= {"G", "D", "G_ema", "opt_g", "opt_d", "sched_g", "sched_d", "scaler_g",
                                     "scaler_d", "fixed_z", "step"}
    assert set(payload["rng"]) >= {"python", "numpy", "torch", "cuda"}
    assert payload["data"] == {"epoch": 0, "cursor": 8 * 2 * 8}
    assert payload["data_info"] == {"name": "digits", "shape": [1, 16, 16], "num_classes": 10}
    # Raw weights, no wrapper prefixes.
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in payload["state"]["G"])


def test_same_seed_same_result_and_other_seed_differs(tmp_path):
    run_training(tmp_path, "a", {})
    run_training(tmp_path, "b", {})
    assert_same_weights(final_state(tmp_path / "a"), final_state(tmp_path / "b"))
    other = tiny_config(tmp_path / "c")
    other["train"]["seed"] = 1
    run_training(tmp_path, "c", {"train": other["train"]})
    a, c = final_state(tmp_path / "a"), final_state(tmp_path / "c")
    assert not all(torch.equal(a["G"][k], c["G"][k]) for k in a["G"])
