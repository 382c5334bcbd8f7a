"""Metrics against references and hand-computed values; evaluation as a user runs it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import pytorch_fid.fid_score as fid_score  # a dev dependency: missing, the suite fails (no silent skip)
import pytorch_fid.inception as pytorch_fid_inception
import torch

from conftest import assert_one_line_error, run_cli, stand_in_inception_state, tiny_config, write_config
from ganforge.metrics import scores
from ganforge.metrics.inception import FIDInception
from ganforge.metrics.modes import mode_coverage


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A state dict of the FID Inception architecture whose features vary with the input
    (conftest.stand_in_inception_state), and its file."""
    state = stand_in_inception_state()
    path = tmp_path_factory.mktemp("weights") / "pt_inception-random.pth"
    torch.save(state, path)
    return state, path


def test_inception_matches_pytorch_fid_with_the_same_weights(random_inception_weights, monkeypatch):
    state, _ = random_inception_weights
    # pytorch-fid downloads its weights in the constructor: hand it ours instead.
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    reference = pytorch_fid_inception.InceptionV3([3]).eval()
    ours = FIDInception(state)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)[0].flatten(1)
        pool, logits = ours(x)
    assert pool.shape == (4, 2048) and logits.shape == (4, 1008)
    assert expected.abs().mean() > 1e-3  # the features are not trivially zero
    torch.testing.assert_close(pool, expected, rtol=0, atol=1e-6)
    # The logits are pool3 times the classifier weights, without the bias.
    torch.testing.assert_close(logits, pool @ state["fc.weight"].T)
    # The extractor ganforge evaluates with (8-bit images in, channels_last convolutions) gives
    # pytorch-fid's features to float rounding.
    from ganforge.metrics.features import InceptionExtractor

    images = (x * 255).round().to(torch.uint8)
    with torch.no_grad():
        features, _ = InceptionExtractor(state, "random").eval()(images)
        expected = reference(images.float() / 255)[0].flatten(1)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)


def test_frechet_distance_matches_scipy_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(600, 64))
    b = rng.normal(size=(500, 64)) @ rng.normal(scale=0.3, size=(64, 64)) + 0.5
    mu1, s1 = scores.mean_cov(torch.from_numpy(a))
    mu2, s2 = scores.mean_cov(torch.from_numpy(b))
    assert np.allclose(s1, np.cov(a, rowvar=False)) and np.allclose(mu1, a.mean(0))
    expected = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)  # scipy.linalg.sqrtm, float64
    assert scores.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = torch.randn(300, 32, generator=torch.Generator().manual_seed(1))
    mu, sigma = scores.mean_cov(x)
    assert abs(scores.frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    # Two 1-d Gaussians: (m1 - m2)^2 + (s1 - s2)^2.
    assert scores.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) == \
        pytest.approx((1 - 3) ** 2 + (2 - 1) ** 2)


def test_kid_is_zero_in_expectation_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 64, generator=g), torch.randn(2000, 64, generator=g)
    same_mean, same_std = scores.kernel_inception_distance(a, b, subsets=50, subset_size=500)
    assert abs(same_mean) < 3 * same_std / math.sqrt(50) + 1e-4
    shifted, _ = scores.kernel_inception_distance(a, b + 0.5, subsets=50, subset_size=500)
    assert shifted > 10 * max(abs(same_mean), same_std / math.sqrt(50))


def test_inception_score_of_a_perfect_uniform_classifier_is_the_number_of_classes():
    logits = torch.full((1000, 1008), -1e4)
    logits[torch.arange(1000), torch.arange(1000) % 10] = 1e4  # certain, and uniform over 10 classes
    mean, std = scores.inception_score(logits, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    collapsed = torch.zeros(1000, 1008)
    collapsed[:, 3] = 1e4
    assert scores.inception_score(collapsed)[0] == pytest.approx(1.0)


def test_precision_recall_density_coverage_on_hand_computed_sets():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    # k=1: every real point's radius is 1; 0.5 lies within one, 10 within none -> precision 1/2.
    # The fakes' radii are 9.5 (each other): every real point is covered -> recall 1.
    assert scores.precision_recall(fake, real, k=1) == (0.5, 1.0)
    # density: 0.5 lies strictly inside the balls of 0 and 1 -> (2 + 0) / (1 * 2) = 1;
    # coverage: reals whose nearest fake is closer than their radius: 0 and 1 -> 2/4.
    assert scores.density_coverage(fake, real, k=1) == (1.0, 0.5)
    same = torch.randn(200, 8, generator=torch.Generator().manual_seed(2))
    assert scores.precision_recall(same, same, k=3) == (1.0, 1.0)
    assert scores.density_coverage(same, same, k=5)[1] == 1.0
    assert scores.precision_recall(same + 100, same, k=3) == (0.0, 0.0)


def test_mode_coverage_on_constructed_samples():
    ticks = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    centres = torch.cartesian_prod(ticks, ticks)
    on_modes = centres[:5].repeat_interleave(100, dim=0)  # 5 modes, 100 samples each, exactly on centre
    stray = torch.full((100, 2), 1.0)  # 1.0 from every centre: far beyond 3 std
    edge = centres[5:6] + torch.tensor([[0.149, 0.0]])  # just inside 3 std = 0.15
    figures = mode_coverage(torch.cat([on_modes, stray, edge]), centres, 0.05, min_count=1)
    assert figures["modes"] == 6
    assert figures["high_quality_pct"] == pytest.approx(100 * 501 / 601)
    expected_kl = 5 * (100 / 501) * math.log(100 / 501 * 25) + (1 / 501) * math.log(25 / 501)
    assert figures["reverse_kl"] == pytest.approx(expected_kl)
    strict = mode_coverage(torch.cat([on_modes, stray, edge]), centres, 0.05)  # >= 1/5 of 601/25
    assert strict["modes"] == 5
    uniform = mode_coverage(centres.repeat(4, 1), centres, 0.05, min_count=1)
    assert uniform["modes"] == 25 and uniform["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


# -- evaluation as a user runs it --------------------------------------------------------------


def test_eval_command_writes_json_with_provenance_and_caches_real_stats(cli, tmp_path, random_inception_weights):
    _, weights = random_inception_weights
    run = tmp_path / "run"
    assert cli("train", str(write_config(tmp_path, tiny_config(run))), "-q").exit_code == 0
    cache = tmp_path / "cache"
    args = ["eval", str(run), "--metrics", "fid,kid,is,pr,dc", "--num", "24", "--real-num", "30",
            "--inception-weights", str(weights), "--cache-dir", str(cache), "-q"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    report = json.loads((run / "eval" / "step-00000006.json").read_text())
    figures = report["metrics"]
    assert set(figures) == {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density", "coverage"}
    # FID and IS recomputed here: the run's G_ema on seed 0's noise, its 8-bit images through the
    # extractor (checked against pytorch-fid above), the cached real features, SciPy's square root.
    from test_eval_folders import reference_fid

    from ganforge.generation.drawing import draw, load_generator
    from ganforge.metrics.features import InceptionExtractor, to_uint8

    state, _ = random_inception_weights
    with torch.no_grad():
        fake, logits = InceptionExtractor(state, "random")(to_uint8(draw(load_generator(run, device="cpu"), 24)))
    [cached] = list(cache.iterdir())
    real = torch.load(cached, weights_only=True)["values"]
    assert figures["fid"] == pytest.approx(reference_fid(fake.double().numpy(), real.double().numpy()), rel=1e-4)
    splits = [logits[i * 24 // 10:(i + 1) * 24 // 10].double().softmax(1) for i in range(10)]
    expected_is = np.mean([math.exp((p * (p.log() - p.mean(0).log())).sum(1).mean().item()) for p in splits])
    assert figures["is"] == pytest.approx(expected_is, rel=1e-6)
    # The Inception Score of a split is exp(mutual information of sample and class), at most the
    # split's size: 24 samples in 10 splits of 2 or 3 (OpenAI's i*n//10 bounds) average at most 2.4.
    assert 1.0 <= figures["is"] <= 2.4 and figures["is_std"] >= 0
    assert report["num_samples"] == 24 and report["step"] == 6
    assert "inception-v3-fid" in report["extractor"]
    assert report["reference"]["num_samples"] == 30 and report["reference"]["data"]["kind"] == "digits"
    [stats] = list(cache.iterdir())
    assert stats.name.startswith("digits-30-")
    modified = stats.stat().st_mtime_ns
    again = cli(*args[:-1], "--json", "--seed", "0")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["metrics"]["fid"] == pytest.approx(figures["fid"])
    assert stats.stat().st_mtime_ns == modified  # read from the cache, not recomputed


def test_missing_inception_weights_offline_names_file_and_place(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert cli("train", str(write_config(tmp_path, tiny_config(run))), "-q").exit_code == 0
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    result = cli("eval", str(run), "--num", "4", "-q")
    assert result.exit_code == 2
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert "pt_inception-2015-12-05-6726825d.pth" in line
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in line
    assert "eval.extractor.weights" in line and "--inception-weights" in line
    # The key it names is one the config accepts.
    config = write_config(tmp_path, tiny_config(run))
    assert cli("config", str(config), "--set", "eval.extractor.weights=/x.pth").exit_code == 0


def test_training_evaluates_logs_and_keeps_the_best_checkpoint(cli, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(run, data={"kind": "gaussian_grid", "num_samples": 500},
                      generator={"kind": "mlp", "width": 16, "output_scale": 4.0},
                      discriminator={"kind": "mlp", "width": 16, "input_scale": 4.0},
                      train={"steps": 12, "batch_size": 16, "device": "cpu"},
                      samples={"every": 6, "num": 100},
                      eval={"every": 3, "metrics": ["modes"], "num_samples": 500, "best": "high_quality_pct"})
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval" in r]
    assert [r["step"] for r in evals] == [3, 6, 9, 12]
    assert all(r["eval_num_samples"] == 500 and r["eval_extractor"] == "raw 2D points" for r in evals)
    best_step = max(evals, key=lambda r: (r["eval"]["high_quality_pct"], -r["step"]))["step"]
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    assert index["best"]["file"] == "best.pt" and index["best"]["figure"] == "high_quality_pct"
    assert index["best"]["step"] == best_step
    # `ganforge sample` and `eval` take the best checkpoint like any other.
    assert cli("sample", str(run / "checkpoints" / "best.pt"), "--num", "10", "--out",
               str(tmp_path / "p.npy")).exit_code == 0
    result = cli("eval", str(run / "checkpoints" / "best.pt"), "--num", "2500", "--json", "-q")
    got = json.loads(result.stdout)["metrics"]
    # The same figures computed here: G_ema on the noise of seed 0, each sample to its nearest of
    # the 25 centres, within 3 std = 0.15 counts; `modes` needs one, `modes_strict` 1/5 of 2500/25.
    from ganforge.generation.drawing import load_generator

    G = load_generator(run / "checkpoints" / "best.pt", device="cpu").G
    with torch.no_grad():
        points = G(torch.randn(2500, G.latent_dim, generator=torch.Generator().manual_seed(0))).double()
    ticks = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    distance, nearest = torch.cdist(points, torch.cartesian_prod(ticks, ticks)).min(1)
    counts = torch.bincount(nearest[distance <= 0.15], minlength=25)
    assert got["modes"] == int((counts >= 1).sum()) and got["modes_strict"] == int((counts >= 20).sum())
    assert got["high_quality_pct"] == pytest.approx(100 * float((distance <= 0.15).double().mean()))


def test_eval_config_errors(tmp_path):
    cfg = tiny_config(tmp_path / "run", eval={"every": 2, "metrics": ["modes"]})
    assert_one_line_error(run_cli("config", str(write_config(tmp_path, cfg))), 2, "modes is for 2D mixtures")
    cfg = tiny_config(tmp_path / "run", eval={"every": 2, "metrics": ["fid"], "best": "is"})
    assert_one_line_error(run_cli("config", str(write_config(tmp_path, cfg))), 2, "eval.best", "choose from fid")
    cfg = tiny_config(tmp_path / "run", eval={"every": 2, "metrics": ["fdi"]})
    assert_one_line_error(run_cli("config", str(write_config(tmp_path, cfg))), 2, "unknown metric 'fdi'",
                          "did you mean 'fid'")
    cfg = tiny_config(tmp_path / "run", eval={"every": 2, "metrics": ["fid", "dc"], "num_samples": 5})
    assert_one_line_error(run_cli("config", str(write_config(tmp_path, cfg))), 2, "eval.num_samples",
                          "dc needs at least 6 samples, got 5")


def test_eval_with_too_few_samples_for_a_metric_is_one_line(cli, tmp_path, random_inception_weights):
    _, weights = random_inception_weights
    run = tmp_path / "run"
    assert cli("train", str(write_config(tmp_path, tiny_config(run))), "-q").exit_code == 0
    result = run_cli("eval", str(run), "--metrics", "pr", "--num", "3", "--inception-weights", str(weights), "-q")
    assert_one_line_error(result, 2, "--num", "pr needs at least 4 samples, got 3")


def test_real_statistics_cache_key_follows_data_extractor_and_count(tmp_path):
    """README: real-data features are cached under a key made of the data config, the extractor
    and the sample count: changing any one computes (and caches) anew; repeating one reads it back."""
    from ganforge.build import build_data
    from ganforge.config import parse_config
    from ganforge.metrics.evaluate import Evaluator
    from ganforge.metrics.features import FeatureExtractor

    calls = []

    class Projection(FeatureExtractor):
        """4x4-pooled pixels times a fixed random matrix: a cheap stand-in for Inception."""

        def __init__(self, seed: int) -> None:
            super().__init__()
            self.name = f"projection-{seed}"
            self.weight = torch.randn(16, 8, generator=torch.Generator().manual_seed(seed))

        def forward(self, images):
            calls.append(len(images))
            return features_of(images, self.weight), None

    def features_of(images, weight):
        return torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1) @ weight

    sources = {}

    def real(resolution=16, seed=0, num=5):
        cfg = parse_config({"data": {"kind": "digits", "resolution": resolution}, "generator": {"kind": "dcgan"},
                            "discriminator": {"kind": "dcgan"}})
        source = sources[resolution] = sources.get(resolution) or build_data(cfg)
        evaluator = Evaluator(cfg.data, source, ["fid"], num, Projection(seed), torch.device("cpu"), real_samples=num,
                              cache_dir=str(tmp_path), progress=False)
        values = evaluator.real_features().values
        # Independently: every row is the features of one of the data set's images, by this extractor.
        everything = features_of(source.tensors()[0], torch.randn(16, 8, generator=torch.Generator().manual_seed(seed)))
        assert values.shape == (num, 8)
        assert (values[:, None] - everything[None]).abs().amax(-1).min(1).values.max() < 1e-5
        return values

    base = real()
    assert len(list(tmp_path.iterdir())) == 1 and sum(calls) == 5
    assert torch.equal(real(), base) and sum(calls) == 5  # the same key: read back, not recomputed
    for changed in ({"resolution": 32}, {"seed": 1}, {"num": 6}):  # data config, extractor, count
        before = sum(calls)
        real(**changed)  # served another key's features, its rows would not be this setting's
        assert sum(calls) > before, changed
    assert len(list(tmp_path.iterdir())) == 4
    assert torch.equal(real(), base) and sum(calls) == 5 + 5 + 5 + 6
