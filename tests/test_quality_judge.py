"""scripts/quality_digits.py, the judge behind every quality figure in the README: its Frechet
distance is the published formula, and it tells real digits from noise and from a collapsed
generator (trained at 8 px here, the digits' own size, in a few seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import quality_digits as qd  # noqa: E402


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    # FD(N(m1, diag a), N(m2, diag b)) = |m1 - m2|^2 + sum (sqrt a - sqrt b)^2
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert qd.frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected)
    # Rotating both Gaussians the same way changes nothing.
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotated = qd.frechet_distance(q @ m1, q @ np.diag(a) @ q.T, q @ m2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected)


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    torch.manual_seed(0)
    return qd.load_judge(8, cache=tmp_path_factory.mktemp("judge"))


def test_the_judge_classifies_held_out_digits(judge):
    assert judge.accuracy > 0.9
    floor = qd.real_floor(8, judge)
    assert floor["classes"] == 10 and floor["confident"] > 0.8


def test_noise_and_a_collapsed_generator_score_far_from_the_floor(judge):
    floor = qd.real_floor(8, judge)
    n = len(judge.held_out)
    noise = qd.score_images(torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1, judge=judge)
    assert noise["fd"] > 10 * floor["fd"] and noise["is"] < floor["is"]
    one_digit = judge.held_out[judge.held_out_labels == 3][:1].expand(n, -1, -1, -1)
    collapsed = qd.score_images(one_digit, judge=judge)
    assert collapsed["classes"] == 1 and collapsed["is"] == pytest.approx(1.0, abs=1e-6)
    assert collapsed["fd"] > 10 * floor["fd"]
