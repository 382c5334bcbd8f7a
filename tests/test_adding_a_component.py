"""The README's "Adding a component" example, run from the README's own text: a new regularizer
is one registered class, and a config trains with it without any other change."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, write_config
from ganforge.registry import REGULARIZERS


@pytest.fixture
def scoped_registry(monkeypatch):
    """What the test registers goes into a copy of the regularizers' entries, so that the other
    tests see the built-in ones only."""
    REGULARIZERS.names()  # the built-in components are registered first
    monkeypatch.setattr(REGULARIZERS, "_entries", dict(REGULARIZERS._entries))


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_code() -> list[str]:
    """The Python blocks of the README's "Adding a component" section."""
    text = README.read_text()
    section = text[text.index("### Adding a component"):]
    section = section[: section.index("\n### ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_regularizer_trains_from_a_config(scoped_registry, cli, tmp_path):
    component, its_test = readme_code()
    # The class, run as the README shows it (it registers itself).
    namespace: dict = {}
    exec(compile(component, "README.md", "exec"), namespace)
    Drift = namespace["Drift"]
    # Its test, run as the README shows it.
    test_namespace: dict = {"torch": torch, "Drift": Drift}
    exec(compile(its_test, "README.md", "exec"), test_namespace)
    tests = [f for name, f in test_namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0]()
    # The base class weights it.
    term = Drift(weight=0.5).d_term(0, None, None, None, None, None, torch.tensor([1.0, -3.0]), None, None)
    assert (term.loss.item(), term.value.item()) == (2.5, 5.0)

    # Nothing else changed: `ganforge list` shows it, and a config trains with it.
    listed = cli("list", "regularizer").stdout
    assert "drift" in listed and "Epsilon drift (Karras et al. 2018)" in listed and "weight" in listed
    cfg = tiny_config(tmp_path / "run", regularizers=[{"kind": "drift", "weight": 0.001}])
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "d_loss" in r]
    assert losses and all(math.isfinite(r["drift"]) and r["drift"] > 0 for r in losses)
    # A wrong parameter is refused at load time, naming the key, as for the built-in ones.
    cfg["regularizers"] = [{"kind": "drift", "wieght": 0.001}]
    result = cli("train", str(write_config(tmp_path, cfg, "typo.yaml")), "-q")
    assert result.exit_code == 2 and "regularizers.0.wieght" in result.stderr


# -- one new file and no other edit: a scratch copy with a new generator, loss, regularizer, metric --

# What a contributor's copy of the project holds (the tests import scripts/ and read configs/).
PROJECT = ("ganforge", "tests", "configs", "scripts", "pyproject.toml", "README.md")
# Guards that ask a named method for more than its file: a test of its own (tests/test_guards.py)
# and its reference defaults (tests/references.py, read by tests/test_defaults.py). They are not
# sweeps; the new loss's own test and reference values would be its second and third edit.
GUARDS = ("tests/test_guards.py", "tests/test_defaults.py")

NEW_LOSS = '''"""A copy of the hinge loss under a new name, in a module of its own."""

from ganforge.losses import Hinge
from ganforge.registry import LOSSES


@LOSSES.register("hinge_copy", shape="margin")
class HingeCopy(Hinge):
    """The hinge loss, registered again as a contributor would add one."""
'''

NEW_REGULARIZER = '''"""R1 under a new name, in a module of its own, with its declarations."""

from ganforge.registry import REGULARIZERS
from ganforge.regularizers.penalties import R1


@REGULARIZERS.register("r1_copy", d_passes=("D(real)",), reports_reals=True)
class R1Copy(R1):
    """R1, registered again as a contributor would add one."""
'''

NEW_METRIC = '''"""FID under a new name, in a module of its own, with its declarations."""

from ganforge.metrics.catalog import IMAGES, MetricInputs, fid
from ganforge.registry import METRICS


# A covariance needs 2 points on each side.
@METRICS.register("fid_copy", accepts=IMAGES, figures={"fid_copy": "lower"}, minimums=(2, 2), view="main")
def fid_copy(inputs: MetricInputs) -> dict[str, float]:
    """FID, registered again as a contributor would add one."""
    return {"fid_copy": fid(inputs)["fid"]}
'''


def test_a_new_generator_loss_and_regularizer_file_join_the_list_and_the_sweeps(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    copy = tmp_path / "project"
    for name in PROJECT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        else:
            shutil.copy(source, copy / name)
    # The new files, and no other edit: dcgan.py renamed (its registered names with it), a loss, a regularizer and
    # a metric module.
    dcgan = (copy / "ganforge" / "models" / "dcgan.py").read_text()
    assert dcgan.count('.register("dcgan"') == 2
    (copy / "ganforge" / "models" / "dcgan_copy.py").write_text(dcgan.replace('.register("dcgan"',
                                                                             '.register("dcgan_copy"'))
    (copy / "ganforge" / "hinge_copy.py").write_text(NEW_LOSS)
    (copy / "ganforge" / "regularizers" / "r1_copy.py").write_text(NEW_REGULARIZER)
    (copy / "ganforge" / "metrics" / "fid_copy.py").write_text(NEW_METRIC)
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONWARNINGS": "ignore::DeprecationWarning"}

    listed = subprocess.run([sys.executable, "-m", "ganforge", "list"], cwd=copy, env=env, capture_output=True,
                            text=True, check=True).stdout
    assert "  dcgan_copy " in listed and "  hinge_copy " in listed and "The hinge loss, registered again" in listed
    assert "  r1_copy " in listed and "R1, registered again" in listed
    assert "  fid_copy " in listed and "images; figures: fid_copy (lower)" in listed

    # The copy's whole suite is collected; its tests that name the new components run.
    run = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-v",
                          "tests", "-k", "dcgan_copy or hinge_copy or r1_copy or fid_copy",
                          *[f"--ignore={g}" for g in GUARDS]],
                         cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    outcomes = dict(re.findall(r"^(tests/\S+) (PASSED|FAILED|ERROR|SKIPPED)", run.stdout, re.M))
    assert run.returncode == 0 and set(outcomes.values()) == {"PASSED"}, run.stdout[-3000:]
    generator_ids = [i for i in outcomes if "dcgan_copy" in i]
    loss_ids = [i for i in outcomes if "hinge_copy" in i]
    # The generator in the pair sweep both ways, under autocast, in the discriminator sweeps.
    regularizer_ids = [i for i in outcomes if "r1_copy" in i]
    assert len(generator_ids) >= 3 and len(loss_ids) >= 1, sorted(outcomes)
    # The regularizer alone and with each augmentation in what reaches D, read from its declarations.
    what_d_sees = [i for i in regularizer_ids if i.startswith("tests/test_what_d_sees.py::test_what_reaches_d")]
    assert len(what_d_sees) >= 4, sorted(outcomes)
    assert {i.split("::")[0] for i in generator_ids} >= {"tests/test_components.py", "tests/test_autocast.py"}
    # The metric through the evaluation, at its minimum and below it, read from its declarations.
    metric_ids = [i for i in outcomes if "fid_copy" in i]
    assert len([i for i in metric_ids if i.startswith("tests/test_metric_declarations.py::")]) >= 2, sorted(outcomes)
