"""Multi-process training with PyTorch's own engine: torchrun + DistributedDataParallel.

`torchrun --nproc_per_node=N -m ganforge train CONFIG` starts N copies of ganforge; each reads
its rank from the environment torchrun sets. `ganforge train --nproc N` starts torchrun itself
for the single-node case. Backend: nccl on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from ganforge.errors import ConfigError, PeerError

if TYPE_CHECKING:
    from ganforge.config.schema import TrainConfig


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank among world_size processes, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher) set the rendezvous variables."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


# How long the processes of a (re)started group may take to join it. Under torchrun they start
# together, so this bounds a lost peer or a stale rendezvous, not a slow start.
JOIN_TIMEOUT = datetime.timedelta(minutes=5)


def init(device: torch.device, timeout: datetime.timedelta = datetime.timedelta(minutes=30)
         ) -> tuple[Dist, torch.device]:
    """Join the process group torchrun set up (if any); each rank gets its own CUDA device.
    Joining waits at most JOIN_TIMEOUT; a collective or barrier then waits at most `timeout`
    for the other processes (PeerError either way)."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return Dist(), device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        store = _join(rank, world, min(timeout, JOIN_TIMEOUT))
        try:
            dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
        except (RuntimeError, dist.DistError) as e:
            raise PeerError(f"process {rank} of {world}: could not connect to the other processes "
                            f"({_first_line(e)})") from None
    return Dist(rank, world, local_rank), device


def _join(rank: int, world: int, bound: datetime.timedelta) -> dist.Store:
    """This attempt's rendezvous store, once all `world` processes have checked in (at most `bound`).

    torchrun's agent keeps one store across the restarts of a group (`--max-restarts`), and the
    keys that the last attempt's processes left there would be read as this attempt's: a
    restarted group then fails to connect or waits forever. Each attempt gets its own key prefix
    (TORCHELASTIC_RESTART_COUNT), as torch's own env:// rendezvous once did.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=bound))
        store = dist.PrefixStore(f"ganforge/attempt-{attempt}", store)
        store.add("joined", 1)
        deadline = time.monotonic() + bound.total_seconds()
        while (joined := store.add("joined", 0)) < world:
            if time.monotonic() > deadline:
                raise PeerError(f"process {rank} of {world}: only {joined} of {world} processes joined within "
                                f"{bound.total_seconds():g} s (rendezvous at {where}, restart {attempt}); "
                                "one of them did not start or died")
            time.sleep(0.05)
    except (RuntimeError, dist.DistError, ValueError) as e:
        raise PeerError(f"process {rank} of {world}: could not join the rendezvous at {where} ({_first_line(e)})"
                        ) from None
    return store


def peer_failure(error: BaseException) -> str | None:
    """What a collective's failure says about the other processes (a peer died, timed out or
    closed its connection), in a few words; None for an error that is not about them."""
    if isinstance(error, (dist.DistError, PeerError)):
        return _first_line(error)
    if isinstance(error, RuntimeError) and _PEER_LOST.search(str(error)):
        return _first_line(error)
    return None


# How gloo and NCCL report a peer that is gone or silent (gloo's come as plain RuntimeErrors
# from DDP's gradient all-reduce inside backward).
_PEER_LOST = re.compile(r"gloo|nccl|connection (reset|closed|refused)|broken pipe|timed? ?out|"
                        r"ProcessGroup|peer", re.IGNORECASE)


def _first_line(error: BaseException) -> str:
    """The message of a distributed error, without gloo's source location and trailing advice."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text)  # [/path/pair.cc:545]
    return text.split(". ")[0][:160]


def shutdown() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: Dist, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `module` when there are several processes."""
    if not ctx.enabled:
        return module
    # Buffers (BatchNorm statistics) are not broadcast each forward: each rank keeps the
    # statistics of its own shard, as GAN implementations usually do; rank 0's are saved.
    with warnings.catch_warnings():
        # Newer torch deprecates the name in favour of options that do not exist yet everywhere.
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*")
        return nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers (its state dict has no prefixes)."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod  # type: ignore[assignment]
        else:
            return module


def all_reduce_mean(values: torch.Tensor, ctx: Dist) -> torch.Tensor:
    """Mean of a tensor over all ranks (identity in a single process)."""
    if ctx.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= ctx.world_size
    return values


def any_rank(flag: bool, ctx: Dist, device: torch.device) -> bool:
    """True on every rank if `flag` is true on any (e.g. a stop request that reached one rank)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(ctx: Dist) -> None:
    """Wait for every process (at most the group's timeout, then a DistError)."""
    if ctx.enabled:
        dist.barrier()


def check_same(value: int, ctx: Dist, device: torch.device, what: str) -> None:
    """Refuse to go on when the processes disagree about an integer (`what` names it), e.g. the
    step they resume from."""
    if not ctx.enabled:
        return
    t = torch.tensor([value, -value], device=device, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    high, low = int(t[0].item()), -int(t[1].item())
    if high != low:
        raise PeerError(f"process {ctx.rank} of {ctx.world_size}: the processes disagree about {what} "
                        f"({low} to {high}; this one: {value}); every node must see the run folder alike")


def stream_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, phase, shard): noise streams that depend on
    nothing but their coordinates, so any split of a batch over ranks sees the same noise."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(int(p).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


def check_batch_split(batch_size: int, ctx: Dist, accumulate: int, key: str = "train.batch_size") -> int:
    """Samples per micro-batch on each rank; the global batch (`key`) must split evenly."""
    parts = ctx.world_size * accumulate
    if batch_size % parts:
        raise ConfigError(f"{key}={batch_size} does not split over {ctx.world_size} processes x {accumulate} "
                          f"micro-batches (train.accumulate); use a multiple of {parts}")
    return batch_size // parts


def check_batch_splits(train: TrainConfig, ctx: Dist) -> None:
    """Both players' batches (train.batch_size, train.g_batch_size) split over the processes and micro-batches."""
    check_batch_split(train.batch_size, ctx, train.accumulate)
    check_batch_split(train.generator_batch, ctx, train.accumulate, "train.g_batch_size")


def all_reduce_grads(module: nn.Module, ctx: Dist) -> None:
    """Average `module`'s gradients over all ranks, for a backward pass DDP did not see (a separate
    lazy-regularization phase runs the plain module)."""
    if not ctx.enabled:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if grads:
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= ctx.world_size
        for grad, mean in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            grad.copy_(mean)


# torchrun's own log lines (glog style) and its failure report; ganforge's processes already
# said what went wrong in one line.
_LAUNCHER_LINE = re.compile(r"^([WEIF]\d{4} \d\d:\d\d:\d\d|Traceback \(most recent call last\)|\*{10})")


def launch(nproc: int, argv: list[str]) -> int:
    """Run `ganforge ARGV` under torchrun with `nproc` processes on this node; its exit code.

    The processes' output passes through as it comes (progress bars included); torchrun's own
    log lines and failure traceback are held back, and a repeated `error:` line (every rank
    finds the same config error) is shown once.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "ganforge", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    # The processes stop on signals themselves (with a checkpoint): Ctrl+C reaches them from the
    # terminal, and a SIGTERM sent to this process alone is passed on; this one waits for them.
    stopped: list[int] = []

    def pass_on(signum: int, frame: object) -> None:
        stopped.append(signum)
        if signum == signal.SIGTERM:
            proc.send_signal(signum)

    signal.signal(signal.SIGINT, pass_on)
    signal.signal(signal.SIGTERM, pass_on)
    fd, pending, seen_errors, launcher_report = proc.stderr.fileno(), "", set(), False
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        pending += chunk.decode(errors="replace")
        *lines, pending = pending.split("\n")
        for line in lines:
            if launcher_report or _LAUNCHER_LINE.match(line):
                launcher_report = launcher_report or line.startswith("Traceback")
                continue
            if line.startswith("error:"):
                if line in seen_errors:
                    continue
                seen_errors.add(line)
            sys.stderr.write(line + "\n")
        if "\r" in pending and not launcher_report:  # progress bar redraws carry no newline
            sys.stderr.write(pending)
            pending = ""
        sys.stderr.flush()
    code = proc.wait()
    if code and stopped:
        return 130  # stopped as asked (torchrun reports the processes' exit code 130 as a failure)
    if code and not seen_errors:
        sys.stderr.write(f"error: a training process failed (torchrun exit code {code}); see the messages above\n")
    return code
