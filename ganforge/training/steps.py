"""One step of each player: the D and G updates (each calling the regularizers' hooks at fixed
places), how this process runs them (precision, compiled or DDP networks, noise streams), and
the moving average of G."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.config import Config
from ganforge.distributed import Dist, all_reduce_grads, stream_seed, wrap
from ganforge.generation import run_standing_stats
from ganforge.logrecord import D_LOSS, G_LOSS, regularizer_key
from ganforge.losses import Loss
from ganforge.models import conditioning_classes
from ganforge.regularizers import Regularizer
from ganforge.training.state import TrainState

# --------------------------------------------------------------------------------------------
# How this process runs a step
# --------------------------------------------------------------------------------------------


Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


def autocast_for(device: torch.device, precision: str) -> Autocast:
    """A context factory for the configured precision (no context at all for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


@dataclass
class Runtime:
    """How this process runs the step (never saved): the networks as trained (compiled and/or
    wrapped in DDP), numerics, the noise streams of its micro-batches, and the shape of a step
    (G's micro-batch, where the G step's noise comes from, separate lazy phases)."""

    G_train: nn.Module  # G as updated: compiled and/or DDP
    D_train: nn.Module
    G_fast: nn.Module  # the other player's forward: compiled if asked, never DDP
    D_fast: nn.Module
    autocast: Autocast
    ctx: Dist
    accumulate: int
    seed: int
    generators: list[torch.Generator]
    g_micro_batch: int = 0  # fakes per G micro-batch on this process (0: as many as the real micro-batch)
    g_noise: str = "fresh"  # train.g_noise: fresh, or d_step (the last D step's noise again)
    d_steps: int = 1
    lazy_separate: bool = False  # train.lazy: separate

    def noise(self, micro: int, step: int, phase: int, rollbacks: int = 0) -> torch.Generator:
        """The noise stream of one micro-batch of one phase of one step. It depends only on
        (seed, step, phase, shard) and the number of rollbacks so far, so the same global batch
        split into the same number of shards (processes x accumulate) sees the same noise however
        the shards are spread, a resumed run needs no saved noise state, and a rolled-back run
        does not replay the noise that blew up. The global torch generator is seeded from the
        same coordinates, for networks that draw noise inside their forward (StyleGAN2's
        per-pixel noise and style mixing)."""
        shard = self.ctx.rank * self.accumulate + micro
        coords = (self.seed, step, phase, shard) + ((rollbacks,) if rollbacks else ())
        torch.manual_seed(stream_seed(*coords, -1))
        return self.generators[micro].manual_seed(stream_seed(*coords))

    def no_sync(self, module: nn.Module, micro: int) -> contextlib.AbstractContextManager[Any]:
        """Skip DDP's gradient all-reduce for all but the last micro-batch."""
        if micro < self.accumulate - 1 and isinstance(module, nn.parallel.DistributedDataParallel):
            return module.no_sync()
        return contextlib.nullcontext()


def make_runtime(cfg: Config, state: TrainState, ctx: Dist, device: torch.device) -> Runtime:
    """Compile and/or wrap the networks for this process, and make its noise streams."""
    G_fast, D_fast = state.G, state.D
    mode = cfg.train.compile_mode
    if mode is not None:
        # "reduce-overhead" captures CUDA graphs: for small models whose step time is kernel launches.
        G_fast, D_fast = torch.compile(state.G, mode=mode), torch.compile(state.D, mode=mode)
    t = cfg.train
    return Runtime(
        G_train=wrap(G_fast, ctx, device), D_train=wrap(D_fast, ctx, device), G_fast=G_fast, D_fast=D_fast,
        autocast=autocast_for(device, t.precision), ctx=ctx, accumulate=t.accumulate,
        seed=t.seed, generators=[torch.Generator(device) for _ in range(t.accumulate)],
        g_micro_batch=t.generator_batch // (ctx.world_size * t.accumulate), g_noise=t.g_noise,
        d_steps=t.d_steps_per_g_step, lazy_separate=t.lazy == "separate",
    )


# Noise-stream phases besides D's (0 .. d_steps - 1): G's update, and the separate lazy phases.
G_PHASE, G_LAZY_PHASE = -1, -2


def d_lazy_phase(phase: int) -> int:
    """The noise-stream phase of the separate lazy phase after D update `phase` of a step."""
    return -3 - phase


# --------------------------------------------------------------------------------------------
# The updates of D and G
# --------------------------------------------------------------------------------------------


Regularizers = list[tuple[str, Regularizer]]


def _split(x: Tensor | None, parts: int) -> list[Tensor | None]:
    return list(x.chunk(parts)) if x is not None else [None] * parts


def fake_labels(G: nn.Module, n: int, device: torch.device, gen: torch.Generator) -> Tensor | None:
    """Classes asked of a conditional generator: uniform, from the step's noise stream."""
    classes = conditioning_classes(G)
    return torch.randint(classes, (n,), device=device, generator=gen) if classes else None


def draw_noise(G: nn.Module, n: int, device: torch.device, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """Latent codes and asked classes of `n` fakes, drawn in this order from `gen` (both steps
    draw alike, so `train.g_noise: d_step` gets the D step's noise back)."""
    z = torch.randn(n, G.latent_dim, device=device, generator=gen)
    return z, fake_labels(G, n, device, gen)


def augmented(regularizers: Regularizers, x: Tensor, gen: torch.Generator, step: int) -> Tensor:
    """D's input after every augmenting regularizer (DiffAugment, ADA, instance noise)."""
    for _, reg in regularizers:
        x = reg.augment(x, gen, step)
    return x


def split_lazy(regularizers: Regularizers, separate: bool) -> tuple[Regularizers, Regularizers]:
    """(those whose terms join the regular update, those with a phase of their own): with
    `train.lazy: separate`, a regularizer whose `every` is above 1 gets its own phase."""
    if not separate:
        return regularizers, []
    return [(n, r) for n, r in regularizers if r.every == 1], [(n, r) for n, r in regularizers if r.every > 1]


class AugmentingD:
    """D as the loop uses it, for the regularizers' own passes: the inputs are images before
    augmentation and the augmentation runs inside the call, as StyleGAN2-ADA's `run_D`, so an
    input-gradient penalty (R1) includes the augmentation's Jacobian. Wraps the plain module: a
    double backward through torch.compile is not supported."""

    def __init__(self, D: nn.Module, regularizers: Regularizers, gen: torch.Generator,
                 step: int) -> None:
        self.D, self.regularizers, self.gen, self.step = D, regularizers, gen, step

    def __call__(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.D(augmented(self.regularizers, x, self.gen, self.step), labels)

    def classify(self, x: Tensor) -> Tensor:
        """The auxiliary classifier's logits (AC-GAN) on the augmented input."""
        return self.D.classify(augmented(self.regularizers, x, self.gen, self.step))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.D, name)


def _collect(stats: dict[str, Tensor], key: str, term: Any, parts: int) -> Tensor:
    """A term's figure into the step's stats (averaged over `parts` micro-batches); its loss."""
    stats[key] = stats.get(key, 0) + term.value.detach() / parts
    return term.loss


def _d_terms(state: TrainState, regularizers: Regularizers, terms_of: Regularizers, update: int, D: AugmentingD,
             real: Tensor, fake: Tensor, labels: Tensor | None, fake_labels: Tensor | None,
             real_logits: Tensor | None, fake_logits: Tensor | None, gen: torch.Generator,
             stats: dict[str, Tensor], parts: int) -> Tensor | None:
    """The sum of the D terms of `terms_of` at this update (None: none), their figures into
    `stats`; D's outputs on reals from a penalty's own pass go to every regularizer's `observe`."""
    total = None
    for name, reg in terms_of:
        # Regularizers differentiate through D in float32 (fp32 master weights, as the references).
        with torch.autocast(real.device.type, enabled=False):
            term = reg.d_term(update, D, real.float(), fake.float(), labels, fake_labels, real_logits, fake_logits,
                              gen)
        if term is None:
            continue
        loss = _collect(stats, regularizer_key(name), term, parts)
        total = loss if total is None else total + loss
        if term.real_logits is not None:
            for _, other in regularizers:
                other.observe(term.real_logits, state.step, main=False)
    return total


def discriminator_step(
    state: TrainState,
    rt: Runtime,
    loss: Loss,
    regularizers: Regularizers,
    real: Tensor,
    labels: Tensor | None,
    d_update: int,
    phase: int,
) -> dict[str, Tensor]:
    """One discriminator update on this rank's share of a real batch and as many fakes (in
    `accumulate` micro-batches), then, with `train.lazy: separate` and when due, the lazy
    regularizers' own update on the same images; returns the detached losses, averaged."""
    A = rt.accumulate
    stats: dict[str, Tensor] = {}
    regular, lazy = split_lazy(regularizers, rt.lazy_separate)
    shards = []  # (real, labels, fake, fake labels) of each micro-batch, for the lazy phase
    state.opt_d.zero_grad(set_to_none=True)
    for micro, (x, y) in enumerate(zip(real.chunk(A), _split(labels, A))):
        gen = rt.noise(micro, state.step, phase, state.rollbacks)
        z, y_fake = draw_noise(state.G, x.shape[0], x.device, gen)
        with torch.no_grad(), rt.autocast():
            fake = rt.G_fast(z, y_fake)
        shards.append((x, y, fake, y_fake))
        x_in = augmented(regularizers, x, gen, state.step)
        fake_in = augmented(regularizers, fake, gen, state.step)
        with rt.no_sync(rt.D_train, micro):
            with rt.autocast():
                real_logits, fake_logits = rt.D_train(x_in, y), rt.D_train(fake_in, y_fake)
                d_loss = loss.d_loss(real_logits, fake_logits)
            D_reg = AugmentingD(state.D, regularizers, gen, state.step)
            terms = _d_terms(state, regularizers, regular, d_update, D_reg, x, fake, y, y_fake,
                             real_logits.float(), fake_logits.float(), gen, stats, A)
            total = d_loss if terms is None else d_loss + terms
            state.scaler_d.scale(total / A).backward()
        stats[D_LOSS] = stats.get(D_LOSS, 0) + d_loss.detach() / A
        for _, reg in regularizers:
            reg.observe(real_logits, state.step)
    state.scaler_d.step(state.opt_d)
    state.scaler_d.update()
    for _, reg in regularizers:
        reg.after_d_step(state.D)
    if any(d_update % reg.every == 0 and reg.has_d_terms for _, reg in lazy):
        # StyleGAN2-ADA's Dreg phase: the lazy penalties alone, on the same reals, with D as just
        # updated, and an optimizer step of their own.
        state.opt_d.zero_grad(set_to_none=True)
        for micro, (x, y, fake, y_fake) in enumerate(shards):
            gen = rt.noise(micro, state.step, d_lazy_phase(phase), state.rollbacks)
            D_reg = AugmentingD(state.D, regularizers, gen, state.step)
            terms = _d_terms(state, regularizers, lazy, d_update, D_reg, x, fake, y, y_fake, None, None, gen, stats, A)
            if terms is not None:
                state.scaler_d.scale(terms / A).backward()
        all_reduce_grads(state.D, rt.ctx)  # the plain D ran: DDP did not average these gradients
        state.scaler_d.step(state.opt_d)
        state.scaler_d.update()
    return stats


def _g_terms(regularizers: Regularizers, update: int, G: nn.Module, D: AugmentingD, z: Tensor,
             labels: Tensor | None, fake: Tensor | None, gen: torch.Generator, stats: dict[str, Tensor],
             parts: int) -> Tensor | None:
    """The sum of the G terms of `regularizers` at this update (None: none), their figures into `stats`."""
    total = None
    for name, reg in regularizers:
        with torch.autocast(z.device.type, enabled=False):
            term = reg.g_term(update, G, D, z, labels, None if fake is None else fake.float(), gen)
        if term is not None:
            loss = _collect(stats, regularizer_key(name, generator_side=reg.has_d_terms), term, parts)
            total = loss if total is None else total + loss
    return total


def generator_step(
    state: TrainState,
    rt: Runtime,
    loss: Loss,
    regularizers: Regularizers,
    labels: Tensor | None,
    real: Tensor,
    phase: int,
    epoch: int = 0,
) -> dict[str, Tensor]:
    """One generator update against the current discriminator (`epoch`: the data stream's, for
    schedules counted in epochs), on `rt.g_micro_batch` fakes per micro-batch, then, with
    `train.lazy: separate` and when due, the lazy regularizers' own update on fresh noise;
    returns the detached losses."""
    A = rt.accumulate
    stats: dict[str, Tensor] = {}
    regular, lazy = split_lazy(regularizers, rt.lazy_separate)
    # D's weights get no gradients here: saves a third of its backward. Afterwards only the
    # parameters D's optimizer trains get them back (FreezeD's frozen layers stay frozen).
    state.D.requires_grad_(False)
    state.opt_g.zero_grad(set_to_none=True)
    for micro, (x, y) in enumerate(zip(real.chunk(A), _split(labels, A))):
        n = rt.g_micro_batch or x.shape[0]
        if rt.g_noise == "d_step":  # the last D step's micro-batch noise, drawn as it drew it
            z, y_fake = draw_noise(state.G, n, x.device, rt.noise(micro, state.step, rt.d_steps - 1, state.rollbacks))
        gen = rt.noise(micro, state.step, phase, state.rollbacks)
        if rt.g_noise != "d_step":
            z, y_fake = draw_noise(state.G, n, x.device, gen)
        with rt.no_sync(rt.G_train, micro):
            with rt.autocast():
                fake = rt.G_train(z, y_fake)
                fake_logits = rt.D_fast(augmented(regularizers, fake, gen, state.step), y_fake)
                real_logits = rt.D_fast(augmented(regularizers, x, gen, state.step), y) if loss.g_needs_real \
                    else None
                for _, reg in regularizers:
                    fake_logits = reg.g_logits(fake_logits, state.step, epoch)
                g_loss = loss.g_loss(fake_logits, real_logits)
            D_reg = AugmentingD(state.D, regularizers, gen, state.step)
            terms = _g_terms(regular, state.step, state.G, D_reg, z, y_fake, fake, gen, stats, A)
            total = g_loss if terms is None else g_loss + terms
            state.scaler_g.scale(total / A).backward()
        stats[G_LOSS] = stats.get(G_LOSS, 0) + g_loss.detach() / A
    state.scaler_g.step(state.opt_g)
    state.scaler_g.update()
    if any(state.step % reg.every == 0 and reg.has_g_terms for _, reg in lazy):
        # StyleGAN2-ADA's Greg phase: the lazy penalties alone, on noise of their own, with an
        # optimizer step of their own.
        state.opt_g.zero_grad(set_to_none=True)
        for micro, x in enumerate(real.chunk(A)):
            gen = rt.noise(micro, state.step, G_LAZY_PHASE, state.rollbacks)
            z, y_fake = draw_noise(state.G, rt.g_micro_batch or x.shape[0], x.device, gen)
            D_reg = AugmentingD(state.D, regularizers, gen, state.step)
            terms = _g_terms(lazy, state.step, state.G, D_reg, z, y_fake, None, gen, stats, A)
            if terms is not None:
                state.scaler_g.scale(terms / A).backward()
        all_reduce_grads(state.G, rt.ctx)
        state.scaler_g.step(state.opt_g)
        state.scaler_g.update()
    for group in state.opt_d.param_groups:
        for p in group["params"]:
            p.requires_grad_(True)
    return stats


# --------------------------------------------------------------------------------------------
# The moving average of G (G_ema)
# --------------------------------------------------------------------------------------------


class EMA:
    """G_ema <- decay * G_ema + (1 - decay) * G after each step; buffers are copied. Before G_ema
    is read, `standing(G_ema)` may recompute its BatchNorm statistics from its own outputs, since
    the copied ones belong to G's weights."""

    def __init__(self, ema: nn.Module, model: nn.Module, decay: float, start: int, rampup: float | None = None,
                 standing: Callable[[nn.Module], object] | None = None) -> None:
        self.decay, self.start, self.rampup = decay, start, rampup
        self.ema, self.standing = ema, standing
        self.ema_params = list(ema.parameters())
        self.params = list(model.parameters())
        self.ema_buffers = list(ema.buffers())
        self.buffers = list(model.buffers())
        self.standing_done = False  # G_ema's statistics are its own (since the last update)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Average after `step` (the number of completed steps); before `start`, copy."""
        if self.decay == 0:
            return  # no averaging: `sync` copies G only when G_ema is read
        # As StyleGAN2-ADA: the ramp-up counts the images seen before this step, so the first
        # averaged step copies G.
        weight = 1.0 if step <= self.start else 1.0 - self.decay_at(step - self.start - 1)
        torch._foreach_lerp_(self.ema_params, self.params, weight)
        for e, b in zip(self.ema_buffers, self.buffers):
            e.copy_(b)
        self.standing_done = False

    @classmethod
    def for_run(cls, state: TrainState, cfg: Config) -> EMA:
        """The EMA as `train.ema` configures it."""
        e = cfg.train.ema
        return cls(state.G_ema, state.G, e.decay, e.start, e.rampup, functools.partial(run_standing_stats, cfg=cfg))

    def decay_at(self, steps: int) -> float:
        """The decay after `steps` averaging steps: with ramp-up, the half-life is at most
        rampup x steps (StyleGAN), so early weights are forgotten quickly."""
        if self.rampup is None:
            return self.decay
        half_life = math.log(0.5) / math.log(self.decay)
        return 0.5 ** (1.0 / max(min(half_life, steps * self.rampup), 1e-8))  # beta = 0.5 ** (batch / ema_nimg)

    @torch.no_grad()
    def sync(self) -> None:
        """Make G_ema ready to be read (samples, evaluation, checkpoints): with averaging off, equal
        to G; with averaging, its standing BatchNorm statistics, computed once per step. The next
        update copies G's statistics back, so training is the same with or without them."""
        if self.decay == 0:
            for e, p in zip(self.ema_params + self.ema_buffers, self.params + self.buffers):
                e.copy_(p)
        elif self.standing is not None and not self.standing_done:
            self.standing(self.ema)
            self.standing_done = True
