"""scripts/gpu_check.py on the CPU: the table's rows and cells, refusals, the resume check, the budget."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_two_configs_two_options_on_the_cpu(gpu_check, tmp_path, capsys):
    out = tmp_path / "out"
    code = gpu_check.main(["--device", "cpu", "--steps", "2", "--configs", "quickstart,gaussian_grid",
                           "--options", "fp32", "--option", "fp8:train.precision=fp8", "--resume-configs", "tiny",
                           "--set", "samples.num=4", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "gpu_check.json").read_text())
    cells = {(c["config"], c["option"]): c for c in report["cells"]}
    assert list(cells) == [("quickstart", "fp32"), ("gaussian_grid", "fp32"), ("quickstart", "fp8"),
                           ("gaussian_grid", "fp8")]
    for config in ("quickstart", "gaussian_grid"):
        ok = cells[config, "fp32"]
        assert ok["status"] == "ok" and ok["finite"] is True
        assert ok["img_per_s"] > 0 and ok["seconds"] > 0 and ok["peak_mib"] is None  # no GPU memory on the CPU
        refused = cells[config, "fp8"]
        assert refused["status"] == "refused" and refused["note"].startswith("refused: ")
        assert "train.precision" in refused["note"]
    (resume,) = report["resume"]
    assert resume["config"] == "tiny" and resume["identical"] is True and resume["repeat_identical"] is True
    table = (out / "gpu_check.md").read_text()
    # The seconds a refusal took vary with the machine's load (0.0 or 0.1 s): any figure.
    assert re.search(r"\| quickstart \| fp8 \| - \| - \| - \| \d+\.\d \| refused: ", table), table
    printed = capsys.readouterr().out
    assert "bit-identical" in printed and "2 ok, 2 refused, 0 non-finite, 0 error, 0 skipped" in printed


def test_budget_skips_and_names_the_rest(gpu_check, tmp_path, capsys):
    out = tmp_path / "out"
    code = gpu_check.main(["--device", "cpu", "--steps", "2", "--configs", "gaussian_grid,cifar10",
                           "--options", "fp32,bf16", "--resume-configs", "", "--budget-minutes", "0",
                           "--out", str(out)])
    assert code == 0
    report = json.loads((out / "gpu_check.json").read_text())
    # The full-size CIFAR-10 config is listed under its offline stand-in, and nothing ran.
    assert [(c["config"], c["option"], c["status"]) for c in report["cells"]] == [
        ("gaussian_grid", "fp32", "skipped"), ("cifar10@digits32", "fp32", "skipped"),
        ("gaussian_grid", "bf16", "skipped"), ("cifar10@digits32", "bf16", "skipped")]
    assert "skipped 4 cells: gaussian_grid/fp32, cifar10@digits32/fp32" in capsys.readouterr().out


def test_a_failing_cell_is_one_line_not_a_crash(gpu_check, tmp_path):
    out = tmp_path / "out"
    code = gpu_check.main(["--device", "cpu", "--steps", "2", "--configs", "gaussian_grid,no_such_config",
                           "--options", "fp32", "--option", "huge:train.batch_size=1000000", "--resume-configs", "",
                           "--out", str(out)])
    assert code == 1  # a cell that errors fails the check
    cells = {(c["config"], c["option"]): c for c in json.loads((out / "gpu_check.json").read_text())["cells"]}
    assert cells["no_such_config", "*"]["status"] == "refused"
    assert "config file not found" in cells["no_such_config", "*"]["note"]
    assert cells["gaussian_grid", "fp32"]["status"] == "ok"
    huge = cells["gaussian_grid", "huge"]
    assert huge["status"] == "error" and "larger than the data set" in huge["note"] and "\n" not in huge["note"]
