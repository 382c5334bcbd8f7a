"""The optional extras: every `pip install 'ganforge[...]'` that the README or an error message
tells users to run names an extra pyproject.toml declares, and CI runs what they enable."""

from __future__ import annotations

import re
import sys

import pytest

from conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # a dev dependency before 3.11
    import tomli as tomllib

# `ganforge[hf]`, `ganforge[report,onnx]`, and `.[dev]` as in `pip install -e ".[dev]"`.
EXTRA_NAMES = re.compile(r"(?:ganforge|\.)\[([A-Za-z0-9_,\- ]+)\]")


def declared() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def named_extras() -> dict[str, set[str]]:
    """{extra: files that name it} over the README, the package, the scripts and CI."""
    files = [ROOT / "README.md", ROOT / ".ci" / "run", *sorted((ROOT / "ganforge").rglob("*.py")),
             *sorted((ROOT / "scripts").glob("*.py"))]
    found: dict[str, set[str]] = {}
    for path in files:
        for match in EXTRA_NAMES.finditer(path.read_text()):
            for name in match.group(1).split(","):
                found.setdefault(name.strip(), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_extra_the_readme_or_the_code_names_is_declared():
    extras, named = declared(), named_extras()
    assert {"hf", "report", "onnx", "tensorboard", "dev"} <= set(named)  # the search finds what is there
    missing = {name: sorted(files) for name, files in named.items() if name not in extras}
    assert not missing, f"named but not declared in pyproject.toml: {missing}"


def test_hf_installs_datasets_and_all_and_dev_cover_every_extra():
    extras = declared()
    assert any(re.match(r"datasets\b", req) for req in extras["hf"])
    features = set(extras) - {"all", "dev"}

    def included(extra: str) -> set[str]:
        inner = [m.group(1) for req in extras[extra] if (m := re.match(r"ganforge\[([^\]]+)\]", req))]
        return {name.strip() for group in inner for name in group.split(",")}

    assert included("all") == features  # `all` is every optional feature
    assert "all" in included("dev")  # CI installs .[dev]: the hf, onnx, report and tensorboard tests run there


def test_ci_turns_a_skip_for_a_missing_package_into_a_failure(tmp_path, monkeypatch):
    import conftest

    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(
        "import sys, pytest\n"
        "def test_optional():\n"
        "    pytest.importorskip('no_such_package_for_ganforge')\n"
        "def test_told_to_skip():\n"
        "    pytest.skip('needs the optional package no_such_package_for_ganforge')\n"
        "has_pkg = False  # as `importlib.util.find_spec('...') is not None` would say\n"
        "@pytest.mark.skipif(not has_pkg, reason='needs the optional package')\n"
        "def test_skipif_package():\n"
        "    pass\n"
        "@pytest.mark.platform(sys.platform != 'no-such-os', reason='a platform condition')\n"
        "def test_platform():\n"
        "    pass\n"
        "@pytest.mark.platform(sys.platform == 'no-such-os', reason='a platform condition that does not hold')\n"
        "def test_platform_here():\n"
        "    pass\n"
        "def test_plain():\n"
        "    pass\n")
    (tmp_path / "test_module.py").write_text("import pytest\npytest.importorskip('no_such_package_for_ganforge')\n")

    class Outcomes:
        def __init__(self) -> None:
            self.seen: dict[str, str] = {}

        def pytest_runtest_logreport(self, report):
            if report.when == "call" or report.outcome != "passed":
                self.seen[report.nodeid.split("::")[-1]] = report.outcome

        def pytest_collectreport(self, report):
            if report.nodeid.endswith("test_module.py"):
                self.seen["test_module.py"] = report.outcome

    def run(ci: str, target: str) -> dict[str, str]:
        monkeypatch.setenv("CI", ci)
        outcomes = Outcomes()
        pytest.main([str(tmp_path / target), "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-c",
                     str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)], plugins=[conftest, outcomes])
        return outcomes.seen

    assert run("false", "test_inner.py") == {"test_optional": "skipped", "test_told_to_skip": "skipped",
                                             "test_skipif_package": "skipped", "test_platform": "skipped",
                                             "test_platform_here": "passed", "test_plain": "passed"}
    # Under CI only a declared platform condition skips: a skipif mark (its condition may be a
    # missing package) fails like importorskip.
    assert run("true", "test_inner.py") == {"test_optional": "failed", "test_told_to_skip": "failed",
                                            "test_skipif_package": "failed", "test_platform": "skipped",
                                            "test_platform_here": "passed", "test_plain": "passed"}
    assert run("false", "test_module.py") == {"test_module.py": "skipped"}
    assert run("true", "test_module.py") == {"test_module.py": "failed"}
