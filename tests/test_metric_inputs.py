"""What generated images look like when they reach Inception: rounded to 8 bits as their PNG
files would be, scaled to [0, 1], resized bilinearly to 299 (pytorch-fid), checked against
pytorch-fid's own network with the same weights. The stand-in weights make features move with
the input (tests/conftest.py), so that truncating instead of rounding, or another resize, shows."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_fid.inception as pytorch_fid_inception
import torch
from torch import nn

from conftest import stand_in_inception_state
from ganforge.data import DataInfo, TensorSource
from ganforge.metrics.evaluate import Evaluator
from ganforge.metrics.features import InceptionExtractor, to_uint8


class FixedImages(nn.Module):
    """A 'generator' whose samples are given images, whatever the noise."""

    latent_dim = 4

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images = images
        self.anchor = nn.Parameter(torch.zeros(()))  # something to find the device by

    def forward(self, z, labels=None):
        return self.images[: len(z)] + 0 * self.anchor


class NoData(TensorSource):
    """Real images the evaluator counts (to check --real-num) but this test never extracts."""

    def load(self):
        return torch.zeros(100, *self.info.shape, dtype=torch.uint8), None


def pixels_and_images(n: int = 3) -> tuple[np.ndarray, torch.Tensor]:
    """Images in [-1, 1] whose 8-bit values are known: each pixel is k + f steps of 1/127.5 above
    -1, f in [0.1, 0.4] or [0.6, 0.9], so it rounds to k or k + 1 (never a tie), and truncates to k."""
    rng = np.random.default_rng(0)
    k = rng.integers(0, 255, size=(n, 3, 16, 16))
    f = rng.uniform(0.1, 0.4, size=k.shape) + 0.5 * rng.integers(0, 2, size=k.shape)
    images = torch.from_numpy((k + f) / 127.5 - 1).float()
    return np.where(f > 0.5, k + 1, k), images


@pytest.fixture(scope="module")
def state():
    return stand_in_inception_state()


def pytorch_fid_features(state, pixels: np.ndarray, monkeypatch) -> torch.Tensor:
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    reference = pytorch_fid_inception.InceptionV3([3]).eval()
    with torch.no_grad():
        return reference(torch.from_numpy(pixels / 255.0).float())[0].flatten(1)


def test_to_uint8_rounds_as_a_png_writer():
    expected, images = pixels_and_images()
    assert np.array_equal(to_uint8(images).numpy(), expected)
    assert to_uint8(torch.tensor([-2.0, -1.0, 1.0, 3.0])).tolist() == [0, 0, 255, 255]  # clamped


def test_generated_images_reach_inception_as_pytorch_fid_sees_their_png_files(state, monkeypatch):
    expected, images = pixels_and_images()
    evaluator = Evaluator(None, NoData(DataInfo("x", (3, 16, 16))), ["fid"], 3, InceptionExtractor(state, "stand-in"),
                          torch.device("cpu"), progress=False)
    ours = evaluator.fake_features(FixedImages(images), seed=0).values
    truncated = np.floor((images.numpy().astype(np.float64) + 1) * 127.5)
    reference, wrong = pytorch_fid_features(state, np.concatenate([expected, truncated]), monkeypatch).split(3)
    tolerance = 1e-4
    torch.testing.assert_close(ours, reference, rtol=0, atol=tolerance)
    # The test can tell: pixels one 8-bit step off (truncated) move the features 30x the tolerance.
    assert (wrong - reference).abs().max() > 30 * tolerance
    assert ours.std(0).mean() > 1e-3  # and the three images have features of their own


def test_grey_images_are_repeated_to_rgb(state, monkeypatch):
    # Real images arrive as uint8 (no rounding on their way); grey ones are repeated to 3 channels.
    expected, _ = pixels_and_images(2)
    with torch.no_grad():
        ours, _ = InceptionExtractor(state, "stand-in")(torch.from_numpy(expected[:, :1].astype(np.uint8)))
    rgb = np.repeat(expected[:, :1], 3, axis=1)
    torch.testing.assert_close(ours, pytorch_fid_features(state, rgb, monkeypatch), rtol=0, atol=1e-4)
