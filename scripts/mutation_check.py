"""Mutation check: does the suite notice when the method is wrong?

A curated list of one-line bugs (a penalty at the wrong points, a missing augmentation, state
lost on resume, a wrong default, a metric fed the wrong pixels...) over the training loop, the
regularizers, the losses, the EMA, the metrics and resume. Each is applied in a temporary copy
of the repository, and the test files that should notice it run there (one thread, no xdist,
stopping at the first failure). A mutation is *caught* when a test fails, *survived* when all
pass, and an *error* when its target text is not found exactly once in the file (the list has
rotted) or pytest could not run (a collection error is not a catch).

    python scripts/mutation_check.py            # every mutation
    python scripts/mutation_check.py --list     # names only
    python scripts/mutation_check.py r1-on-fakes lecam-anchors-dropped-on-load

Exit status 0 only when every mutation is caught. First, the selected test files run unmutated
(they must pass, or a catch would mean nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("ganforge", "tests", "configs", "scripts", "README.md", "pyproject.toml")


@dataclass(frozen=True)
class Mutation:
    """Replace `old` (found exactly once in `path`) by `new`; `tests` (files or node ids) must fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


# Test selections shared by several mutations.
PENALTIES = ("tests/test_penalties.py",)
WHAT_D_SEES = ("tests/test_what_d_sees.py",)
DEFAULTS = ("tests/test_defaults.py",)
RESUME = ("tests/test_resume.py",)
LOSSES = ("tests/test_components.py::test_losses_on_hand_computed_values",
          "tests/test_zoo.py::test_relativistic_average_on_hand_computed_values")
EMA = ("tests/test_ema_through_the_loop.py",)
EVAL = ("tests/test_eval_parity.py",)
METRIC_INPUTS = ("tests/test_metric_inputs.py",)
SCORES = ("tests/test_metrics.py",)

MUTATIONS = [
    # -- the ten bugs of issue 34 ----------------------------------------------------------
    Mutation("r1-on-fakes", "ganforge/regularizers/penalties.py",
             "input_gradient_norms(D, real, labels) ** 2", "input_gradient_norms(D, fake, fake_labels) ** 2",
             PENALTIES),
    Mutation("gradient-penalty-at-reals", "ganforge/regularizers/penalties.py",
             "input_gradient_norms(D, torch.lerp(real, fake, alpha),", "input_gradient_norms(D, real,", PENALTIES),
    Mutation("ada-observes-fakes", "ganforge/training/steps.py",
             "reg.observe(real_logits, state.step)", "reg.observe(fake_logits, state.step)", WHAT_D_SEES),
    Mutation("reals-not-augmented-in-d-step", "ganforge/training/steps.py",
             "x_in = augmented(regularizers, x, gen, state.step)", "x_in = x", WHAT_D_SEES),
    Mutation("lecam-anchors-dropped-on-load", "ganforge/regularizers/discriminator.py",
             'self.anchor_real, self.anchor_fake = state.get("anchor_real"), state.get("anchor_fake")',
             "self.anchor_real, self.anchor_fake = None, None", RESUME),
    Mutation("path-length-default-weight-1", "ganforge/regularizers/generator.py",
             "weight: Weight = 2.0, every: Every = 4", "weight: Weight = 1.0, every: Every = 4", DEFAULTS),
    Mutation("bcr-without-flip", "ganforge/regularizers/discriminator.py",
             "augment.translation(augment.xflip(x, gen), gen)", "augment.translation(x, gen)", PENALTIES),
    Mutation("pixels-truncated-not-rounded", "ganforge/metrics/features.py",
             "* 127.5).round().to(torch.uint8)", "* 127.5).to(torch.uint8)", METRIC_INPUTS),
    Mutation("no-standing-stats-before-evaluation", "ganforge/training/upkeep.py",
             "            self.ema.sync()\n            improved = evaluate_and_log(",
             "            improved = evaluate_and_log(", EVAL),
    Mutation("ema-rampup-counts-from-the-wrong-step", "ganforge/training/steps.py",
             "self.decay_at(step - self.start - 1)", "self.decay_at(step - self.start)", EMA),
    Mutation("inception-resize-bicubic", "ganforge/metrics/inception.py",
             'size=(299, 299), mode="bilinear"', 'size=(299, 299), mode="bicubic"', METRIC_INPUTS),
]


def copy_repository(target: Path) -> None:
    """The parts of the repository the tests read, copied under `target`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """pytest on `tests` in the copy, one thread, stopping at the first failure: (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", *tests]
    result = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def check(copy: Path, m: Mutation) -> tuple[str, str]:
    """Apply `m` in the copy, run its tests, restore the file: (verdict, detail)."""
    path = copy / m.path
    original = path.read_text()
    found = original.count(m.old)
    if found != 1:
        return "error", f"target text found {found} times in {m.path}"
    path.write_text(original.replace(m.old, m.new))
    try:
        code, output = run_tests(copy, m.tests)
    finally:
        path.write_text(original)
    if code == 1:
        failed = [line.split(" - ")[0] for line in output.splitlines() if line.startswith("FAILED ")]
        return "caught", failed[0].removeprefix("FAILED ") if failed else "a test failed"
    if code == 0:
        return "survived", "every test passed"
    return "error", f"pytest exit code {code}: {output.strip().splitlines()[-1] if output.strip() else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the mutations' names and targets")
    args = parser.parse_args()
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"error: unknown mutation(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    selected = [known[n] for n in args.names] or MUTATIONS
    if args.list:
        for m in selected:
            print(f"{m.name:<44} {m.path}")
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ganforge-mutants-") as tmp:
        copy = Path(tmp)
        copy_repository(copy)
        tests = tuple(dict.fromkeys(t for m in selected for t in m.tests))
        t0 = time.perf_counter()
        code, output = run_tests(copy, tests)
        if code != 0:
            print(output[-3000:])
            print(f"error: the selected tests fail without any mutation (exit code {code})", file=sys.stderr)
            return 2
        print(f"unmutated: {len(tests)} test selections pass ({time.perf_counter() - t0:.0f} s)")
        verdicts = []
        for i, m in enumerate(selected, 1):
            t0 = time.perf_counter()
            verdict, detail = check(copy, m)
            verdicts.append(verdict)
            print(f"[{i:2}/{len(selected)}] {verdict:<8} {time.perf_counter() - t0:5.1f} s  {m.name:<44} {detail}",
                  flush=True)
    caught = verdicts.count("caught")
    print(f"{caught} of {len(selected)} mutations caught ({100 * caught / len(selected):.0f} %), "
          f"{verdicts.count('survived')} survived, {verdicts.count('error')} errors; "
          f"{time.perf_counter() - start:.0f} s in all")
    return 0 if caught == len(selected) else 1


if __name__ == "__main__":
    sys.exit(main())
