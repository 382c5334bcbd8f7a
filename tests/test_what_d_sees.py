"""What reaches D, through the loop's own D and G steps (ganforge/training/steps.py), for every
registered regularizer alone and combined with every augmentation.

Every tensor is labelled by where it came from: the real batch, G's output, an augmenting
regularizer's output ("diffaugment(real)"), bCR's flip and translation, or a relation to the
batch (a real-fake interpolate, a jittered real). D's forward and its auxiliary classifier record
the labels of their inputs and label their outputs "D(...)"; the regularizers' hooks record the
labels of the logits they are given. The expected inputs follow the references: augmentation
reaches every pass of D, in both steps, including the regularizers' own (StyleGAN2-ADA's
`run_D`); R1 sees reals, R2 fakes, WGAN-GP interpolates, DRAGAN jittered reals; ADA adjusts p from
D(real) and LeCam's anchors follow D(real) and D(fake).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from conftest import networks_for, tiny_config
from ganforge import augment
from ganforge.build import build_loss
from ganforge.config import parse_config
from ganforge.data import DataInfo
from ganforge.distributed import Dist
from ganforge.registry import REGULARIZERS
from ganforge.regularizers import Regularizer
from ganforge.training.state import create_state
from ganforge.training.steps import discriminator_step, generator_step, make_runtime


def declared(kind: str, step: str) -> list[tuple[str, str]]:
    """The passes regularizer `kind` declares beyond the loss's own (D step: D(real), D(fake); G
    step: D(fake)) in `step` ("d" or "g"), without augmentation, as ("D", input) or ("classify",
    input) for D's auxiliary classifier: "D(translation(xflip(real)))" -> ("D", "translation(xflip(real))")."""
    passes = REGULARIZERS.get(kind).properties.get(f"{step}_passes", ())
    return [(p[:p.index("(")], p[p.index("(") + 1:-1]) for p in passes]


def reports_reals(kind: str) -> bool:
    """Whether `kind`'s own pass over the reals goes to every regularizer's `observe`."""
    return bool(REGULARIZERS.get(kind).properties.get("reports_reals"))


# Parameters that make an augmentation visible at the first step (ADA starts at p = 0).
PARAMS = {"ada": {"initial_p": 0.5}}


def overrides(kind: str, hook: str) -> bool:
    return getattr(REGULARIZERS.get(kind).builder, hook) is not getattr(Regularizer, hook)


AUGMENTERS = [k for k in REGULARIZERS.names() if overrides(k, "augment")]


def compatible(a: str, b: str) -> bool:
    builder_a, builder_b = REGULARIZERS.get(a).builder, REGULARIZERS.get(b).builder
    return a != b and b not in builder_a.incompatible and a not in builder_b.incompatible


COMBINATIONS = [(k, None) for k in REGULARIZERS.names()] + \
    [(k, a) for a in AUGMENTERS for k in REGULARIZERS.names() if compatible(k, a)]


class Labels:
    """Where each tensor came from: by identity for what was labelled on the way, by value for
    the batch and G's output, by relation to them for interpolates and jittered reals."""

    def __init__(self) -> None:
        self.known: list[tuple[torch.Tensor, str]] = []  # keeps the tensors alive: ids stay unique
        self.real: torch.Tensor | None = None
        self.fake: torch.Tensor | None = None

    def tag(self, t: torch.Tensor, label: str) -> torch.Tensor:
        self.known.append((t, label))
        return t

    def __call__(self, t: torch.Tensor | None) -> str:
        if t is None:  # a hook given no tensor (the separate lazy phase has no logits of the step)
            return "none"
        for known, label in reversed(self.known):
            if known is t:
                return label
        t = t.detach()
        for base, label in ((self.real, "real"), (self.fake, "fake")):
            if base is not None and base.shape == t.shape and torch.equal(base, t):
                return label
        if self.real is not None and self.real.shape == t.shape:
            real = self.real
            if self.fake is not None and self.fake.shape == t.shape:
                direction = (self.fake - real).flatten(1)
                alpha = ((t - real).flatten(1) * direction).sum(1) / direction.pow(2).sum(1)
                if torch.allclose(t, real + alpha.view(-1, 1, 1, 1) * (self.fake - real), atol=1e-5) and \
                        ((alpha > 0) & (alpha < 1)).all():
                    return "interpolate"
            jitter = t - real
            if jitter.min() >= 0 and 0 < jitter.max() <= 0.5 * real.std() * (1 + 1e-5):
                return "jittered real"
        return "other"


class Recorder:
    """Hooks on one D and G step: what D and the auxiliary classifier get, what the
    regularizers' logit hooks get."""

    def __init__(self, state, regularizers, monkeypatch) -> None:
        self.label = Labels()
        self.passes: list[tuple[str, str]] = []
        self.hooks: list[tuple[str, str, tuple[str, ...]]] = []  # (regularizer, hook, labels of its logits)
        label = self.label

        def on_d(module, args, output):
            name = label(args[0])
            self.passes.append(("D", name))
            label.tag(output, f"D({name})")

        def on_g(module, args, output):
            label.fake = output.detach()
            label.tag(output, "fake")

        state.D.register_forward_hook(on_d)
        state.G.register_forward_hook(on_g)
        if hasattr(state.D, "classify"):
            classify = state.D.classify

            def recording_classify(x):
                self.passes.append(("classify", label(x)))
                return classify(x)

            monkeypatch.setattr(state.D, "classify", recording_classify, raising=False)
        for op in ("xflip", "translation"):  # bCR's transformations
            monkeypatch.setattr(augment, op, self.labelling(getattr(augment, op), op))
        for name, reg in regularizers:
            monkeypatch.setattr(reg, "augment", self.labelling(reg.augment, name), raising=False)
            # The tensors each hook is given: d_term's images and logits, observe's and g_logits' logits,
            # g_term's fakes.
            for hook, positions in (("d_term", (2, 3, 6, 7)), ("observe", (0,)), ("g_logits", (0,)),
                                    ("g_term", (5,))):
                monkeypatch.setattr(reg, hook, self.spying(name, hook, getattr(reg, hook), positions), raising=False)

    def labelling(self, fn, name):
        def labelled(x, *args, **kwargs):
            out = fn(x, *args, **kwargs)
            # An input handed back unchanged (a regularizer that does not augment) keeps its label.
            return out if out is x else self.label.tag(out, f"{name}({self.label(x)})")

        return labelled

    def spying(self, reg_name, hook, fn, positions):
        def spy(*args, **kwargs):
            self.hooks.append((reg_name, hook, tuple(self.label(args[i]) for i in positions)))
            return fn(*args, **kwargs)

        return spy

    def take(self):
        passes, hooks = self.passes, self.hooks
        self.passes, self.hooks = [], []
        return passes, hooks


class Steps:
    """A tiny run's state with the regularizers `kinds`, and its D and G steps."""

    def __init__(self, kinds: list[str], loss: str = "non_saturating", lazy: str = "folded") -> None:
        regs = [{"kind": k, **PARAMS.get(k, {})} for k in kinds]
        sections = tiny_config("unused", **networks_for(kinds), regularizers=regs, loss={"kind": loss})
        # A lazy penalty in the D step itself (`folded`), or in a phase of its own after it
        # (`separate`, the default: test_the_separate_lazy_phase_sees_d_as_the_d_step_does).
        sections["train"] = {**sections["train"], "lazy": lazy}
        cfg = parse_config(sections)
        torch.manual_seed(0)
        self.state = create_state(cfg, DataInfo("digits", (1, 16, 16), 10), torch.device("cpu"))
        self.rt = make_runtime(cfg, self.state, Dist(), torch.device("cpu"))
        self.loss = build_loss(cfg)
        g = torch.Generator().manual_seed(1)
        self.real = torch.rand(8, 1, 16, 16, generator=g) * 2 - 1
        self.labels = torch.randint(10, (8,), generator=g)

    def d_step(self) -> None:
        discriminator_step(self.state, self.rt, self.loss, self.state.regularizers, self.real, self.labels,
                           d_update=self.state.step, phase=0)

    def g_step(self) -> None:
        generator_step(self.state, self.rt, self.loss, self.state.regularizers, self.labels, self.real, phase=-1)
        self.state.step += 1


def one_step(kinds: list[str], monkeypatch, loss: str = "non_saturating", lazy: str = "folded"):
    """One D step and one G step of a tiny run with the regularizers `kinds`, recorded:
    ((D-step passes, hooks), (G-step passes, hooks))."""
    steps = Steps(kinds, loss, lazy)
    recorder = Recorder(steps.state, steps.state.regularizers, monkeypatch)
    recorder.label.real = steps.real
    steps.d_step()
    d_step = recorder.take()
    recorder.label.fake = None
    steps.g_step()
    return d_step, recorder.take()


def through(augmenters: list[str], x: str) -> str:
    """The label of `x` after the augmenting regularizers, applied in config order."""
    for name in augmenters:
        x = f"{name}({x})"
    return x


def seen_through(augmenters: list[str], passes: list[tuple[str, str]]) -> Counter:
    """The passes as D sees them with `augmenters` on: every input augmented."""
    return Counter((what, through(augmenters, x)) for what, x in passes)


def test_every_regularizer_and_augmentation_is_swept():
    assert {k for k, _ in COMBINATIONS} == set(REGULARIZERS.names())
    assert {"diffaugment", "ada", "instance_noise"} <= set(AUGMENTERS)  # the derivation finds them
    # The references' passes, as the components declare them (R1 on reals, R2 on fakes, ...).
    assert declared("r1", "d") == [("D", "real")] and reports_reals("r1")
    assert declared("r2", "d") == [("D", "fake")] and declared("gradient_penalty", "d") == [("D", "interpolate")]
    assert declared("ac_gan", "d") == [("classify", "real")] and declared("ac_gan", "g") == [("classify", "fake")]


@pytest.mark.parametrize(("kind", "augmenter"), COMBINATIONS, ids=[f"{k}+{a}" if a else k for k, a in COMBINATIONS])
def test_what_reaches_d_in_each_step(kind, augmenter, monkeypatch):
    kinds = [kind] + ([augmenter] if augmenter else [])
    (d_passes, d_hooks), (g_passes, g_hooks) = one_step(kinds, monkeypatch)
    augmenters = [k for k in kinds if k in AUGMENTERS]
    expected_d = [("D", "real"), ("D", "fake"), *declared(kind, "d")]
    expected_g = [("D", "fake"), *declared(kind, "g")]
    assert Counter(d_passes) == seen_through(augmenters, expected_d)
    assert Counter(g_passes) == seen_through(augmenters, expected_g)
    # What each regularizer's hooks are given, whether it uses them or not: the images before
    # augmentation (D's passes through the regularizers augment them), the logits of this step.
    real, fake = f"D({through(augmenters, 'real')})", f"D({through(augmenters, 'fake')})"
    # A lazy R1 (due at update 0) reports its own pass's D(real), detached ("other"), to every
    # regularizer's `observe` too, as soon as its term is taken (StyleGAN2-ADA's Dreg phase adds its
    # signs to ADA's); the reporting one comes first in `kinds`.
    lazy_pass = [("observe", ("other",))] if reports_reals(kind) else []
    for name in kinds:
        term = [("d_term", ("real", "fake", real, fake))]
        hooks = term + lazy_pass if name == kind else lazy_pass + term
        assert [h for h in d_hooks if h[0] == name] == [(name, *h) for h in hooks] + \
            [(name, "observe", (real,))]  # ADA's p follows D(real)
        assert [h for h in g_hooks if h[0] == name] == [(name, "g_logits", (fake,)), (name, "g_term", ("fake",))]


@pytest.mark.parametrize("augmenter", [None, *AUGMENTERS])
def test_the_separate_lazy_phase_sees_d_as_the_d_step_does(augmenter, monkeypatch):
    # StyleGAN2-ADA's Dreg phase: R1's own pass, after D's update, on the step's reals through the
    # same augmentation (its run_D); the G step is unchanged.
    augmenters = [augmenter] if augmenter else []
    (d_passes, _), (g_passes, _) = one_step(["r1", *augmenters], monkeypatch, lazy="separate")
    assert Counter(d_passes) == seen_through(augmenters, [("D", "real"), ("D", "fake"), ("D", "real")])
    assert Counter(g_passes) == seen_through(augmenters, [("D", "fake")])


@pytest.mark.parametrize("augmenter", [None, *AUGMENTERS])
def test_a_loss_that_needs_reals_sees_them_in_the_g_step_as_in_the_d_step(augmenter, monkeypatch):
    augmenters = [augmenter] if augmenter else []
    _, (g_passes, _) = one_step(["r1", *augmenters], monkeypatch, loss="relativistic_average")
    assert Counter(g_passes) == seen_through(augmenters, [("D", "fake"), ("D", "real")])


def attributes(reg: Regularizer) -> dict[str, str]:
    """A regularizer's attributes, exactly (tensors as lists of Python numbers)."""
    return {k: repr(v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in vars(reg).items()}


@pytest.mark.parametrize("kind", REGULARIZERS.names())
def test_what_a_regularizer_remembers_is_all_in_its_state_dict(kind):
    # After two steps, a fresh regularizer that loads the state_dict is the same as the trained one:
    # nothing it carries from step to step is left out of checkpoints.
    steps = Steps([kind])
    [(_, reg)] = steps.state.regularizers
    before = attributes(reg)
    for _ in range(2):
        steps.d_step()
        steps.g_step()
    fresh = REGULARIZERS.get(kind).builder(**PARAMS.get(kind, {}))
    fresh.load_state_dict(reg.state_dict())
    assert attributes(fresh) == attributes(reg)
    if not reg.state_dict():
        assert attributes(reg) == before  # no state: nothing changed
