"""Every registered method component's defaults, built with no arguments, against the reference
values in tests/references.py; every deviation there is one the README states."""

from __future__ import annotations

import dataclasses
import inspect
import types

import pytest
import torch
from references import ABSENT, DEFAULTS, EMA_DEFAULTS, README_ROW, Deviation, Own, Ref

from conftest import ROOT
from ganforge.config import component_params
from ganforge.config.schema import EMAConfig
from ganforge.metrics import catalog, ppl, scores
from ganforge.metrics.features import Features
from ganforge.registry import ALL_REGISTRIES

SECTIONS = ("regularizer", "loss", "optimizer", "schedule", "extractor")
COMPONENTS = [(s, n) for s in SECTIONS for n in ALL_REGISTRIES[s].names()]


def plain(value):
    """Lists as tuples, 0-d tensors as numbers: defaults compare by value."""
    if isinstance(value, (list, tuple)):
        return tuple(plain(v) for v in value)
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return value.item()
    return value


def expected(entry: Ref | Deviation | Own):
    return entry.ours if isinstance(entry, Deviation) else entry.value


def check_against(table: dict, defaults: dict, what: str) -> None:
    """`defaults` (parameter -> value) hold exactly the table's parameters, at its values."""
    absent = {k for k, e in table.items() if isinstance(e, Deviation) and e.ours == ABSENT}
    assert set(defaults) == set(table) - absent, (
        f"{what}: parameters {sorted(defaults)} but tests/references.py lists {sorted(set(table) - absent)}; "
        "add each new parameter's reference value there (or remove a deviation that is fixed)")
    for name, entry in table.items():
        if name not in absent:
            assert plain(defaults[name]) == plain(expected(entry)), (what, name, entry)


def test_the_table_covers_exactly_the_registered_components():
    in_table = {key for key in DEFAULTS if key[0] in SECTIONS}
    assert in_table == set(COMPONENTS)
    assert {n for s, n in DEFAULTS if s == "metric"} == set(ALL_REGISTRIES["metric"].names())


@pytest.mark.parametrize(("section", "name"), COMPONENTS, ids=[f"{s}-{n}" for s, n in COMPONENTS])
def test_defaults_are_the_references(section, name):
    registry = ALL_REGISTRIES[section]
    builder = registry.get(name).builder
    defaults = {p.name: p.default for p in component_params(builder, registry.injected)}
    assert all(v is not inspect.Parameter.empty for v in defaults.values()), f"{name}: a parameter without default"
    check_against(DEFAULTS[(section, name)], defaults, f"{section} {name}")
    if section in ("regularizer", "loss"):
        # Built with no arguments, the object holds the defaults it declares.
        built = builder()
        for param, value in defaults.items():
            if hasattr(built, param):
                assert plain(getattr(built, param)) == plain(value), (name, param)


class Recording:
    """A stand-in for a module: its functions run as before and record the arguments they were
    given that have defaults (k, splits, subsets...)."""

    def __init__(self, module, calls: list[dict]) -> None:
        self.module, self.calls = module, calls

    def __getattr__(self, name):
        return recording(getattr(self.module, name), self.calls)


def recording(fn, calls: list[dict], signature_of=None):
    """`fn`, recording the arguments with defaults it is called with (those of `signature_of`'s
    signature when `fn` stands in for it)."""
    signature = inspect.signature(signature_of or fn)

    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append({k: v for k, v in bound.arguments.items()
                      if signature.parameters[k].default is not inspect.Parameter.empty})
        return fn(*args, **kwargs)

    return run


@pytest.mark.parametrize("name", ALL_REGISTRIES["metric"].names())
def test_metrics_compute_with_the_references_settings(name, monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr(catalog, "scores", Recording(scores, calls))
    monkeypatch.setattr(catalog, "mode_coverage", recording(catalog.mode_coverage, calls))
    # ppl's computation is recorded, not run (it needs a generator and LPIPS: tests/test_metrics_compare.py).
    monkeypatch.setattr(ppl, "perceptual_path_length", recording(lambda *a, **k: {}, calls,
                                                                 signature_of=ppl.perceptual_path_length))
    g = torch.Generator().manual_seed(0)
    # KID draws subsets of its full size (1,000) only from more images than that; below, of all of them.
    n = 1001 if name == "kid" else 40

    def features():
        return Features(torch.randn(n, 2, generator=g), torch.randn(n, 8, generator=g), torch.arange(n) % 2)

    source = types.SimpleNamespace(centres=torch.randn(5, 2, generator=g), std=0.5)
    inputs = catalog.MetricInputs(features(), features(), source, G=torch.nn.Identity(), lpips=torch.nn.Identity())
    ALL_REGISTRIES["metric"].get(name).builder(inputs=inputs)
    used: dict[str, list] = {}
    for call in calls:
        for param, value in call.items():
            used.setdefault(param, []).append(value)
    settings = {k: v[0] if len(set(map(repr, v))) == 1 else tuple(v) for k, v in used.items()}
    check_against(DEFAULTS[("metric", name)], settings, f"metric {name}")


def test_ema_defaults_are_the_references():
    defaults = {f.name: f.default for f in dataclasses.fields(EMAConfig)}
    check_against(EMA_DEFAULTS, defaults, "train.ema")


def readme_rows() -> dict[str, str]:
    """The README's "What each component follows" table: first cell -> whole row."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### What each component follows"):]
    section = section[: section.index("\n### ", 1)]
    return {line.split("|")[1]: line for line in section.splitlines() if line.startswith("| ")}


DEVIATIONS = [(key, param, e) for key, table in [*DEFAULTS.items(), (("train", "ema"), EMA_DEFAULTS)]
              for param, e in table.items() if isinstance(e, Deviation)]


@pytest.mark.parametrize(("key", "param", "entry"), DEVIATIONS, ids=[f"{k[1]}-{p}" for k, p, _ in DEVIATIONS])
def test_every_deviation_is_stated_in_the_readme(key, param, entry):
    name = README_ROW.get(".".join(key), f"`{key[1]}`")
    rows = [row for first, row in readme_rows().items() if name in first]
    assert len(rows) == 1, f"no single README row for {name}"
    assert entry.readme in rows[0].split("|")[-2], f"README row of {name} does not state: {entry.readme}"
