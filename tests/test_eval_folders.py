"""Metrics on folders of images (pytorch-fid parity) and intra-class FID."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
import yaml
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from ganforge.cli import app as ganforge_app
from ganforge.config import Component
from ganforge.data import DataInfo, epoch_permutation
from ganforge.errors import ConfigError
from ganforge.metrics import folders, scores
from ganforge.metrics.catalog import METRICS, MetricInputs, check_metrics, is_better
from ganforge.metrics.evaluate import Evaluator
from ganforge.metrics.features import FeatureExtractor, Features, InceptionExtractor
from ganforge.metrics.inception import FIDInception


def run(*args: str):
    return CliRunner().invoke(ganforge_app, list(args), catch_exceptions=False)


def assert_one_line(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def stand_in_weights(tmp_path_factory):
    """The FID Inception architecture with random weights, saved as a weights file. Its BatchNorm
    statistics are measured on two random images, so that features vary with the input (with
    arbitrary statistics the random network maps every image to nearly the same features)."""
    torch.manual_seed(0)
    net = FIDInception()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batch
    net.net.train()
    with torch.no_grad():
        net(torch.rand(2, 3, 16, 16))
    state = net.net.state_dict()
    path = tmp_path_factory.mktemp("weights") / "pt_inception-stand-in.pth"
    torch.save(state, path)
    return state, path


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID from two feature matrices with SciPy's general matrix square root (not ganforge's code).

    Both sets are first written in an orthonormal basis of the span of their centred rows and the
    difference of means: an exact change of coordinates for the FID (nothing varies outside that
    span), which keeps the square root small when features have many more dimensions than samples.
    """
    mu1, mu2 = a.mean(0), b.mean(0)
    basis, _ = np.linalg.qr(np.concatenate([a - mu1, b - mu2, (mu1 - mu2)[None]]).T)
    a, b, mu1, mu2 = a @ basis, b @ basis, mu1 @ basis, mu2 @ basis
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # singular products are expected here (fewer samples than dimensions)
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_from_few_samples_equals_the_fid_of_their_statistics():
    g = torch.Generator().manual_seed(4)
    for n, m, d in ((9, 12, 300), (40, 25, 40), (200, 150, 16)):  # fewer, as many and more samples than dims
        a, b = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g) * 1.4 + 0.2
        expected = reference_fid(a.double().numpy(), b.double().numpy())
        assert scores.frechet_distance_of(a, b) == pytest.approx(expected, rel=1e-7)
        assert scores.frechet_distance(*scores.mean_cov(a), *scores.mean_cov(b)) == pytest.approx(expected, rel=1e-6)


# -- intra-class FID --------------------------------------------------------------------------


def test_ifid_is_the_mean_of_the_per_class_fids():
    g = torch.Generator().manual_seed(0)
    fake_labels = torch.arange(90) % 3
    real_labels = torch.tensor([0] * 40 + [1] * 25 + [2] * 30)
    fake = torch.randn(90, 6, generator=g) + fake_labels[:, None] * 0.5
    real = torch.randn(95, 6, generator=g) * 1.3 + real_labels[:, None]
    inputs = MetricInputs(Features(fake, labels=fake_labels), Features(real, labels=real_labels), None)
    figures = METRICS.get("ifid").builder(inputs=inputs)
    per_class = [scores.frechet_distance(*scores.mean_cov(fake[fake_labels == k]),
                                         *scores.mean_cov(real[real_labels == k])) for k in range(3)]
    assert set(figures) == {"ifid", "ifid/0", "ifid/1", "ifid/2"}
    assert [figures[f"ifid/{k}"] for k in range(3)] == pytest.approx(per_class, rel=1e-12)
    assert figures["ifid"] == pytest.approx(sum(per_class) / 3, rel=1e-12)
    # ... which are FIDs: SciPy's square root agrees.
    assert figures["ifid/1"] == pytest.approx(reference_fid(fake[fake_labels == 1].double().numpy(),
                                                            real[real_labels == 1].double().numpy()), rel=1e-8)
    # Lower is better, per class too.
    assert is_better("ifid", 1.0, 2.0) and is_better("ifid/2", 1.0, 2.0) and not is_better("ifid", 3.0, 2.0)
    short = MetricInputs(Features(fake, labels=fake_labels), Features(real[:41], labels=real_labels[:41]), None)
    with pytest.raises(Exception, match="ifid: class 1 has 30 generated and 1 real samples"):
        METRICS.get("ifid").builder(inputs=short)


def test_ifid_needs_labelled_data_and_a_conditional_generator():
    problem = METRICS.get("ifid").accepts.problem(DataInfo("zip", (3, 8, 8), 0))
    assert problem is not None and "labelled" in problem
    assert METRICS.get("ifid").accepts.problem(DataInfo("zip", (3, 8, 8), 10)) is None
    with pytest.raises(ConfigError, match="eval.metrics: ifid .* needs a conditional generator") as e:
        check_metrics(["fid", "ifid"], True, conditional=False)
    assert "\n" not in str(e.value)
    check_metrics(["ifid"], True, best="ifid", conditional=True)


class MeanColour(FeatureExtractor):
    """A stand-in extractor: per-channel mean and standard deviation of the pixels."""

    name = "mean-colour"

    def forward(self, images):
        x = images.float()
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1), None


def mean_colour(arrays) -> np.ndarray:
    x = np.stack(arrays).astype(np.float64)
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2), ddof=1)], 1)


class ClassColourG(nn.Module):
    """A conditional stand-in generator: class k paints mid-grey plus k/10 and noise."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes, self.latent_dim = num_classes, 4
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, z, labels=None):
        shift = labels.float()[:, None, None, None] / 10 if labels is not None else 0
        return (z[:, :1, None, None] * 0.1 + shift).expand(-1, 1, 16, 16) + self.w


def test_evaluator_ifid_on_digits_with_a_conditional_generator(tmp_path):
    from ganforge.data.images import digits

    data_cfg = Component("digits", {"resolution": 16})
    evaluator = Evaluator(data_cfg, digits(16), ["ifid"], 60, MeanColour(), torch.device("cpu"),
                          real_samples=200, cache_dir=str(tmp_path), progress=False)
    result = evaluator(ClassColourG(10))
    # Independently: the same 200 real digits (seed-0 order), by class; generated class k = k-th of every 10.
    x, y = digits(16).tensors()
    order = epoch_permutation(len(x), 0, 0)[:200]
    real = mean_colour([a.permute(1, 2, 0).numpy() for a in x[order]])
    real_y = y[order].numpy()
    fake_features = evaluator.fake_features(ClassColourG(10), 0)
    fake, fake_y = fake_features.values.double().numpy(), fake_features.labels.numpy()
    assert (fake_y == np.arange(60) % 10).all()
    expected = [reference_fid(fake[fake_y == k], real[real_y == k]) for k in range(10)]
    assert [result.figures[f"ifid/{k}"] for k in range(10)] == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert result.figures["ifid"] == pytest.approx(np.mean(expected), rel=1e-6)
    # The cached real features keep their labels.
    again = Evaluator(data_cfg, digits(16), ["ifid"], 60, MeanColour(), torch.device("cpu"),
                      real_samples=200, cache_dir=str(tmp_path), progress=False)
    assert torch.equal(again.real_features().labels, torch.from_numpy(real_y))
    unconditional = ClassColourG(10)
    unconditional.num_classes = 0
    with pytest.raises(ConfigError, match="needs a conditional generator"):
        evaluator(unconditional)


# -- folders -----------------------------------------------------------------------------------


def write_images(folder, arrays) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(a).save(paths[-1])
    return paths


def test_folder_fid_matches_pytorch_fid_with_the_same_weights(stand_in_weights, tmp_path, monkeypatch):
    pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
    from pytorch_fid import fid_score

    state, weights = stand_in_weights
    rng = np.random.default_rng(0)
    generated = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(5)]
    generated.append(rng.integers(0, 256, (16, 16), dtype=np.uint8))  # greyscale: read as RGB, as pytorch-fid
    real = [(rng.random((16, 16, 3)) * 120 + 60).astype(np.uint8) for _ in range(5)]
    real.append(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))  # another size: its own batch
    fake_files = write_images(tmp_path / "generated", generated)
    real_files = write_images(tmp_path / "real", real)
    result = run("eval-images", str(tmp_path / "generated"), "--reference", str(tmp_path / "real"),
                 "--metrics", "fid,kid", "--inception-weights", str(weights), "--batch-size", "4",
                 "--num-workers", "0", "--device", "cpu", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["num_samples"] == 6 and report["reference"] == {"folder": str(tmp_path / "real"),
                                                                  "num_samples": 6}
    assert "inception-v3-fid" in report["extractor"] and report["images"] == str(tmp_path / "generated")

    # pytorch-fid's own reading and network with the same weights; the distance from SciPy.
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    model = pytorch_fid_inception.InceptionV3([3])
    theirs_fake = fid_score.get_activations([str(p) for p in fake_files], model, batch_size=1, num_workers=0)
    theirs_real = fid_score.get_activations([str(p) for p in real_files], model, batch_size=1, num_workers=0)
    expected = reference_fid(theirs_fake, theirs_real)
    assert expected > 1.0  # the stand-in's features tell the two folders apart
    assert report["metrics"]["fid"] == pytest.approx(expected, rel=1e-4)
    kid, _ = scores.kernel_inception_distance(torch.from_numpy(theirs_fake), torch.from_numpy(theirs_real),
                                              subsets=1, subset_size=6)  # every image: the most that fit
    assert report["metrics"]["kid"] == pytest.approx(kid, rel=1e-3)


def test_folder_ifid_matches_classes_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "build_extractor", lambda cfg, device: MeanColour())
    rng = np.random.default_rng(3)
    arrays = {}
    for side, scale in (("gen", 1.0), ("real", 0.7)):
        for k, cls in enumerate(("ant", "bee")):
            arrays[side, cls] = [(rng.random((8, 8, 3)) * 100 * scale + 40 * k).astype(np.uint8) for _ in range(7)]
            write_images(tmp_path / side / cls, arrays[side, cls])
    result = folders.evaluate_folders(tmp_path / "gen", tmp_path / "real", metrics=["ifid", "fid"], num_workers=0,
                                      progress=False)
    expected = [reference_fid(mean_colour(arrays["gen", c]), mean_colour(arrays["real", c])) for c in ("ant", "bee")]
    assert set(result.figures) == {"ifid", "ifid/0", "ifid/1", "fid"}
    assert result.figures["ifid/0"] == pytest.approx(expected[0], rel=1e-6)
    assert result.figures["ifid/1"] == pytest.approx(expected[1], rel=1e-6)
    assert result.figures["ifid"] == pytest.approx(np.mean(expected), rel=1e-6)
    everything = mean_colour(arrays["gen", "ant"] + arrays["gen", "bee"])
    assert result.figures["fid"] == pytest.approx(
        reference_fid(everything, mean_colour(arrays["real", "ant"] + arrays["real", "bee"])), rel=1e-6)
    # A reference class that was never generated has no FID: refused, naming it.
    write_images(tmp_path / "real" / "cow", [np.zeros((8, 8, 3), np.uint8)] * 3)
    with pytest.raises(Exception, match="ifid: class 2 has 0 generated and 3 real samples"):
        folders.evaluate_folders(tmp_path / "gen", tmp_path / "real", metrics=["ifid"], num_workers=0, progress=False)


def test_eval_images_against_a_data_config(stand_in_weights, tmp_path):
    _, weights = stand_in_weights
    write_images(tmp_path / "gen", [np.full((16, 16), 40 * i, np.uint8) for i in range(3)])
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": {"kind": "digits", "resolution": 16}}))
    cache = tmp_path / "cache"
    result = run("eval-images", str(tmp_path / "gen"), "--data", str(config), "--inception-weights", str(weights),
                 "--cache-dir", str(cache), "--device", "cpu", "--num-workers", "0", "--out",
                 str(tmp_path / "r.json"), "-q")
    assert result.exit_code == 0, result.stderr
    assert "fid" in result.stdout and "reference: digits (3 real samples)" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["reference"]["data"]["kind"] == "digits"
    [stats] = list(cache.iterdir())
    assert stats.name.startswith("digits-3-")
    # The FID of the folder's features against the cached digits' features, by SciPy.
    state, _ = stand_in_weights
    generated = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "gen").iterdir())]))
    with torch.no_grad():
        features, _ = InceptionExtractor(state, "stand-in")(generated[:, None])
    real = torch.load(stats, weights_only=True)["values"]
    expected = reference_fid(features.double().numpy(), real.double().numpy())
    assert report["metrics"]["fid"] == pytest.approx(expected, rel=1e-4)


def test_eval_images_errors_are_one_line(tmp_path):
    write_images(tmp_path / "gen", [np.zeros((8, 8, 3), np.uint8)] * 3)
    gen = str(tmp_path / "gen")
    assert_one_line(run("eval-images", str(tmp_path / "none")), 2, "--images: no such folder")
    assert_one_line(run("eval-images", gen), 2, "fid compare with real images", "--reference DIR", "--data CONFIG")
    assert_one_line(run("eval-images", gen, "--reference", gen, "--data", str(tmp_path / "x.yaml")), 2, "not both")
    assert_one_line(run("eval-images", gen, "--metrics", "fdi", "--reference", gen), 2, "unknown metric 'fdi'")
    assert_one_line(run("eval-images", gen, "--metrics", "modes", "--reference", gen), 2, "modes is for 2D mixtures")
    assert_one_line(run("eval-images", gen, "--metrics", "dc", "--reference", gen), 2, "dc needs at least 6")
    assert_one_line(run("eval-images", gen, "--metrics", "ifid", "--reference", gen), 2,
                    "--metrics ifid", "one sub-folder per class")
    assert_one_line(run("eval-images", gen, "--data", str(tmp_path / "x.yaml")), 2, "--data: no such file")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"kind": "zip", "path": "a.zip", "resolutoin": 8}}))
    assert_one_line(run("eval-images", gen, "--data", str(bad)), 2, "data.resolutoin: unknown key",
                    "did you mean 'data.resolution'")
    unlabelled = tmp_path / "unlabelled.yaml"
    unlabelled.write_text(yaml.safe_dump({"data": {"kind": "image_folder", "path": gen, "resolution": 8}}))
    (tmp_path / "gen2" / "a").mkdir(parents=True)
    write_images(tmp_path / "gen2" / "a", [np.zeros((8, 8, 3), np.uint8)] * 2)
    write_images(tmp_path / "gen2" / "b", [np.zeros((8, 8, 3), np.uint8)] * 2)
    assert_one_line(run("eval-images", str(tmp_path / "gen2"), "--metrics", "ifid", "--data", str(unlabelled)), 2,
                    "ifid needs labelled data")


def test_eval_with_images_is_the_folder_scorer(stand_in_weights, tmp_path):
    from ganforge.cli import app

    _, weights = stand_in_weights
    write_images(tmp_path / "gen", [np.full((16, 16), 40 * i, np.uint8) for i in range(3)])
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": {"kind": "digits", "resolution": 16}}))
    common = ["--data", str(config), "--inception-weights", str(weights), "--cache-dir", str(tmp_path / "c"),
              "--device", "cpu", "-q"]
    direct = run("eval-images", str(tmp_path / "gen"), *common, "--out", str(tmp_path / "a.json"))
    routed = CliRunner().invoke(app, ["eval", "--images", str(tmp_path / "gen"), *common, "--out",
                                      str(tmp_path / "b.json")], catch_exceptions=False)
    assert direct.exit_code == 0 and routed.exit_code == 0, routed.stderr
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["metrics"]["fid"] == b["metrics"]["fid"]
    both = CliRunner().invoke(app, ["eval", str(tmp_path), "--images", str(tmp_path / "gen")])
    assert_one_line(both, 2, "not both")
