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
WIRING = ("tests/test_loop_wiring.py",)
DEFAULTS = ("tests/test_defaults.py",)
RESUME = ("tests/test_resume.py",)
FAITHFUL = ("tests/test_faithful_regularizers.py",)
ZOO = ("tests/test_zoo.py",)
LOSSES = ("tests/test_components.py::test_losses_on_hand_computed_values",
          "tests/test_zoo.py::test_relativistic_average_on_hand_computed_values")
EMA = ("tests/test_ema_through_the_loop.py",)
EVAL = ("tests/test_eval_parity.py",)
METRIC_INPUTS = ("tests/test_metric_inputs.py",)
SCORES = "tests/test_metrics.py::test_"  # + the test's name: the file's evaluation tests take minutes
EVAL_COMMAND = (SCORES + "eval_command_writes_json_with_provenance_and_caches_real_stats",)

STEPS, LOOP, UPKEEP = "ganforge/training/steps.py", "ganforge/training/loop.py", "ganforge/training/upkeep.py"
STATE = "ganforge/training/state.py"
PEN, DISC, GEN, AUG = ("ganforge/regularizers/penalties.py", "ganforge/regularizers/discriminator.py",
                       "ganforge/regularizers/generator.py", "ganforge/regularizers/augmentation.py")
BASE, NETS = "ganforge/regularizers/base.py", "ganforge/regularizers/networks.py"
LOSS, SCORE = "ganforge/losses.py", "ganforge/metrics/scores.py"
FEATURES, EVALUATE = "ganforge/metrics/features.py", "ganforge/metrics/evaluate.py"

MUTATIONS = [
    # -- the ten bugs of issue 34, and its resize -----------------------------------------------
    Mutation("r1-on-fakes", PEN,
             "return self._penalty(D, real, labels)[0]", "return self._penalty(D, fake, fake_labels)[0]",
             PENALTIES),
    Mutation("gradient-penalty-at-reals", PEN,
             "input_gradient_norms(D, torch.lerp(real, fake, alpha),", "input_gradient_norms(D, real,", PENALTIES),
    Mutation("ada-observes-fakes", STEPS,
             "reg.observe(real_logits, state.step)", "reg.observe(fake_logits, state.step)", WHAT_D_SEES),
    Mutation("reals-not-augmented-in-d-step", STEPS,
             "x_in = augmented(regularizers, x, gen, state.step)", "x_in = x", WHAT_D_SEES),
    Mutation("lecam-anchors-dropped-on-load", DISC,
             'self.anchor_real, self.anchor_fake = state.get("anchor_real"), state.get("anchor_fake")',
             "self.anchor_real, self.anchor_fake = None, None", RESUME),
    Mutation("path-length-default-weight-1", GEN,
             "weight: Weight = 2.0, every: Every = 4", "weight: Weight = 1.0, every: Every = 4", DEFAULTS),
    Mutation("bcr-without-flip", DISC,
             'augment.translation(augment.xflip(x, gen), gen, padding="reflect")',
             'augment.translation(x, gen, padding="reflect")', PENALTIES),
    Mutation("bcr-zero-padding", DISC,
             'augment.translation(augment.xflip(x, gen), gen, padding="reflect")',
             "augment.translation(augment.xflip(x, gen), gen)",
             ("tests/test_recipes.py::test_consistency_feeds_d_reflect_padded_copies",)),
    Mutation("pixels-truncated-not-rounded", FEATURES,
             "* 127.5).round().to(torch.uint8)", "* 127.5).to(torch.uint8)", METRIC_INPUTS),
    Mutation("no-standing-stats-before-evaluation", UPKEEP,
             "            self.ema.sync()\n            improved = evaluate_and_log(",
             "            improved = evaluate_and_log(", EVAL),
    Mutation("ema-rampup-counts-from-the-wrong-step", STEPS,
             "self.decay_at(step - self.start - 1)", "self.decay_at(step - self.start)", EMA),
    Mutation("inception-resize-bicubic", "ganforge/metrics/inception.py",
             'size=(299, 299), mode="bilinear"', 'size=(299, 299), mode="bicubic"', METRIC_INPUTS),
    # -- the loop --------------------------------------------------------------------------------
    Mutation("fakes-not-augmented-in-d-step", STEPS,
             "fake_in = augmented(regularizers, fake, gen, state.step)", "fake_in = fake", WHAT_D_SEES),
    Mutation("fakes-not-augmented-in-g-step", STEPS,
             "fake_logits = rt.D_fast(augmented(regularizers, fake, gen, state.step), y_fake)",
             "fake_logits = rt.D_fast(fake, y_fake)", WHAT_D_SEES),
    Mutation("d-loss-with-reals-and-fakes-swapped", STEPS,
             "d_loss = loss.d_loss(real_logits, fake_logits)", "d_loss = loss.d_loss(fake_logits, real_logits)",
             WIRING),
    Mutation("regularizer-value-not-weighted-in-d-step", STEPS,
             "        total = loss if total is None else total + loss\n        if term.real_logits",
             "        total = term.value if total is None else total + term.value\n        if term.real_logits",
             FAITHFUL),
    Mutation("penalties-bypass-the-augmentation", STEPS,
             "            D_reg = AugmentingD(state.D, regularizers, gen, state.step)\n"
             "            terms = _d_terms(state, regularizers, regular,",
             "            D_reg = state.D\n            terms = _d_terms(state, regularizers, regular,", FAITHFUL),
    Mutation("g-penalties-left-out-of-the-backward", STEPS,
             "state.scaler_g.scale(total / A).backward()", "state.scaler_g.scale(g_loss / A).backward()", WIRING),
    Mutation("no-hooks-after-the-d-step", STEPS,
             "        reg.after_d_step(state.D)\n", "        pass\n", WIRING),
    Mutation("lazy-intervals-counted-in-g-steps", LOOP,
             "d_update=state.step * d_steps + i", "d_update=state.step", WIRING),
    Mutation("every-d-step-of-a-g-step-with-the-same-noise", LOOP, "phase=i))", "phase=0))", WIRING),
    Mutation("top-k-never-sees-the-epoch", LOOP,
             'epoch = batches.state_dict().get("epoch", 0)', "epoch = 0", WIRING),
    # -- the regularizers ----------------------------------------------------------------------
    Mutation("gradient-penalty-summed-over-the-batch", PEN,
             "return ((norms - self.target) ** 2).mean()", "return ((norms - self.target) ** 2).sum()", PENALTIES),
    Mutation("r1-without-its-half", PEN,
             "return 0.5 * (norms**2).mean(), logits", "return (norms**2).mean(), logits", PENALTIES),
    Mutation("r2-on-reals", PEN,
             "input_gradient_norms(D, fake, fake_labels) ** 2", "input_gradient_norms(D, real, labels) ** 2",
             PENALTIES),
    Mutation("dragan-jitter-ignores-the-data-scale", PEN,
             "jitter = self.noise * real.std() * torch.rand(", "jitter = self.noise * torch.rand(", PENALTIES),
    Mutation("gradient-norm-over-the-whole-batch", PEN,
             "return out, grad.flatten(1).norm(2, dim=1)", "return out, grad.flatten().norm(2).expand(len(grad))",
             PENALTIES),
    Mutation("penalty-not-differentiable-in-d", PEN,
             "(grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)",
             "(grad,) = torch.autograd.grad(out.sum(), x, create_graph=False)", FAITHFUL),
    Mutation("lazy-penalty-not-scaled-by-its-interval", BASE,
             "return None if value is None else Term(self.weight * self.every * value, value)\n\n    def g_term",
             "return None if value is None else Term(self.weight * value, value)\n\n    def g_term",
             ("tests/test_faithful_regularizers.py::test_a_lazy_penalty_enters_the_loss_as_weight_times_every_times_its_value",)),
    Mutation("lecam-pulls-reals-to-the-real-anchor", DISC,
             "F.relu(real_logits.float() - self.anchor_fake)", "F.relu(real_logits.float() - self.anchor_real)",
             ZOO),
    Mutation("lecam-anchor-decays-the-new-value", DISC,
             "self.anchor_real = torch.lerp(real_mean, self.anchor_real.to(real_mean.device), decay)",
             "self.anchor_real = torch.lerp(self.anchor_real.to(real_mean.device), real_mean, decay)", ZOO),
    Mutation("label-smoothing-by-the-target", DISC,
             "return (1.0 - self.real_target) * real_logits.float().mean()",
             "return self.real_target * real_logits.float().mean()", ZOO),
    Mutation("bcr-fake-term-weighted-as-the-real", DISC,
             "self.every * (self.weight * real_term + self.fake_weight * fake_term)",
             "self.every * self.weight * (real_term + fake_term)", PENALTIES),
    Mutation("ac-gan-generator-term-reversed", DISC,
             "        return F.cross_entropy(D.classify(fake).float(), labels)\n",
             "        return -F.cross_entropy(D.classify(fake).float(), labels)\n", FAITHFUL),
    Mutation("top-k-keeps-the-worst-fakes", GEN,
             "return fake_logits.topk(k).values", "return (-fake_logits).topk(k).values.neg()", ZOO),
    Mutation("top-k-fraction-never-decays", GEN,
             "k = max(k * self.decay, floor)", "k = max(k * 1.0, floor)", FAITHFUL),
    Mutation("orthogonal-penalises-the-diagonal", GEN,
             "off_diagonal = gram * (1 - torch.eye(len(gram), device=w.device, dtype=w.dtype))",
             "off_diagonal = gram", FAITHFUL),
    Mutation("path-length-noise-not-scaled", GEN,
             "noise = noise / math.sqrt(images.shape[2] * images.shape[3])", "noise = noise", FAITHFUL),
    Mutation("path-length-on-the-whole-batch", GEN,
             "n = max(1, len(z) // self.batch_shrink)", "n = len(z)", PENALTIES),
    Mutation("path-length-mean-detached-in-the-penalty", GEN,
             "mean = torch.lerp(self.mean.to(lengths.device), lengths.mean().float(), self.decay)",
             "mean = torch.lerp(self.mean.to(lengths.device), lengths.mean().detach().float(), self.decay)",
             ("tests/test_recipes.py::test_path_length_penalty_keeps_the_gradient_of_the_means_batch_share",)),
    Mutation("path-length-pass-without-style-mixing", "ganforge/models/stylegan2.py",
             "        ws = self.mapping_ws(z, labels)\n        return self.synthesis(ws), ws",
             "        ws = self.mapping_w(z, labels).unsqueeze(1).repeat(1, self.num_ws, 1)\n"
             "        return self.synthesis(ws), ws",
             ("tests/test_recipes.py::test_path_length_pass_mixes_styles_as_training_does",)),
    Mutation("ada-moves-p-the-wrong-way", AUG,
             "torch.sign(r_t - self.target)", "torch.sign(self.target - r_t)", FAITHFUL),
    Mutation("ada-step-ignores-the-images-seen", AUG,
             "(sums[2] / self.speed_images)", "(sums[2] / self.speed_images / self.interval)", FAITHFUL),
    Mutation("ada-running-sums-not-restored", AUG,
             'self._seen = torch.tensor(float(state.get("seen", 0)))', "self._seen = torch.zeros(())", RESUME),
    Mutation("instance-noise-never-anneals", AUG,
             "self.std * max(0.0, 1.0 - step / self.anneal_steps)", "self.std", ZOO),
    Mutation("weight-clipping-one-sided", NETS,
             "p.clamp_(-self.clip, self.clip)", "p.clamp_(max=self.clip)", WIRING),
    # -- the losses --------------------------------------------------------------------------------
    Mutation("non-saturating-g-loss-saturates", LOSS,
             "None) -> Tensor:\n        return F.softplus(-fake).mean()",
             "None) -> Tensor:\n        return -F.softplus(fake).mean()", LOSSES),
    Mutation("hinge-d-margin-on-the-wrong-side", LOSS,
             "F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()",
             "F.relu(1.0 + real).mean() + F.relu(1.0 - fake).mean()", LOSSES),
    Mutation("least-squares-without-its-half", LOSS,
             "return 0.5 * ((fake - 1.0) ** 2).mean()", "return ((fake - 1.0) ** 2).mean()", LOSSES),
    Mutation("relativistic-average-against-its-own-mean", LOSS,
             "F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()",
             "F.softplus(-(real - real.mean())).mean() + F.softplus(fake - fake.mean()).mean()", LOSSES),
    Mutation("wasserstein-critic-reversed", LOSS,
             "return fake.mean() - real.mean()", "return real.mean() - fake.mean()", LOSSES),
    # -- the EMA -------------------------------------------------------------------------------------
    Mutation("ema-weights-the-old-average", STEPS,
             "torch._foreach_lerp_(self.ema_params, self.params, weight)",
             "torch._foreach_lerp_(self.ema_params, self.params, 1.0 - weight)", EMA),
    Mutation("ema-copies-until-one-step-late", STEPS,
             "weight = 1.0 if step <= self.start else", "weight = 1.0 if step <= self.start + 1 else", EMA),
    Mutation("ema-half-life-inverted", STEPS,
             "half_life = math.log(0.5) / math.log(self.decay)", "half_life = math.log(self.decay) / math.log(0.5)",
             EMA),
    Mutation("evaluation-of-g-not-g-ema", UPKEEP,
             "result = evaluator(state.G_ema, seed=cfg.train.seed)", "result = evaluator(state.G, seed=cfg.train.seed)",
             EVAL),
    # -- the metrics -------------------------------------------------------------------------------
    Mutation("fid-counts-the-cross-term-once", SCORE,
             "np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)",
             "np.trace(sigma1) + np.trace(sigma2) - trace_sqrt)",
             (SCORES + "frechet_distance_matches_scipy_reference",)),
    Mutation("kid-biased-estimate", SCORE, "/ (m * (m - 1)) - 2 * k_ab.mean()", "/ (m * m) - 2 * k_ab.mean()",
             (SCORES + "kid_is_zero_in_expectation_for_one_distribution_and_positive_for_two",)),
    Mutation("inception-score-without-the-marginal", SCORE,
             "log_marginal = torch.logsumexp(log_p, dim=0, keepdim=True) - math.log(len(part))",
             "log_marginal = torch.logsumexp(log_p, dim=0, keepdim=True)",
             (SCORES + "inception_score_of_a_perfect_uniform_classifier_is_the_number_of_classes",)),
    Mutation("neighbour-radius-counts-the-point-itself", SCORE,
             "radii.append(d.kthvalue(k + 1, dim=1).values)", "radii.append(d.kthvalue(k, dim=1).values)",
             (SCORES + "precision_recall_density_coverage_on_hand_computed_sets",)),
    Mutation("precision-recall-with-the-density-k", "ganforge/metrics/catalog.py",
             "_need_real(inputs).values, k=3)", "_need_real(inputs).values, k=5)", DEFAULTS),
    Mutation("pixels-scaled-by-256", FEATURES, "x = images.float() / 255.0", "x = images.float() / 256.0",
             METRIC_INPUTS),
    Mutation("generated-images-not-clamped", FEATURES,
             "((images.float().clamp(-1, 1) + 1) * 127.5)", "((images.float() + 1) * 127.5)", METRIC_INPUTS),
    Mutation("evaluation-noise-from-another-seed", EVALUATE,
             "z = sample_noise(self.num_samples, G.latent_dim, seed, G_device, trunc.threshold)",
             "z = sample_noise(self.num_samples, G.latent_dim, seed + 1, G_device, trunc.threshold)", EVAL_COMMAND),
    Mutation("generator-evaluated-in-training-mode", EVALUATE, "        G.eval()\n        try:",
             "        G.train()\n        try:", EVAL_COMMAND),
    # -- resume ---------------------------------------------------------------------------------------
    Mutation("regularizer-state-not-restored", STATE,
             "                    reg.load_state_dict(reg_state)", "                    pass", RESUME),
    Mutation("path-length-mean-not-restored", GEN,
             "self.mean = torch.zeros(()) if mean is None else mean", "self.mean = torch.zeros(())", RESUME),
    Mutation("data-position-not-restored", STATE, "    batches.load_state_dict(ckpt.data)\n", "\n", RESUME),
    Mutation("learning-rates-not-rescheduled-on-resume", LOOP,
             "        set_scheduled_lrs(state)  # a longer", "        pass  # a longer", RESUME),
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
