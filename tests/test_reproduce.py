"""scripts/reproduce.py end to end on stand-ins: a small fake CIFAR-10 in its real on-disk format,
stand-in Inception weights, a couple of steps of a full-size recipe."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from test_data import make_cifar

from conftest import CONFIGS, ROOT, stand_in_inception_state

SCRIPT = ROOT / "scripts" / "reproduce.py"


def test_every_cifar_recipe_has_a_reported_figure():
    sys.path.insert(0, str(ROOT / "scripts"))
    import reproduce

    shipped = {p.stem for p in CONFIGS.glob("*_cifar10.yaml")}
    assert shipped == set(reproduce.RECIPES)
    for rep in reproduce.RECIPES.values():
        assert rep.figures and set(rep.figures) <= set(rep.metrics)
    table = reproduce.markdown_table()
    assert all(f"configs/{name}.yaml" in table for name in shipped)


def test_reproduce_trains_evaluates_and_compares_on_stand_ins(tmp_path):
    make_cifar(tmp_path / "data", n=12)
    weights = tmp_path / "pt_inception-stand-in.pth"
    torch.save(stand_in_inception_state(), weights)
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), str(CONFIGS / "wgan_gp_cifar10.yaml"), "--out", str(out), "--steps", "1",
           "--num-samples", "20", "--real-samples", "20", "--inception-weights", str(weights),
           "--set", f"data.root={tmp_path / 'data'}", "--set", "data.download=false",
           "--set", "train.batch_size=4", "--set", "generator.base_width=16", "--set", "generator.max_width=16",
           "--set", "discriminator.base_width=16", "--set", "discriminator.max_width=16", "--set", "train.device=cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "wgan_gp_cifar10.json").read_text())
    assert report["reported"]["figures"] == {"is": 7.86}
    assert report["generated_samples"] == {"is": 20}
    # The figure is `ganforge eval`'s for the trained run: its JSON, the step trained, 20 samples of seed 0.
    evaluated = json.loads((out / "wgan_gp_cifar10-eval-is.json").read_text())
    assert set(report["measured"]) == {"is"}
    assert report["measured"] == {k: evaluated["metrics"][k] for k in report["measured"]}
    assert (evaluated["step"], evaluated["num_samples"], evaluated["seed"]) == (1, 20, 0)
    # An Inception Score is exp(mutual information of sample and class): at most the samples per
    # split (10 splits of 2 here), and above 1 when class probabilities differ between images, as
    # the stand-in's do.
    assert 1.0 < evaluated["metrics"]["is"] <= 2.0
    assert "measured" in result.stdout and "reported 7.86" in result.stdout
    # The README's table shows a full-length run's figure, never a smoke run's.
    sys.path.insert(0, str(ROOT / "scripts"))
    import reproduce

    [row] = [r for r in reproduce.markdown_table(out).splitlines() if "wgan_gp_cifar10" in r]
    assert row.endswith("| not yet run (only a 1-step smoke run) |")
    (out / "wgan_gp_cifar10.json").write_text(json.dumps({**report, "steps": None}))
    [row] = [r for r in reproduce.markdown_table(out).splitlines() if "wgan_gp_cifar10" in r]
    assert row.endswith(f"| IS {report['measured']['is']:.4g} (20 samples) |")
