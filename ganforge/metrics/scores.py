"""The published formulas, on feature matrices. Pure functions, float64 where it matters.

- FID (Heusel et al. 2017): ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), statistics as
  pytorch-fid computes them (mean, np.cov with ddof=1).
- KID (Binkowski et al. 2018): unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over
  random subsets (100 of 1,000 by default, as torch-fidelity).
- Inception Score (Salimans et al. 2016): exp(E KL(p(y|x) || p(y))) over 10 splits.
- Improved precision and recall (Kynkaanniemi et al. 2019), k = 3.
- Density and coverage (Naeem et al. 2020), k = 5.
- Intra-class FID (as PyTorch-StudioGAN): the mean over classes of the FID between the
  generated and the real samples of each class.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def mean_cov(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples, ddof=1) in float64."""
    x = features.double().cpu().numpy()
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between two Gaussians, float64.

    tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the
    symmetric matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2. Unlike a
    general matrix square root of the non-symmetric S1 S2 this cannot turn complex, and tiny
    negative eigenvalues from rounding are clipped to zero.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different sizes: {mu1.shape} vs {mu2.shape}")
    w1, v1 = np.linalg.eigh(sigma1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def frechet_distance_of(x: Tensor, y: Tensor) -> float:
    """FID between two feature sets (rows are samples), float64.

    With no more samples than dimensions (a quick evaluation, or one class of intra-class FID)
    the covariances have low rank and tr((S1 S2)^(1/2)) is the sum of the singular values of
    A B^T / sqrt((n - 1)(m - 1)), A and B the centred features: the non-zero spectrum of S1 S2 is
    that of (A B^T)(B A^T) / ((n - 1)(m - 1)). This is an n x m problem instead of a d x d one.
    """
    n, m, d = len(x), len(y), x.shape[1]
    if n > d or m > d:
        return frechet_distance(*mean_cov(x), *mean_cov(y))
    a, b = x.double().cpu().numpy(), y.double().cpu().numpy()
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    a, b = a - mu1, b - mu2
    trace_sqrt = float(np.linalg.svd(a @ b.T / math.sqrt((n - 1) * (m - 1)), compute_uv=False).sum())
    diff = mu1 - mu2
    return float(diff @ diff + (a * a).sum() / (n - 1) + (b * b).sum() / (m - 1) - 2 * trace_sqrt)


def intra_class_fid(fake: Tensor, fake_labels: Tensor, real: Tensor, real_labels: Tensor
                    ) -> tuple[float, dict[int, float]]:
    """Mean of the per-class FIDs, and the FID of each class (every class seen on either side)."""
    classes = sorted(set(fake_labels.tolist()) | set(real_labels.tolist()))
    per_class = {}
    for k in classes:
        f, r = fake[fake_labels == k], real[real_labels == k]
        if len(f) < 2 or len(r) < 2:
            raise ValueError(f"class {k} has {len(f)} generated and {len(r)} real samples, and needs at least 2 of "
                             "each; raise the sample counts (--num, --real-num, eval.num_samples)")
        per_class[int(k)] = frechet_distance_of(f, r)
    return float(np.mean(list(per_class.values()))), per_class


def kernel_inception_distance(fake: Tensor, real: Tensor, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD^2 over random subsets of `subset_size`
    of each side (drawn without replacement, fake then real, from RandomState(seed), as
    torch-fidelity draws them)."""
    x, y = fake.double().cpu().numpy(), real.double().cpu().numpy()
    m = subset_size
    if m < 2 or m > len(x) or m > len(y):
        raise ValueError(f"KID subsets of {m} need at least {max(m, 2)} samples on each side, "
                         f"got {len(x)} generated and {len(y)} real")
    rng = np.random.RandomState(seed)
    d = x.shape[1]
    values = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        k_aa = (a @ a.T / d + 1) ** 3
        k_bb = (b @ b.T / d + 1) ** 3
        k_ab = (a @ b.T / d + 1) ** 3
        mmd = ((k_aa.sum() - np.trace(k_aa)) + (k_bb.sum() - np.trace(k_bb))) / (m * (m - 1)) - 2 * k_ab.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def inception_score(logits: Tensor, splits: int = 10, shuffle_seed: int | None = None) -> tuple[float, float]:
    """Inception Score: mean and standard deviation over `splits` equal parts (in the given
    order, or shuffled by RandomState(shuffle_seed).permutation first, as torch-fidelity does)."""
    logits = logits.double().cpu()
    n = len(logits)
    if shuffle_seed is not None:
        logits = logits[torch.from_numpy(np.random.RandomState(shuffle_seed).permutation(n))]
    if n < splits:
        raise ValueError(f"the Inception Score needs at least {splits} samples ({splits} splits), got {n}")
    scores = []
    for i in range(splits):
        part = logits[i * n // splits : (i + 1) * n // splits]
        log_p = torch.log_softmax(part, dim=1)
        p = log_p.exp()
        # log p(y) in log space, so that classes no sample predicts stay finite (0 * finite = 0).
        log_marginal = torch.logsumexp(log_p, dim=0, keepdim=True) - math.log(len(part))
        scores.append(math.exp(float((p * (log_p - log_marginal)).sum(dim=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radii(x: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    radii = []
    for part in x.split(chunk):
        d = torch.cdist(part, x)
        # The smallest distance is the point itself (0); index k is its k-th true neighbour.
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _inside_counts(points: Tensor, centres: Tensor, radii: Tensor, strict: bool, chunk: int = 1024) -> Tensor:
    """For each point, how many balls (centre, radius) contain it."""
    counts = []
    for part in points.split(chunk):
        d = torch.cdist(part, centres)
        inside = d < radii[None, :] if strict else d <= radii[None, :]
        counts.append(inside.sum(dim=1))
    return torch.cat(counts)


def precision_recall(fake: Tensor, real: Tensor, k: int = 3, strict: bool = False) -> tuple[float, float]:
    """Improved precision (fakes inside the real manifold) and recall (reals inside the fake one).
    A point on a ball's surface is inside (Kynkaanniemi et al.) unless `strict` (clovaai's prdc)."""
    fake, real = fake.float(), real.float()
    precision = (_inside_counts(fake, real, _kth_neighbour_radii(real, k), strict) > 0).double().mean()
    recall = (_inside_counts(real, fake, _kth_neighbour_radii(fake, k), strict) > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(fake: Tensor, real: Tensor, k: int = 5) -> tuple[float, float]:
    """Density (how many real neighbourhoods hold each fake, / k) and coverage (real
    neighbourhoods that hold at least one fake)."""
    fake, real = fake.float(), real.float()
    radii = _kth_neighbour_radii(real, k)
    density = _inside_counts(fake, real, radii, strict=True).double().mean() / k
    nearest_fake = torch.cat([torch.cdist(part, fake).min(dim=1).values for part in real.split(1024)])
    coverage = (nearest_fake < radii).double().mean()
    return float(density), float(coverage)
