"""Figures other tools report, against those tools' own code: clean-fid's resize and FID,
torch-fidelity's IS and KID, DINOv2's features (a fixture from facebookresearch/dinov2), PPL by
hand, the kNN memorisation check, and each metric's minimum on every input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cleanfid import fid as cleanfid_fid  # dev dependencies: missing, the suite fails (no silent skip)
from cleanfid.resize import make_resizer
from PIL import Image
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from conftest import tiny_config, write_config
from ganforge.errors import ConfigError, GanforgeError
from ganforge.metrics import scores
from ganforge.metrics.catalog import METRICS, EvalOptions, MetricInputs
from ganforge.metrics.dinov2 import DINOv2Extractor, load_dinov2
from ganforge.metrics.evaluate import Evaluator
from ganforge.metrics.features import FeatureExtractor, Features, InceptionExtractor
from ganforge.metrics.folders import evaluate_folders
from ganforge.metrics.inception import FIDInception
from ganforge.metrics.resize import clean_resize, tf1_bilinear_resize

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def inception_state(tmp_path_factory):
    """Stand-in FID Inception weights (random; BatchNorm statistics measured on two random images,
    so that features vary with the input), in memory and as a file."""
    torch.manual_seed(0)
    net = FIDInception()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.net.train()
    with torch.no_grad():
        net(torch.rand(2, 3, 16, 16))
    state = net.net.state_dict()
    path = tmp_path_factory.mktemp("inception") / "pt_inception-stand-in.pth"
    torch.save(state, path)
    return state, path


class StandInNet(nn.Module):
    """In place of the Inception network behind InceptionExtractor (whose resizing and scaling are
    under test): 299 px input -> 8x8 average pool -> fixed random projection (cheap on a CPU)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(12)
        self.weight = torch.randn(3 * 64, 24, generator=g)
        self.classes = torch.randn(24, 1008, generator=g)

    def trunk(self, x):
        pool = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1) @ self.weight
        return pool, pool @ self.classes

    def forward(self, x):  # the legacy input path, as FIDInception.forward
        return self.trunk(2 * torch.nn.functional.interpolate(x, (299, 299), mode="bilinear") - 1)


def stand_in_inception() -> InceptionExtractor:
    return InceptionExtractor(None, "stand-in", net=StandInNet())


def one_line(result, code: int, *fragments: str) -> None:
    """An in-process CLI result: exit code `code`, one `error:` line holding every fragment."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def write_pngs(folder: Path, arrays: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"{i:03d}.png")
    return folder


# -- clean-fid -----------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [32, 300, 512])
def test_clean_resize_equals_clean_fids_resizer(side):
    image = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    expected = make_resizer("PIL", False, "bicubic", (299, 299))(image)  # clean-fid's "clean" mode
    ours = clean_resize(torch.from_numpy(image).permute(2, 0, 1)[None], 299)[0].permute(1, 2, 0).numpy()
    assert ours.dtype == np.float32 and ours.shape == (299, 299, 3)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    # Not the legacy resize: bilinear without antialiasing differs (by a lot when shrinking 512 px).
    legacy = torch.nn.functional.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), (299, 299),
                                             mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert np.abs(legacy - expected).max() > 1.0


def test_clean_fid_on_two_folders_matches_clean_fid(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    fake_dir = write_pngs(tmp_path / "fake", [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(6)])
    real_dir = write_pngs(tmp_path / "real", [(rng.random((40, 40, 3)) * 150 + 50).astype(np.uint8)
                                              for _ in range(6)])
    extractor = stand_in_inception()
    monkeypatch.setattr("ganforge.metrics.folders.build_extractor", lambda cfg, device: extractor)
    clean = evaluate_folders(fake_dir, real_dir, metrics=["fid"], num_workers=0, progress=False,
                             options=EvalOptions(resize="clean"))

    # clean-fid's own reading, resizing and Frechet distance (SciPy's sqrtm); its network is the
    # same stand-in behind clean-fid's input scaling (x - 128) / 128.
    def model(x):
        return extractor.net.trunk((x - 128) / 128)[0]

    feats = [cleanfid_fid.get_folder_features(str(d), model=model, num_workers=0, batch_size=4,
                                              device=torch.device("cpu"), mode="clean", verbose=False)
             for d in (fake_dir, real_dir)]
    expected = cleanfid_fid.fid_from_feats(*feats)
    assert expected > 1.0
    assert clean.figures["fid"] == pytest.approx(expected, rel=1e-4)
    assert clean.settings["resize"] == "clean" and "resize clean" in clean.extractor
    legacy = evaluate_folders(fake_dir, real_dir, metrics=["fid"], num_workers=0, progress=False)
    assert legacy.settings["resize"] == "legacy" and abs(legacy.figures["fid"] - expected) > 1e-3 * expected


# -- torch-fidelity -------------------------------------------------------------------------------


def test_torch_fidelity_protocol_matches_its_features_is_and_kid(inception_state):
    state, weights = inception_state
    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                         feature_extractor_weights_path=str(weights))
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (2, 3, 48, 48), dtype=np.uint8))
    x = images.float()
    assert torch.equal(tf1_bilinear_resize(x, 299),
                       interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False))
    with torch.no_grad():
        expected_pool, expected_logits = theirs(images)
        pool, logits = InceptionExtractor(state, "stand-in", resize="torch-fidelity").eval()(images)
    assert (expected_pool[0] - expected_pool[1]).abs().max() > 1e-2  # features that tell images apart
    # The same resize and scaling bit for bit (above); the networks round differently (NHWC here).
    torch.testing.assert_close(pool, expected_pool, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-3, atol=1e-3)

    # The formulas, on the same features: IS shuffled with seed 2020; KID's subsets from seed 2020.
    g = torch.Generator().manual_seed(3)
    fake_logits = torch.randn(200, 1008, generator=g) * 3
    fake, real = torch.rand(120, 64, generator=g), torch.rand(150, 64, generator=g) * 1.1
    options = EvalOptions(protocol="torch-fidelity", kid_subset_size=100)
    ours_is = METRICS.get("is").builder(inputs=MetricInputs(Features(fake, fake_logits), None, None, options))
    ref_is = isc_features_to_metric(fake_logits, splits=10, shuffle=True, rng_seed=2020)
    assert ours_is["is"] == pytest.approx(ref_is["inception_score_mean"], rel=1e-9)
    assert ours_is["is_std"] == pytest.approx(ref_is["inception_score_std"], rel=1e-7)
    ours_kid = METRICS.get("kid").builder(inputs=MetricInputs(Features(fake), Features(real), None, options))
    ref_kid = kid_features_to_metric(fake, real, kid_subsets=100, kid_subset_size=100, verbose=False)
    # torch-fidelity computes the kernels in float32, ganforge in float64.
    assert ours_kid["kid"] == pytest.approx(ref_kid["kernel_inception_distance_mean"], rel=1e-4)
    assert ours_kid["kid_std"] == pytest.approx(ref_kid["kernel_inception_distance_std"], rel=1e-3)
    # The pytorch-fid protocol (ganforge's default) splits IS in order: another figure.
    default_is = METRICS.get("is").builder(inputs=MetricInputs(Features(fake, fake_logits), None, None))
    assert default_is["is"] == pytest.approx(scores.inception_score(fake_logits)[0])
    assert default_is["is"] != pytest.approx(ours_is["is"], rel=1e-6)


def test_kid_with_fewer_images_than_its_subset_size(cli, tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(4)
    fake, real = torch.randn(30, 16, generator=g), torch.randn(40, 16, generator=g) + 0.3
    # ganforge's rule: subsets of the largest size that fits, said in the result.
    inputs = MetricInputs(Features(fake), Features(real), None)
    figures = METRICS.get("kid").builder(inputs=inputs)
    assert inputs.notes["kid_subset_size"] == 30 and "the most that fit" in inputs.notes["kid"]
    expected = scores.kernel_inception_distance(fake, real, subsets=100, subset_size=30, seed=0)
    assert (figures["kid"], figures["kid_std"]) == pytest.approx(expected) and figures["kid_std"] > 0
    # Every image on both sides: one possible subset, so no spread is reported as one.
    same_size = MetricInputs(Features(fake), Features(real[:30]), None)
    figures = METRICS.get("kid").builder(inputs=same_size)
    assert "kid_std" not in figures and "no kid_std" in same_size.notes["kid"]
    assert figures["kid"] == pytest.approx(scores.kernel_inception_distance(fake, real[:30], 1, 30)[0])
    # torch-fidelity's rule: the subset size must fit, refused in one line before any image is read.
    rng = np.random.default_rng(5)
    for side in ("a", "b"):
        write_pngs(tmp_path / side, [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(5)])
    args = ["eval-images", str(tmp_path / "a"), "--reference", str(tmp_path / "b"), "--metrics", "kid",
            "--protocol", "torch-fidelity", "--num-workers", "0", "-q"]
    one_line(cli(*args, "--inception-weights", str(tmp_path / "none.pth")), 2, f"--images {tmp_path / 'a'}",
             "kid needs at least 1000 generated", "got 5")
    extractor = stand_in_inception()
    monkeypatch.setattr("ganforge.metrics.folders.build_extractor", lambda cfg, device: extractor)
    result = cli(*args, "--kid-subset-size", "4", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["protocol"] == "torch-fidelity" and report["settings"]["kid_subset_size"] == 4
    assert set(report["metrics"]) == {"kid", "kid_std"}


# -- DINOv2 ---------------------------------------------------------------------------------------


def test_dinov2_features_match_facebookresearch_dinov2(tmp_path, monkeypatch):
    """tests/fixtures/dinov2_reference.pt: the reference's ViT (ViT-L/14's settings, narrower) with
    random weights on dgm-eval's preprocessing (scripts/make_dinov2_fixture.py)."""
    fixture = torch.load(FIXTURES / "dinov2_reference.pt", weights_only=True)
    path = tmp_path / "dinov2_small.pth"
    torch.save(fixture["state_dict"], path)
    extractor = load_dinov2(str(path))
    assert extractor.net.patch == 14 and extractor.net.grid == 37 and len(extractor.net.blocks) == 2
    with torch.no_grad():
        got = torch.cat([extractor(image.permute(2, 0, 1)[None])[0] for image in fixture["images"]])
    assert fixture["features"].abs().max() > 1
    torch.testing.assert_close(got, fixture["features"], rtol=0, atol=1e-5)
    # Without weights: one line naming the file and where it goes.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(GanforgeError) as e:
        load_dinov2(None, "prdc_dinov2")
    line = str(e.value)
    assert line.startswith("prdc_dinov2:") and "dinov2_vitl14_pretrain.pth" in line and "\n" not in line
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in line and "--dinov2-weights" in line


def test_fd_dinov2_and_prdc_on_folders(tmp_path):
    fixture = torch.load(FIXTURES / "dinov2_reference.pt", weights_only=True)
    weights = tmp_path / "w.pth"
    torch.save(fixture["state_dict"], weights)
    rng = np.random.default_rng(6)
    write_pngs(tmp_path / "a", [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(7)])
    write_pngs(tmp_path / "b", [(rng.random((16, 16, 3)) * 90).astype(np.uint8) for _ in range(7)])
    result = evaluate_folders(tmp_path / "a", tmp_path / "b", metrics=["fd_dinov2", "prdc_dinov2"], num_workers=0,
                              progress=False, dinov2_weights=str(weights), extractor_cfg=None)
    extractor = DINOv2Extractor(fixture["state_dict"], "w")

    def features(folder):
        arrays = [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]
        with torch.no_grad():
            return extractor(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))[0].double()

    a, b = features(tmp_path / "a"), features(tmp_path / "b")
    assert result.figures["fd_dinov2"] == pytest.approx(scores.frechet_distance_of(a, b), rel=1e-6)
    # clovaai's prdc (strict inequalities), k = 5, by hand.
    d_real = torch.cdist(b, b)
    radii = d_real.kthvalue(6, dim=1).values
    d_fake = torch.cdist(b, a)  # real x fake
    precision = (d_fake < radii[:, None]).any(0).double().mean()
    coverage = (d_fake.min(1).values < radii).double().mean()
    assert result.figures["precision_dinov2"] == pytest.approx(float(precision))
    assert result.figures["coverage_dinov2"] == pytest.approx(float(coverage))


# -- PPL --------------------------------------------------------------------------------------------


class TinyStyleG(nn.Module):
    """mapping_ws / synthesis as stylegan2, 32 px: w = normalised z @ A for 2 layers; image = tanh of a
    linear map of the first w plus per-pixel noise from a `noise_const` buffer."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.latent_dim, self.num_classes = 6, 0
        self.A = nn.Parameter(torch.randn(6, 5, generator=g))
        self.B = nn.Parameter(torch.randn(5, 3 * 32 * 32, generator=g) * 0.5)
        self.noise = nn.Module()
        self.noise.register_buffer("noise_const", torch.zeros(1, 1, 32, 32))

    def mapping_ws(self, z, labels=None):
        z = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        return (z @ self.A).unsqueeze(1).repeat(1, 2, 1)

    def synthesis(self, ws, noise_mode="random"):
        assert noise_mode == "const"
        return torch.tanh((ws[:, 0] @ self.B).view(-1, 3, 32, 32) + 0.2 * self.noise.noise_const)

    def forward(self, z, labels=None):
        return self.synthesis(self.mapping_ws(z), "const")


@pytest.fixture(scope="module")
def lpips_stand_in():
    from ganforge.metrics.lpips import LPIPS

    torch.manual_seed(8)
    net = LPIPS()
    for lin in net.lins:
        lin.weight.data.abs_()
    return net.eval().requires_grad_(False)


def test_ppl_against_the_definition_by_hand(lpips_stand_in):
    from ganforge.metrics.ppl import filtered_mean, path_distances, perceptual_path_length

    G, eps = TinyStyleG(), 1e-4
    g = torch.Generator().manual_seed(9)
    z0, z1 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    t = torch.tensor([0.1, 0.5, 0.7, 0.9])

    def lpips(a, b):  # LPIPS-VGG on the images as they are (no resize), as the reference's PPL
        return lpips_stand_in.distance(lpips_stand_in.layer_features(a, resize=False),
                                       lpips_stand_in.layer_features(b, resize=False))

    def crop(x):  # 32 px: c = 4, rows 12..28, columns 8..24
        return x[:, :, 12:28, 8:24]

    # ppl_wend: lerp in w at t = 0.
    w0, w1 = G.mapping_ws(z0), G.mapping_ws(z1)
    expected = lpips(crop(G.synthesis(w0, "const")), crop(G.synthesis(w0 + eps * (w1 - w0), "const"))) / eps**2
    got = path_distances(G, lpips_stand_in, z0, z1, torch.zeros(4), None, "w", crop=True)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=0)
    assert got.min() > 0

    # ppl_zfull: slerp on the unit sphere, written out in float64.
    def slerp(a, b, s):
        a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
        angle = np.arccos((a * b).sum(1, keepdims=True))
        c = b - (a * b).sum(1, keepdims=True) * a
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        return a * np.cos(s[:, None] * angle) + c * np.sin(s[:, None] * angle)

    za = torch.from_numpy(slerp(z0.double().numpy(), z1.double().numpy(), t.double().numpy())).float()
    zb = torch.from_numpy(slerp(z0.double().numpy(), z1.double().numpy(), t.double().numpy() + eps)).float()
    expected = lpips(crop(G(za)), crop(G(zb))) / eps**2
    got = path_distances(G, lpips_stand_in, z0, z1, t, None, "z", crop=True)
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=0)  # float32 images 1e-4 apart

    # The filter: values below the 1st percentile (rounded down) and above the 99th (rounded up) go.
    values = np.arange(1.0, 301.0)
    values[7] = 1e6  # an outlier
    lo, hi = np.sort(values)[2], np.sort(values)[297]  # 1% of 299 index steps = 2.99 -> 2 ; 296.01 -> 297
    assert filtered_mean(values) == pytest.approx(values[(values >= lo) & (values <= hi)].mean())
    assert filtered_mean(values) < 1000

    # The whole metric: G's noise buffer is redrawn per batch and restored afterwards.
    before = G.noise.noise_const.clone()
    figures = perceptual_path_length(G, lpips_stand_in, num_samples=12, seed=0, batch_size=8)
    assert set(figures) == {"ppl_wend", "ppl_zfull"} and all(v > 0 and math.isfinite(v) for v in figures.values())
    assert torch.equal(G.noise.noise_const, before)
    assert perceptual_path_length(G, lpips_stand_in, num_samples=12, seed=0, batch_size=8) == figures


# -- kNN memorisation -------------------------------------------------------------------------------


class Projection(FeatureExtractor):
    """A cheap stand-in for Inception: 4x4-pooled pixels times a fixed random matrix."""

    name = "projection"

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(16, 12, generator=torch.Generator().manual_seed(10))

    def forward(self, images):
        return torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1) @ self.weight, None


class CopyG(nn.Module):
    """A 'generator' that returns training images: sample i is image (7 i) of the data set."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images, self.latent_dim, self.num_classes = images, 4, 0
        self.w = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, z, labels=None):
        idx = (torch.arange(len(z)) + self.calls) * 7 % len(self.images)
        self.calls += len(z)
        return self.images[idx].float() / 127.5 - 1 + self.w


class NoiseG(CopyG):
    def forward(self, z, labels=None):
        return torch.tanh(z[:, :1, None, None].expand(-1, 1, 16, 16) + torch.randn(len(z), 1, 16, 16))


def test_knn_finds_a_generator_that_copies_the_training_data(tmp_path):
    from ganforge.config import Component
    from ganforge.data.images import digits

    source = digits(16)
    x, _ = source.tensors()
    copy = Evaluator(Component("digits", {"resolution": 16}), source, ["knn"], 64, Projection(), torch.device("cpu"),
                     real_samples=400, batch_size=32, cache_dir=str(tmp_path), progress=False)
    result = copy(CopyG(x))
    assert result.figures["knn_memorised_pct"] == 100.0 and result.figures["knn_min_dist"] < 1e-6
    assert result.figures["knn_threshold"] > 0
    # The sheet: 16 rows of the sample, a gap, its 5 nearest real images; a copy's nearest is itself.
    sheet = np.asarray(result.sheets["knn"])
    cell = 16 * 4  # 16 px scaled up to 64
    assert sheet.shape == (4 * (2 + 16 * 18), 4 * (2 + 18 * 6 + 8))
    first_sample = sheet[4 * 2 : 4 * 2 + cell, 4 * 2 : 4 * 2 + cell]
    first_neighbour = sheet[4 * 2 : 4 * 2 + cell, 4 * (2 + 18 + 8) : 4 * (2 + 18 + 8) + cell]
    assert np.array_equal(first_sample, first_neighbour) and first_sample.std() > 0
    noise = Evaluator(Component("digits", {"resolution": 16}), source, ["knn"], 64, Projection(),
                      torch.device("cpu"), real_samples=400, batch_size=32, cache_dir=str(tmp_path), progress=False)
    assert noise(NoiseG(x)).figures["knn_memorised_pct"] < 10.0


def test_knn_on_a_run_writes_the_sheet_and_names_missing_data(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert cli("train", str(write_config(tmp_path, tiny_config(run))), "-q").exit_code == 0
    monkeypatch.setattr("ganforge.build.build_extractor", lambda cfg, device: Projection())
    weights = tmp_path / "unused.pth"
    result = cli("eval", str(run), "--metrics", "knn,fid", "--num", "6", "--real-num", "30",
                 "--cache-dir", str(tmp_path / "cache"), "--json", "-q")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    sheet = run / "eval" / "knn-step-00000006.png"
    assert report["sheets"]["knn"] == str(sheet)
    assert Image.open(sheet).size == (4 * (2 + 18 * 6 + 8), 4 * (2 + 18 * 6))  # 6 rows: sample, gap, 5 neighbours
    assert 0 <= report["metrics"]["knn_memorised_pct"] <= 100 and "fid" in report["metrics"]
    # The run's data cannot be read: one line naming the metric, before anything is generated.
    from ganforge.errors import DataError

    def unreadable(cfg):
        raise DataError("data.path: no such file: /gone/digits.zip")

    monkeypatch.setattr("ganforge.build.build_data", unreadable)
    result = cli("eval", str(run), "--metrics", "knn", "--inception-weights", str(weights), "-q")
    assert result.exit_code == 2 and "knn: cannot read the run's data" in result.stderr


# -- bad input: one line, naming the metric, before any image is generated ---------------------------


def test_each_metric_checks_its_minimum_on_both_folders(cli, tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    write_pngs(tmp_path / "gen", [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(8)])
    write_pngs(tmp_path / "one", [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)])
    write_pngs(tmp_path / "three", [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(3)])
    # Every refusal comes before the extractor is built (its weights file does not exist).
    base = ["eval-images", str(tmp_path / "gen"), "--inception-weights", str(tmp_path / "none.pth"),
            "--num-workers", "0", "-q"]
    # Before: "SVD did not converge" and "kthvalue(): selected number k out of range".
    one_line(cli(*base, "--reference", str(tmp_path / "one"), "--metrics", "fid"), 2,
             f"--reference {tmp_path / 'one'} (1 images)", "fid needs at least 2 real images, got 1")
    one_line(cli(*base, "--reference", str(tmp_path / "three"), "--metrics", "fid,pr"), 2,
             f"--reference {tmp_path / 'three'}", "pr needs at least 4 real images, got 3")
    one_line(cli(*base, "--reference", str(tmp_path / "gen"), "--metrics", "dc", "--num", "5"), 2,
             f"--images {tmp_path / 'gen'} (5 images)", "dc needs at least 6 samples, got 5")
    one_line(cli(*base, "--reference", str(tmp_path / "gen"), "--metrics", "ppl"), 2, "ppl needs the generator")
    # No readable image at all: said once, in words.
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.png").write_bytes(b"")
    monkeypatch.setattr("ganforge.metrics.folders.build_extractor", lambda cfg, device: stand_in_inception())
    result = cli(*base, "--reference", str(bad), "--metrics", "fid")
    one_line(result, 2, f"no images of {bad} could be read")
    assert "images images" not in result.stderr


def test_bad_input_names_the_metric_and_what_is_missing(cli, tmp_path, monkeypatch):
    run = tmp_path / "run2d"
    cfg = tiny_config(run, data={"kind": "gaussian_grid", "num_samples": 200},
                      generator={"kind": "mlp", "width": 8, "output_scale": 4.0},
                      discriminator={"kind": "mlp", "width": 8, "input_scale": 4.0},
                      train={"steps": 2, "batch_size": 8, "device": "cpu"}, samples={"every": 2, "num": 16})
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    one_line(cli("eval", str(run), "--metrics", "ppl", "-q"), 2, "ppl needs images")
    one_line(cli("eval", str(run), "--resize", "clean", "-q"), 2,
             "modes: eval.resize (--resize) clean resizes images", "2D points")
    one_line(cli("eval", str(run), "--resize", "bicubic", "-q"), 2, "--resize: 'bicubic'")
    # fd_dinov2 without weights; ppl without LPIPS: the files, and where they go.
    image_run = tmp_path / "run"
    assert cli("train", str(write_config(tmp_path, tiny_config(image_run))), "-q").exit_code == 0
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    hub = str(tmp_path / "torch-home" / "hub" / "checkpoints")
    one_line(cli("eval", str(image_run), "--metrics", "fd_dinov2", "-q"), 2, "fd_dinov2:",
             "dinov2_vitl14_pretrain.pth", hub)
    # The tiny run's 16 px: too small for the reference's crop and LPIPS's VGG.
    one_line(cli("eval", str(image_run), "--metrics", "ppl", "-q"), 2, "ppl needs images of at least 32x32")
    big_run = tmp_path / "run32"
    cfg = tiny_config(big_run, data={"kind": "digits", "resolution": 32}, train={"steps": 1, "batch_size": 8})
    assert cli("train", str(write_config(tmp_path, cfg)), "-q").exit_code == 0
    one_line(cli("eval", str(big_run), "--metrics", "ppl", "-q"), 2, "ppl:", "vgg.pth", "vgg16-397923af.pth", hub,
             "--lpips")
    # --resize clean with an extractor that does not resize images.
    from ganforge.metrics.views import build_views

    with pytest.raises(ConfigError, match=r"^fid: eval.resize \(--resize\) clean: the projection extractor"):
        build_views({"main": "fid"}, Projection(), "clean")
