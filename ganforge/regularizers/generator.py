"""Terms on the generator: orthogonal regularization, path length, top-k training."""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from torch import nn

from ganforge.params import Range
from ganforge.registry import REGULARIZERS
from ganforge.regularizers.base import Every, Regularizer, Weight


@REGULARIZERS.register("orthogonal")
class Orthogonal(Regularizer):
    """BigGAN's orthogonal regularization of G: (1/2) ||W W^T * (1 - I)||_F^2 over its weight
    matrices, whose gradient is BigGAN-PyTorch's `ortho`: 2 (W W^T * (1 - I)) W, times `weight`."""

    def __init__(self, weight: Weight = 1e-4, every: Every = 1) -> None:
        self.weight, self.every = weight, every

    def g_penalty(self, G, D, z, labels, fake, gen):
        total = None
        for name, p in G.named_parameters():
            # BigGAN leaves the shared class embedding out.
            if p.dim() < 2 or "embed" in name or "shared" in name or not p.requires_grad:
                continue
            w = p.flatten(1)
            gram = w @ w.T
            off_diagonal = gram * (1 - torch.eye(len(gram), device=w.device, dtype=w.dtype))
            # The 1/2 makes d/dW equal to the reference's 2 (W W^T * (1 - I)) W (without it, 4x).
            part = 0.5 * off_diagonal.pow(2).sum()
            total = part if total is None else total + part
        return total


# Its tiny networks: synthesis with styles, stylegan2's.
@REGULARIZERS.register("path_length", networks={"generator": {"kind": "stylegan2"},
                                                "discriminator": {"kind": "stylegan2"}})
class PathLength(Regularizer):
    """StyleGAN2's path-length regularization: |J^T y| stays near its running mean (stylegan2 only)."""

    def __init__(self, weight: Weight = 2.0, every: Every = 4, decay: Annotated[float, Range(ge=0, lt=1)] = 0.01,
                 batch_shrink: Annotated[int, Range(ge=1)] = 2) -> None:
        self.weight, self.every, self.decay, self.batch_shrink = weight, every, decay, batch_shrink
        self.mean = torch.zeros(())  # as StyleGAN2's pl_mean: starts at 0, moves by `decay` per update

    def setup(self, G: nn.Module, D: nn.Module) -> None:
        if not hasattr(G, "synthesis_with_styles"):
            raise ValueError("path_length works with the stylegan2 generator only")

    def g_penalty(self, G, D, z, labels, fake, gen):
        n = max(1, len(z) // self.batch_shrink)
        # G's own pass as in training (StyleGAN2-ADA's run_G): style mixing, random noise, and
        # the gradient taken with respect to the mixed per-layer styles.
        images, ws = G.synthesis_with_styles(z[:n], labels[:n] if labels is not None else None)
        noise = torch.randn(images.shape, device=images.device, dtype=images.dtype, generator=gen)
        noise = noise / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        lengths = grad.pow(2).sum(dim=2).mean(dim=1).sqrt()
        # As the reference, the penalty uses the updated mean before it is detached (its
        # gradient carries the `decay` share of this batch's mean length).
        mean = torch.lerp(self.mean.to(lengths.device), lengths.mean().float(), self.decay)
        self.mean = mean.detach()
        return (lengths - mean).pow(2).mean()

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mean = state.get("mean")
        self.mean = torch.zeros(()) if mean is None else mean


@REGULARIZERS.register("top_k")
class TopK(Regularizer):
    """Top-k training of G (Sinha et al. 2020): G learns only from the k fakes D rates highest.
    As StudioGAN: k starts at the batch and after each epoch of the data becomes
    max(k x `decay`, int(`keep` x batch)), and G's loss takes int(k) fakes; per `interval` steps
    instead of epochs if set. The epoch is the data's at the start of the step, as StudioGAN
    decays k after the step in which an epoch ended."""

    def __init__(self, keep: Annotated[float, Range(gt=0, le=1)] = 0.5,
                 decay: Annotated[float, Range(gt=0, le=1)] = 0.99,
                 interval: Annotated[int, Range(ge=1)] | None = None) -> None:
        self.keep, self.decay, self.interval, self.weight = keep, decay, interval, 1.0

    def k(self, batch: int, periods: int) -> int:
        """How many fakes G's loss takes after `periods` decays of k (StudioGAN's adjust_k)."""
        floor, k = int(batch * self.keep), float(batch)
        for _ in range(periods):
            if k <= floor:
                break  # k stays at its floor from here on
            k = max(k * self.decay, floor)
        return max(1, int(k))

    def g_logits(self, fake_logits, step, epoch=0):
        periods = epoch if self.interval is None else step // self.interval
        k = self.k(len(fake_logits), periods)
        return fake_logits.topk(k).values if k < len(fake_logits) else fake_logits
