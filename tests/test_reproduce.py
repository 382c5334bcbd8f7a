"""scripts/reproduce.py end to end on stand-ins: a small fake CIFAR-10 in its real on-disk format,
stand-in Inception weights, a couple of steps of a full-size recipe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
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


def tiny_networks(config) -> list[str]:
    """--set overrides that shrink a recipe's networks to the sizes their components declare as
    their smallest valid ones (`tiny`), whatever architecture the recipe names."""
    from ganforge.config import load_config
    from ganforge.registry import DISCRIMINATORS, GENERATORS

    cfg, _ = load_config(config)
    sets = []
    for section, registry in (("generator", GENERATORS), ("discriminator", DISCRIMINATORS)):
        for key, value in registry.get(getattr(cfg, section).kind).tiny.items():
            sets += ["--set", f"{section}.{key}={json.dumps(value)}"]
    return sets


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*_cifar10.yaml")))
def test_reproduce_trains_evaluates_and_compares_on_stand_ins(name, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import reproduce

    recipe = reproduce.RECIPES[name]
    make_cifar(tmp_path / "data", n=12)
    weights = tmp_path / "pt_inception-stand-in.pth"
    torch.save(stand_in_inception_state(), weights)
    out = tmp_path / "out"
    config = CONFIGS / f"{name}.yaml"
    cmd = [sys.executable, str(SCRIPT), str(config), "--out", str(out), "--steps", "1",
           "--num-samples", "20", "--real-samples", "20", "--inception-weights", str(weights),
           "--set", f"data.root={tmp_path / 'data'}", "--set", "data.download=false",
           "--set", "train.batch_size=4", "--set", "train.g_batch_size=4", "--set", "train.device=cpu",
           *tiny_networks(config)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / f"{name}.json").read_text())
    assert report["reported"]["figures"] == recipe.figures
    assert report["generated_samples"] == {m: 20 for m in recipe.metrics}
    # Each figure is `ganforge eval`'s for the trained run: its JSON, the step trained, 20 samples of
    # seed 0, the generator the paper scored (raw or EMA, BatchNorm on each batch's statistics or not).
    assert set(report["measured"]) == set(recipe.metrics)
    for metric in recipe.metrics:
        [evaluated] = [json.loads(f.read_text()) for f in out.glob(f"{name}-eval-*.json")
                       if metric in f.stem.split("-eval-")[1].split("-")]
        assert report["measured"][metric] == evaluated["metrics"][metric]
        assert (evaluated["step"], evaluated["num_samples"], evaluated["seed"]) == (1, 20, 0)
        assert evaluated["ema"] == (recipe.protocol.generator == "ema")
        assert evaluated["batch_stats"] == (recipe.protocol.batchnorm == "batch")
    if "is" in recipe.metrics:
        # An Inception Score is exp(mutual information of sample and class): at most the samples per
        # split (10 splits of 2 here), and above 1 when class probabilities differ between images, as
        # the stand-in's do.
        assert 1.0 < report["measured"]["is"] <= 2.0
    for figure in recipe.figures.values():
        assert f"reported {figure:g}" in result.stdout
    # The README's table shows a full-length run's figure, never a smoke run's.
    [row] = [r for r in reproduce.markdown_table(out).splitlines() if f"configs/{name}.yaml" in r]
    assert row.endswith("| not yet run (only a 1-step smoke run) |")
    (out / f"{name}.json").write_text(json.dumps({**report, "steps": None}))
    [row] = [r for r in reproduce.markdown_table(out).splitlines() if f"configs/{name}.yaml" in r]
    first = recipe.metrics[0]
    assert f"{first.upper()} {report['measured'][first]:.4g} (20 samples)" in row
