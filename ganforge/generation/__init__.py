"""Drawing from a generator: noise, class labels, batched forward passes, truncation, noise mode."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.errors import GanforgeError
from ganforge.progress import Progress

if TYPE_CHECKING:
    from ganforge.config import Config


@torch.no_grad()
def generate(G: nn.Module, z: Tensor, labels: Tensor | None, batch_size: int = 256, progress: bool = False,
             noise_mode: str | None = None, **kwargs: Any) -> Tensor:
    """G(z) in batches (G should be in eval mode); keyword arguments go to G (truncation).
    noise_mode (random, const, none) sets the per-pixel noise of generators that have it (stylegan2)
    for this call; None keeps G's default (random: from torch's global generator, which the caller
    seeds) and generators without noise ignore it."""
    modes = getattr(G, "noise_modes", ())
    if noise_mode is not None and modes:
        if noise_mode not in modes:
            raise GanforgeError(f"--noise-mode {noise_mode}: use one of {', '.join(modes)}")
        kwargs["noise_mode"] = noise_mode
    parts = []
    with Progress(len(z), desc="generating", unit="images", enabled=progress, leave=False) as bar:
        for start in range(0, len(z), batch_size):
            lab = labels[start : start + batch_size] if labels is not None else None
            parts.append(G(z[start : start + batch_size], lab, **kwargs).float())
            bar.update(len(parts[-1]))
    return torch.cat(parts)


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators (the CPU's and `device`'s) for the block and restore them
    after: noise a generator draws inside its forward (stylegan2's random noise) then repeats
    with the seed, and the caller's random streams are left where they were."""
    devices = [device] if device.type != "cpu" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(seed)
        yield


def running_stats_layers(module: nn.Module) -> list[nn.Module]:
    """The layers that keep running statistics the way torch's BatchNorm does (track_running_stats,
    reset_running_stats, momentum None for the cumulative average): torch's BatchNorm, and
    layers with buffers of their own names (biggan's stored_mean / stored_var)."""
    return [m for m in module.modules()
            if getattr(m, "track_running_stats", False) and hasattr(m, "reset_running_stats")
            and hasattr(m, "momentum")]


@torch.no_grad()
def standing_stats(G: nn.Module, batches: int, batch_size: int, seed: int) -> bool:
    """Recompute G's BatchNorm statistics from its own outputs (BigGAN's "standing statistics"):
    the cumulative mean and variance over `batches` forward passes of `batch_size` draws of noise
    (and uniform class labels) from `seed`, with only the BatchNorm layers in train mode. For an
    average of G's weights (G_ema), whose copied statistics belong to G's weights instead. False,
    and G untouched, when G has no BatchNorm. The global RNGs are left where they were."""
    norms = running_stats_layers(G)
    if not norms or batches <= 0:
        return False
    device = next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    classes = int(getattr(G, "num_classes", 0) or 0)
    saved = [(m, m.training, m.momentum) for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes
            m.train()
            if isinstance(m, nn.SyncBatchNorm):  # this process alone: no collective call
                m.forward = types.MethodType(nn.modules.batchnorm._BatchNorm.forward, m)
        with seeded_global_rng(seed, device):
            for _ in range(batches):
                z = torch.randn(batch_size, G.latent_dim, generator=g).to(device)
                labels = torch.randint(classes, (batch_size,), generator=g).to(device) if classes else None
                G(z, labels)
    finally:
        for m, training, momentum in saved:
            m.train(training)
            m.momentum = momentum
            m.__dict__.pop("forward", None)
    return True


@contextlib.contextmanager
def batch_statistics(G: nn.Module) -> Iterator[None]:
    """G's BatchNorm layers normalise with each forward pass's own statistics (train mode) in the
    block, as WGAN-GP's and BigGAN-PyTorch's CIFAR code generate for their metrics; their running
    statistics are left as they were. BatchNorm layers are torch's and those that keep statistics
    the same way (biggan's stored_mean / stored_var, `running_stats_layers`); nothing else (spectral
    norm's power iteration) switches mode."""
    norms = running_stats_layers(G)
    saved = [(m, m.training, [b.clone() for b in m.buffers()]) for m in norms]
    try:
        for m in norms:
            m.train()
            if isinstance(m, nn.SyncBatchNorm):  # this process alone: no collective call
                m.forward = types.MethodType(nn.modules.batchnorm._BatchNorm.forward, m)
        yield
    finally:
        with torch.no_grad():
            for m, training, buffers in saved:
                m.train(training)
                m.__dict__.pop("forward", None)
                for b, old in zip(m.buffers(), buffers):
                    b.copy_(old)


def run_standing_stats(G: nn.Module, cfg: Config) -> bool:
    """`standing_stats` as the run configured by `cfg` computes them for G_ema (`train.ema`):
    batches of train.batch_size, noise from train.seed + 2**31 + 1 (the sample grid's is + 2**31)."""
    return standing_stats(G, cfg.train.ema.standing_stats, cfg.train.batch_size, cfg.train.seed + 2**31 + 1)


def sample_noise(num: int, latent_dim: int, seed: int, device: torch.device, threshold: float | None = None
                 ) -> torch.Tensor:
    """Gaussian noise drawn on the CPU from `seed`, so the same seed gives the same samples anywhere;
    with `threshold`, the truncated normal (see TruncatedDraws)."""
    return NoiseStream(num, latent_dim, seed, threshold).take(num).to(device)


# The truncated normal's least threshold: below it, each value kept costs over a thousand draws.
MIN_THRESHOLD = 1e-3


class TruncatedDraws:
    """The standard normal truncated to [-threshold, threshold], by BigGAN's truncation trick
    (Brock et al. 2019, 3.1): values beyond the threshold are resampled. Here each one is dropped
    and the next draw inside the threshold takes its place, so the values depend only on the
    stream `draw` (fixed-size calls) and not on how many are taken at a time."""

    def __init__(self, draw: Callable[[], Tensor], threshold: float) -> None:
        self.draw, self.threshold = draw, threshold
        self.kept = torch.empty(0)

    def take(self, n: int) -> Tensor:
        """The next `n` values (1D, float32, on the CPU)."""
        while len(self.kept) < n:
            values = self.draw().float()
            self.kept = torch.cat([self.kept, values[values.abs() <= self.threshold]])
        out, self.kept = self.kept[:n], self.kept[n:]
        return out


class NoiseStream:
    """`sample_noise(num, latent_dim, seed)` a few rows at a time, equal to it bit for bit, in
    memory for a batch whatever `num`. The CPU's normal sampler turns uniforms into normals in
    blocks of 16 values and redraws the last 16 of a call whose size is no multiple of 16: so the
    draw is cut into calls of whole blocks, and the last call (at least 16 values) ends as the
    one big call does. tests/test_nothing_lost.py checks the equality. With `threshold`, the
    truncated normal, drawn in calls of TRUNCATED_CHUNK values whatever the rows taken."""

    BLOCK = 16
    TRUNCATED_CHUNK = 1 << 14

    def __init__(self, num: int, latent_dim: int, seed: int, threshold: float | None = None) -> None:
        self.dim, self.left = latent_dim, num * latent_dim
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer = torch.empty(0)
        self.truncated = None if threshold is None else TruncatedDraws(
            lambda: torch.randn(self.TRUNCATED_CHUNK, generator=self.generator), threshold)

    def take(self, rows: int) -> Tensor:
        """The next `rows` rows of noise, on the CPU."""
        need = rows * self.dim
        if self.truncated is not None:
            return self.truncated.take(need).view(rows, self.dim)
        while len(self.buffer) < need:
            size = self.left  # a draw of fewer than 16 values is one call, as it is in one piece
            if size >= self.BLOCK:
                size = max(self.BLOCK, -(-(need - len(self.buffer)) // self.BLOCK) * self.BLOCK)
                if self.left - size < self.BLOCK:
                    size = self.left
            self.buffer = torch.cat([self.buffer, torch.randn(size, generator=self.generator)])
            self.left -= size
        rows_out, self.buffer = self.buffer[:need], self.buffer[need:]
        return rows_out.view(rows, self.dim)


# --------------------------------------------------------------------------------------------
# Per-seed latents (`sample --seeds`)
# --------------------------------------------------------------------------------------------

# The most seeds one `--seeds` may name.
MAX_SEEDS = 100_000


def parse_seeds(text: str) -> list[int]:
    """`0-35,100` -> [0, 1, ..., 35, 100]: numbers and inclusive ranges, as StyleGAN2-ADA's
    generate.py reads them; a seed named twice is drawn once. Seeds are numpy's, 0 to 2**32 - 1."""
    seeds: dict[int, None] = {}
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise GanforgeError(f"--seeds {text}: {part!r} is not a seed or a range; write seeds as 0-35,100")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise GanforgeError(f"--seeds {text}: the range {part} runs backwards; write it as {last}-{first}")
        if last >= 2**32:
            raise GanforgeError(f"--seeds {text}: seeds go from 0 to {2**32 - 1}")
        if last - first >= MAX_SEEDS:  # refused before a long range is expanded
            raise GanforgeError(f"--seeds {text}: more than {MAX_SEEDS:,} seeds; ask for fewer at a time")
        seeds.update(dict.fromkeys(range(first, last + 1)))
        if len(seeds) > MAX_SEEDS:
            raise GanforgeError(f"--seeds {text}: more than {MAX_SEEDS:,} seeds; ask for fewer at a time")
    return list(seeds)


def seed_latent(seed: int, latent_dim: int, threshold: float | None = None) -> Tensor:
    """The latent of one seed, as StyleGAN2-ADA's generate.py draws it:
    `np.random.RandomState(seed).randn(latent_dim)` (float32); with `threshold`, the truncated
    normal, drawn on from the same RandomState. The same seed gives the same latent whatever else is drawn."""
    state = np.random.RandomState(seed)
    if threshold is None:
        return torch.from_numpy(state.randn(latent_dim)).float()
    return TruncatedDraws(lambda: torch.from_numpy(state.randn(latent_dim)), threshold).take(latent_dim)


class GlobalRngStream:
    """`seeded_global_rng(seed, device)` over several blocks, each going on where the last one
    stopped: draws inside G (stylegan2's noise maps) come out as in one block, and the caller's
    random streams are left alone between blocks."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.seed, self.device, self.states = seed, device, None

    @contextlib.contextmanager
    def block(self) -> Iterator[None]:
        """One block: the global generators are this stream's inside it, the caller's after it."""
        with seeded_global_rng(self.seed, self.device):
            if self.states is not None:
                torch.set_rng_state(self.states[0])
                if self.device.type == "cuda":
                    torch.cuda.set_rng_state(self.states[1], self.device)
            yield
            cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
            self.states = (torch.get_rng_state(), cuda)


def class_labels(num: int, num_classes: int, class_index: int | None, device: torch.device, start: int = 0,
                 stop: int | None = None) -> torch.Tensor | None:
    """Labels for `num` samples (those from `start` to `stop`, by default all): all `class_index`,
    or cycling through the classes; None when the generator is unconditional."""
    if class_index is not None:
        if num_classes == 0:
            raise GanforgeError("--class: this generator is unconditional (it takes no class labels)")
        if not 0 <= class_index < num_classes:
            raise GanforgeError(f"--class {class_index}: this generator has classes 0 to {num_classes - 1}")
        return torch.full(((num if stop is None else stop) - start,), class_index, device=device, dtype=torch.long)
    return class_rows(num, num_classes, device, start, stop) if num_classes else None


def class_rows(num: int, num_classes: int, device: torch.device, start: int = 0, stop: int | None = None
               ) -> torch.Tensor:
    """Labels in class order, a run of `grid_columns(num, num_classes)` per class, so that grid
    shows one class per row (when `num` is not a multiple of the classes, the last rows fall
    short); those from `start` to `stop` (by default all)."""
    index = torch.arange(start, num if stop is None else stop, device=device)
    return (index // grid_columns(num, num_classes)).clamp(max=num_classes - 1)


def grid_columns(num: int, num_classes: int) -> int | None:
    """Columns of a sample grid: one row per class for conditional generators."""
    return -(-num // num_classes) if num_classes else None


@dataclass(frozen=True)
class Truncation:
    """The truncation trick for one generator: in w space (stylegan2: w pulled towards its
    average, `psi` 0 = the average, 1 = none), or in z for generators fed the standard normal
    (dcgan, resnet, biggan, mlp: z from the normal truncated at `psi`, BigGAN's threshold)."""

    psi: float | None = None
    in_w: bool = False

    @property
    def g_kwargs(self) -> dict[str, float]:
        """Keyword arguments for G's forward."""
        return {"truncation": self.psi} if self.in_w and self.psi is not None else {}

    @property
    def threshold(self) -> float | None:
        """The truncated normal's threshold for drawing z (None: the plain normal)."""
        return None if self.in_w else self.psi

    def describe(self) -> str | None:
        """What it does, in words (for JSON and model cards); None without truncation."""
        if self.psi is None:
            return None
        if self.in_w:
            return f"w = w_avg + {self.psi:g} (w - w_avg)"
        return f"z from the standard normal truncated to [-{self.psi:g}, {self.psi:g}] (values beyond redrawn)"


def truncation_for(G: nn.Module, psi: float | None) -> Truncation:
    """G's truncation at `psi`; a one-line error for a value it cannot take."""
    if psi is None:
        return Truncation()
    if getattr(G, "supports_truncation", False):
        if not 0.0 <= psi <= 1.0:
            raise GanforgeError(f"--truncation {psi}: use a value from 0 (the average w) to 1 (no truncation)")
        return Truncation(psi, in_w=True)
    if not MIN_THRESHOLD <= psi <= 1.0:
        raise GanforgeError(f"--truncation {psi}: the {type(G).__name__} draws z from the truncated normal, whose "
                            f"threshold must be in (0, 1] (at least {MIN_THRESHOLD:g}; smaller costs over a "
                            "thousand draws per value)")
    return Truncation(psi, in_w=False)


def check_truncation(G: nn.Module, truncation: float | None) -> dict[str, float]:
    """Keyword arguments for G's forward (w-space truncation); {} for generators truncated in z
    (draw z with `truncation_for(G, psi).threshold`); an error for an invalid value."""
    return truncation_for(G, truncation).g_kwargs
