"""Exact resume: stopping at step s and resuming gives bit-identical weights at step T."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import networks_for, tiny_config, write_config
from ganforge.checkpoint import load_checkpoint
from ganforge.config import load_config
from ganforge.registry import REGULARIZERS
from ganforge.regularizers import Regularizer
from ganforge.run import RunDir, find_checkpoint
from ganforge.training import loop
from ganforge.training.loop import train


def run_training(tmp_path, name, sections, resume=None, overrides=(), executed=None):
    """Train (or resume) in-process; `executed` (a list) receives state.step at each G update."""
    path = write_config(tmp_path, tiny_config(tmp_path / name, **sections), f"{name}.yaml")
    cfg, cfg_dict = load_config(path, list(overrides))
    run = RunDir(cfg.output.dir)
    if resume is None:
        run.create()
    else:
        run.open_existing()
    with pytest.MonkeyPatch.context() as mp:
        if executed is not None:
            original = loop.generator_step

            def counted(state, *args, **kwargs):
                executed.append(state.step)
                return original(state, *args, **kwargs)

            mp.setattr(loop, "generator_step", counted)
        result = train(cfg, cfg_dict, run, resume=resume, progress=False)
    run.release_lock()
    return result


def final_state(folder):
    return load_checkpoint(*find_checkpoint(folder)).state


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
        "generator": {"kind": "stylegan2", "latent_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 64,
                      "channel_max": 8},
        "discriminator": {"kind": "stylegan2", "channel_base": 64, "channel_max": 8},
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
    assert payload.step == every
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    executed = []
    result = run_training(tmp_path, "resumed", sections, resume=payload, executed=executed)
    assert result.step == full.step
    # A continuation, not a rerun (which would also end bit-identical): only the missing steps ran.
    assert executed == list(range(every, full.step))
    assert_same_weights(final_state(tmp_path / "full"), final_state(resumed_dir))


@pytest.mark.parametrize("in_memory", [False, True])
def test_resume_with_xflip_is_bit_identical_across_epochs(tmp_path, in_memory):
    """data.xflip: the epoch (and so the checkpointed position) runs over 2N items, the second half
    mirrored; a run resumed mid-way, after several epochs, is the uninterrupted run."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(torch.randint(0, 256, (16, 20, 3), generator=torch.Generator().manual_seed(i),
                                      dtype=torch.uint8).numpy()).save(folder / f"{i}.png")
    sections = {"data": {"kind": "image_folder", "path": str(folder), "resolution": 16, "xflip": True,
                         "num_workers": 0, "in_memory": in_memory},
                "train": {"steps": 8, "batch_size": 4, "seed": 5, "device": "cpu"},  # 10 items: 2 batches an epoch
                "checkpoint": {"every": 3, "keep": 10}}
    run_training(tmp_path, "full", sections)
    payload = load_checkpoint(tmp_path / "full" / "checkpoints" / "step-00000003.pt")
    assert payload.data == {"epoch": 1, "cursor": 4, "items": 10}
    executed = []
    (tmp_path / "resumed").mkdir()
    run_training(tmp_path, "resumed", sections, resume=payload, executed=executed)
    assert executed == list(range(3, 8))
    assert_same_weights(final_state(tmp_path / "full"), final_state(tmp_path / "resumed"))


def test_checkpoint_holds_the_complete_state(tmp_path):
    run_training(tmp_path, "full", SETTINGS["everything"])
    payload = load_checkpoint(*find_checkpoint(tmp_path / "full"))
    assert payload.format == "ganforge-checkpoint" and payload.format_version == 1
    assert payload.step == 8 and payload.config["train"]["steps"] == 8
    assert set(payload.state) >= {"G", "D", "G_ema", "opt_g", "opt_d", "sched_g", "sched_d", "scaler_g",
                                     "scaler_d", "fixed_z", "step"}
    assert set(payload.rng) >= {"python", "numpy", "torch", "cuda"}
    assert payload.data == {"epoch": 0, "cursor": 8 * 2 * 8, "items": 1797}
    assert payload.data_info == {"name": "digits", "shape": [1, 16, 16], "num_classes": 10}
    # Raw weights, no wrapper prefixes.
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in payload.state["G"])


def test_same_seed_same_result_and_other_seed_differs(tmp_path):
    run_training(tmp_path, "a", {})
    run_training(tmp_path, "b", {})
    assert_same_weights(final_state(tmp_path / "a"), final_state(tmp_path / "b"))
    other = tiny_config(tmp_path / "c")
    other["train"]["seed"] = 1
    run_training(tmp_path, "c", {"train": other["train"]})
    a, c = final_state(tmp_path / "a"), final_state(tmp_path / "c")
    assert not all(torch.equal(a["G"][k], c["G"][k]) for k in a["G"])


def test_fp16_gradient_scalers_travel_in_checkpoints(tmp_path):
    sections = {"train": {"steps": 6, "batch_size": 8, "seed": 0, "device": "cpu", "precision": "fp16",
                          "ema": {"decay": 0.9, "rampup": None}}}
    run_training(tmp_path, "full", sections)
    middle = load_checkpoint(tmp_path / "full" / "checkpoints" / "step-00000003.pt")
    fresh = torch.amp.GradScaler("cpu", enabled=True).state_dict()
    for name in ("scaler_g", "scaler_d"):
        saved = middle.state[name]
        # An enabled scaler's state after 3 updates: 2^16 halved once per skipped (overflowing)
        # update, and the count of finite updates since the last skip.
        assert set(saved) == set(fresh) and saved != fresh
        skipped = math.log2(fresh["scale"] / saved["scale"])
        assert skipped == int(skipped) and saved["_growth_tracker"] <= 3 - skipped
    # Resumed from step 3: the same scalers and weights at step 6 as the uninterrupted run.
    (tmp_path / "resumed").mkdir()
    run_training(tmp_path, "resumed", sections, resume=middle)
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "resumed")
    assert_same_weights(a, b)
    assert (a["scaler_g"], a["scaler_d"]) == (b["scaler_g"], b["scaler_d"])
    # Negative control: scalers set to 2^4 in the checkpoint continue from there (no overflow at
    # that scale; the scale grows only after 2000 finite steps): 2^4, and 3 more finite steps.
    tampered = load_checkpoint(tmp_path / "full" / "checkpoints" / "step-00000003.pt")
    for name in ("scaler_g", "scaler_d"):
        tampered.state[name].update(scale=16.0, _growth_tracker=5)
    (tmp_path / "tampered").mkdir()
    run_training(tmp_path, "tampered", sections, resume=tampered)
    c = final_state(tmp_path / "tampered")
    for name in ("scaler_g", "scaler_d"):
        assert c[name]["scale"] == 16.0 and c[name]["_growth_tracker"] == 5 + 3, c[name]


def test_a_longer_budget_stretches_the_schedules_to_the_new_total(cli, tmp_path, monkeypatch):
    """README: a run resumed at step s with a linear_decay schedule continues at the learning rate
    that the new total gives at step s (and the schedule runs to the new total)."""
    sections = {"schedule": {"g": {"kind": "linear_decay"}, "d": {"kind": "cosine"}}, "log": {"every": 1}}
    run_training(tmp_path, "run", sections)  # 6 steps: linear_decay has reached lr 0 at step 6
    config = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000006.pt").config
    lr_g, lr_d = config["optim"]["g"]["lr"], config["optim"]["d"]["lr"]
    used = []  # the learning rates each generator update (and the D update before it) ran with
    original = loop.generator_step

    def recording(state, *args, **kwargs):
        used.append((state.step, state.opt_g.param_groups[0]["lr"], state.opt_d.param_groups[0]["lr"]))
        return original(state, *args, **kwargs)

    monkeypatch.setattr(loop, "generator_step", recording)
    result = cli("train", "--resume", str(tmp_path / "run"), "--set", "train.steps=12", "-q")
    assert result.exit_code == 0, result.stderr
    # Closed forms over the new total of 12 steps, at the update that starts from step k.
    expected = [(k, lr_g * (1 - k / 12), lr_d * 0.5 * (1 + math.cos(math.pi * k / 12))) for k in range(6, 12)]
    assert [k for k, _, _ in used] == [k for k, _, _ in expected]
    for (k, g, d), (_, g_want, d_want) in zip(used, expected):
        assert g == pytest.approx(g_want, rel=1e-9, abs=1e-15) and d == pytest.approx(d_want, rel=1e-9, abs=1e-15), k
    # The log records the rates after each step's schedule update: the same closed form at step s.
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 13))
    for r in records[6:]:
        assert r["lr_g"] == pytest.approx(lr_g * (1 - r["step"] / 12), abs=1e-15)


# -- every regularizer whose behaviour depends on the past -----------------------------------


def carries_the_past(kind: str) -> bool:
    """A regularizer with state of its own (a non-empty state_dict: ADA's p, LeCam's anchors, path
    length's mean) or one whose hooks read the step or epoch (augmentation schedules, top-k's decay)."""
    builder = REGULARIZERS.get(kind).builder
    reads_time = any(getattr(builder, hook) is not getattr(Regularizer, hook) for hook in ("augment", "g_logits"))
    return bool(builder().state_dict()) or reads_time


STATEFUL = [k for k in REGULARIZERS.names() if carries_the_past(k)]
# What makes each one's state move within a few steps.
MOVING = {
    "ada": {"regularizers": [{"kind": "ada", "speed_images": 100}]},  # p moves by 32/100 per adjustment
    "top_k": {"data": {"kind": "gaussian_grid", "num_samples": 16},  # an epoch every 2 steps: k decays
              "generator": {"kind": "mlp", "width": 16}, "discriminator": {"kind": "mlp", "width": 16},
              "samples": {"every": 3, "num": 16}},
    # LeCam's anchors only copy D's outputs for its first `start` steps (1,000 by default): from
    # step 0 they average them, and what a resume loads decides the steps after it.
    "lecam": {"regularizers": [{"kind": "lecam", "start": 0}]},
}


def test_the_sweep_finds_the_regularizers_with_state():
    assert {"ada", "lecam", "path_length", "top_k", "diffaugment"} <= set(STATEFUL)
    assert set(MOVING) <= set(STATEFUL)


@pytest.mark.parametrize("kind", STATEFUL)
def test_resume_is_bit_identical_for_every_regularizer_with_state(tmp_path, kind):
    # 6 steps against 3 + a resume; default intervals (ADA every 4 D steps, path length every 4 G
    # steps) put an adjustment after the resume that depends on what happened before it.
    sections = {**networks_for([kind]), "regularizers": [{"kind": kind}], **MOVING.get(kind, {})}
    run_training(tmp_path, "full", sections)
    middle = load_checkpoint(tmp_path / "full" / "checkpoints" / "step-00000003.pt")
    [saved] = middle.state["regularizers"]
    fresh = REGULARIZERS.get(kind).builder(**{k: v for k, v in sections["regularizers"][0].items() if k != "kind"})
    assert not fresh.state_dict() or repr(saved) != repr(fresh.state_dict())  # the state has moved
    (tmp_path / "resumed").mkdir()
    run_training(tmp_path, "resumed", sections, resume=middle)
    full, resumed = final_state(tmp_path / "full"), final_state(tmp_path / "resumed")
    assert_same_weights(full, resumed)
    assert repr(full["regularizers"]) == repr(resumed["regularizers"])
