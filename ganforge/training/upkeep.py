"""The maintenance block after each step: log, sample grid, evaluation and checkpoint, each when
due, and what happens when a loss or a weight turns non-finite (stop, or roll back)."""

from __future__ import annotations

import math
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganforge.checkpoint import Checkpoint
from ganforge.config import NETWORKS, Config
from ganforge.data import DataInfo
from ganforge.distributed import Dist, all_reduce_mean, any_rank
from ganforge.errors import TrainingAborted
from ganforge.generation import generate, grid_columns
from ganforge.imaging import grid, scatter
from ganforge.logrecord import eval_record, rollback_record, training_record
from ganforge.metrics.catalog import is_better
from ganforge.metrics.evaluate import Evaluator
from ganforge.models import conditioning_classes
from ganforge.progress import Progress
from ganforge.rng import capture_rng
from ganforge.run import RunDir, load_latest_good
from ganforge.training.state import TrainState, restore_checkpoint, set_scheduled_lrs
from ganforge.training.steps import EMA


class Maintenance:
    """The block after each step: log, sample grid, evaluation, checkpoint, each when due, and
    what happens when a loss or weight turns non-finite."""

    def __init__(self, cfg: Config, cfg_dict: dict[str, Any], run: RunDir, state: TrainState, batches: Any,
                 ema: EMA, info: DataInfo, ctx: Dist, device: torch.device, evaluator: Evaluator | None,
                 reference: Tensor | None, progress: bool) -> None:
        self.cfg, self.cfg_dict, self.run, self.state, self.batches = cfg, cfg_dict, run, state, batches
        self.ema, self.info, self.ctx, self.device, self.evaluator = ema, info, ctx, device, evaluator
        self.reference = reference
        self.meter = Meter()
        self.last_checkpoint: Path | None = None
        self.budget_spent = False
        self.last_log = (time.perf_counter(), state.step)
        # A bar on a terminal; one plain line per log step otherwise (CI, nohup, SLURM logs).
        self.bar = Progress(total=cfg.train.steps, initial=state.step, desc=run.path.name,
                            enabled=progress and ctx.is_main)

    def _due(self, every: int) -> bool:
        return self.state.step % every == 0 or self.state.step == self.cfg.train.steps

    def stop_requested(self, stop: threading.Event) -> bool:
        """Alone: at every step. Several ranks agree at log steps (one small all-reduce)."""
        if not self.ctx.enabled:
            return stop.is_set()
        return any_rank(stop.is_set(), self.ctx, self.device) if self._due(self.cfg.log.every) else False

    def after_step(self, last: bool) -> None:
        """Everything due at this step (`last`: the run ends here)."""
        self.bar.update()
        if self._due(self.cfg.log.every) or last:
            self.log()
        if (self._due(self.cfg.samples.every) or last) and self.run.is_writer:
            self.samples()
        improved = False
        if self.evaluator is not None and self._due(self.cfg.eval.every):
            self.ema.sync()
            improved = evaluate_and_log(self.evaluator, self.state, self.info, self.run, self.cfg)
        if self._due(self.cfg.checkpoint.every) or last or improved:
            self.checkpoint(regular=self._due(self.cfg.checkpoint.every) or last, best=improved)

    def log(self) -> None:
        """Average losses since the last record (one host sync), speed, learning rates."""
        state, cfg, step = self.state, self.cfg, self.state.step
        images = cfg.train.batch_size * cfg.train.d_steps_per_g_step
        now = time.perf_counter()
        record = training_record(step, self.meter.pop(self.ctx), lr_g=state.opt_g.param_groups[0]["lr"],
                                 lr_d=state.opt_d.param_groups[0]["lr"],
                                 img_per_s=(step - self.last_log[1]) * images / max(now - self.last_log[0], 1e-9),
                                 images_seen=step * images, skipped_images=self.batches.skipped)
        self.last_log = (now, step)
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise NonFinite(step, " and ".join(bad))
        self.run.append_log(record)
        self.bar.show(record)

    def samples(self) -> None:
        """The fixed-noise grid (2D data: a scatter plot over the real data)."""
        self.ema.sync()
        # Constant per-pixel noise (stylegan2), as the reference's training grids: the grid changes
        # only as the weights do, and drawing it leaves the global RNG alone.
        fake = generate(self.state.G_ema, self.state.fixed_z, self.state.fixed_labels, noise_mode="const")
        columns = grid_columns(len(fake), conditioning_classes(self.state.G))
        image = grid(fake, nrow=columns) if self.info.is_image else scatter(fake, self.reference)
        self.run.save_sample(image, self.state.step)

    def checkpoint(self, regular: bool, best: bool) -> None:
        """The complete state, after checking that every weight is finite."""
        self.ema.sync()
        state = self.state
        bad_nets = nonfinite_networks(state)
        if bad_nets:
            raise NonFinite(state.step, " and ".join(f"{n} weights" for n in bad_nets))
        if not self.run.is_writer:
            return
        ckpt = Checkpoint(step=state.step, config=self.cfg_dict, data_info=self.info.to_dict(),
                          state=state.state_dict(), data=self.batches.state_dict(), rng=capture_rng())
        if regular:
            self.last_checkpoint = self.run.save_checkpoint(ckpt, self.cfg.checkpoint.keep)
        if best:
            self.run.save_best(ckpt, state.best["figure"], state.best["value"])

    def recover(self, event: NonFinite) -> None:
        """Stop with what to do, or (train.on_nonfinite: rollback) continue from the last good state."""
        state, cfg = self.state, self.cfg
        if cfg.train.on_nonfinite != "rollback" or state.rollbacks >= cfg.train.max_rollbacks:
            limit = f" after {state.rollbacks} rollbacks" if state.rollbacks else ""
            raise TrainingAborted(f"{event}{limit}; nothing was saved over the last good checkpoint "
                                  f"({self.run.latest_checkpoint() or 'none yet'}); {NONFINITE_ADVICE}") from None
        roll_back(state, self.batches, self.run, cfg, event)
        self.meter = Meter()
        self.last_log = (time.perf_counter(), state.step)
        self.bar.reset(total=cfg.train.steps, initial=state.step)

    def close(self) -> None:
        self.bar.close()


def evaluate_and_log(evaluator: Evaluator, state: TrainState, info: DataInfo, run: RunDir, cfg: Config) -> bool:
    """Evaluate G_ema, log the figures with what they were computed with; True if `eval.best`
    improved (state.best is then updated)."""
    result = evaluator(state.G_ema, seed=cfg.train.seed)
    run.append_log(eval_record(state.step, result.figures, result.num_samples, result.extractor, result.reference,
                               result.seconds))
    figure = cfg.eval.best
    if figure is None or figure not in result.figures:
        return False
    value = float(result.figures[figure])
    old = state.best["value"] if state.best and state.best.get("figure") == figure else None
    if not math.isfinite(value) or not is_better(figure, value, old):
        return False
    state.best = {"figure": figure, "value": value, "step": state.step}
    return True


class Meter:
    """Collects detached loss tensors without host syncs; `pop` averages them in one sync."""

    def __init__(self) -> None:
        self.values: dict[str, list[Tensor]] = {}

    def add(self, stats: dict[str, Tensor]) -> None:
        for key, value in stats.items():
            self.values.setdefault(key, []).append(value)

    def pop(self, ctx: Dist | None = None) -> dict[str, float]:
        """Means since the last pop (averaged over ranks too), in one host sync."""
        keys = list(self.values)
        if not keys:
            return {}
        means = torch.stack([torch.stack(self.values[k]).float().mean() for k in keys])
        if ctx is not None:
            means = all_reduce_mean(means, ctx)
        self.values = {}
        return dict(zip(keys, means.tolist()))


# --------------------------------------------------------------------------------------------
# A loss or a weight turned non-finite
# --------------------------------------------------------------------------------------------


class NonFinite(Exception):
    """A loss or a network became NaN or infinite (`what` names it)."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"step {step}: {what} became non-finite")
        self.step, self.what = step, what


NONFINITE_ADVICE = "a lower learning rate, a gradient penalty or R1, or precision fp32 usually helps"


def nonfinite_networks(state: TrainState) -> list[str]:
    """Names of the networks with a NaN or infinity in a parameter or buffer (one host sync)."""
    flags = []
    for name in NETWORKS:
        net = getattr(state, name)
        tensors = [t for t in [*net.parameters(), *net.buffers()] if t.is_floating_point()]
        flags.append(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
    finite = torch.stack(flags).tolist()
    return [name for name, ok in zip(NETWORKS, finite) if not ok]


def roll_back(state: TrainState, batches: Any, run: RunDir, cfg: Config, event: NonFinite) -> None:
    """Reload the last good checkpoint, scale both learning rates down, move the noise on."""
    if run.latest_checkpoint() is None:
        raise TrainingAborted(f"{event} before the first checkpoint, so there is nothing to roll back to; "
                              f"{NONFINITE_ADVICE}") from None
    ckpt = load_latest_good(run.path)
    rollbacks = state.rollbacks + 1
    lr_scale = state.lr_scale * cfg.train.rollback_lr_factor
    restore_checkpoint(state, batches, run, ckpt)
    # The checkpoint's learning rates carry its own scale; bring them to the new one.
    for sched in (state.sched_g, state.sched_d):
        ratio = lr_scale / state.lr_scale
        sched.base_lrs = [base * ratio for base in sched.base_lrs]
    set_scheduled_lrs(state)
    state.rollbacks, state.lr_scale = rollbacks, lr_scale
    # The noise streams mix in the rollback count (Runtime.noise), so the blow-up is not replayed.
    run.append_log(rollback_record(state.step, from_step=event.step, reason=str(event), lr_scale=lr_scale,
                                   rollback=rollbacks))
    if run.is_writer:
        warnings.warn(f"{event}; rolled back to step {state.step} with learning rates x{lr_scale:g} "
                      f"(rollback {rollbacks} of {cfg.train.max_rollbacks})", stacklevel=2)
