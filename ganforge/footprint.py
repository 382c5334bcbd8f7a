"""Will training fit? A config's memory needs, estimated before anything is built, against what
the device has.

Two figures, for any architecture:
- the training state: G and D are built on the `meta` device (shapes, no memory), counting
  parameters and buffers as they are registered, and each parameter costs its weight, its
  gradient, Adam's two moments and (for G) its G_ema copy. A count past the memory available
  stops the build at once: a network of 100,000 layers is refused after the few thousand that
  already do not fit.
- the activations of one step: the tensors that one forward of G and of D keep for the backward
  pass, measured by running the real networks on two samples, times the samples each process
  takes per micro-batch. A step runs G then D (generator step) and D twice (discriminator step,
  reals and fakes, plus a regularizer's second backward): G's plus twice D's covers both.

The memory available is the GPU's on CUDA, else the machine's RAM, lowered by a cgroup limit
(a SLURM job's `--mem`) or this process's address-space limit, and shared by the processes
this node runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from ganforge.config import Component, Config
from ganforge.errors import ConfigError
from ganforge.models import conditioning_classes, reads_labels

# Bytes a float32 parameter costs in training: weight, gradient, Adam's two moments; G's also its
# G_ema copy.
D_BYTES_PER_PARAMETER = 4 * 4
G_BYTES_PER_PARAMETER = D_BYTES_PER_PARAMETER + 4


@dataclass(frozen=True)
class Memory:
    """What the device offers training: `bytes`, and what that figure is (`what`)."""

    bytes: int
    what: str


@dataclass(frozen=True)
class Footprint:
    """A config's training, measured before it runs."""

    g_parameters: int
    d_parameters: int
    state_bytes: int  # weights, gradients, optimizer moments, G_ema, buffers
    activation_bytes: int  # one step, at `micro_batch` samples
    micro_batch: int  # samples per process and micro-batch
    memory: Memory | None  # None: the configured device is not on this machine

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes

    def describe(self) -> str:
        """One line: `G 1.1 M parameters, D 0.66 M; one step needs ~78 MiB (...) of 23.2 GiB RAM`."""
        of = f" of {size(self.memory.bytes)} {self.memory.what}" if self.memory else ""
        return (f"G {count(self.g_parameters)} parameters, D {count(self.d_parameters)}; one step needs "
                f"~{size(self.total_bytes)}{of} (training state {size(self.state_bytes)}, activations "
                f"{size(self.activation_bytes)} at {self.micro_batch:,} samples per process and micro-batch)")


Build = Callable[[], nn.Module]


def check_fits(cfg: Config, processes: int, build_g: Build, build_d: Build,
               build_both: Callable[[], tuple[nn.Module, nn.Module]]) -> Footprint:
    """The footprint of training `cfg` with `processes` processes, or a ConfigError naming the
    key that makes it exceed the memory available. The training state is counted while
    `build_g` and `build_d` run on the meta device; only then does `build_both` make the real
    networks (with the regularizers' changes), whose activations are measured."""
    memory = available_memory(cfg.train.device, processes)
    counted = count_state(cfg, memory, build_g, build_d)
    G, D = build_both()
    if counted is None:  # a constructor that cannot run on the meta device: count the real networks
        counted = _real_state(G, D)
        if memory is not None and counted[2] > memory.bytes:
            _too_large_networks(cfg, *counted, memory, counted_all=True)
    g_params, d_params, state = counted
    per_sample = activation_bytes_per_sample(G, D, cfg.train.precision)
    micro = max(1, cfg.train.batch_size // max(1, processes * cfg.train.accumulate))
    footprint = Footprint(g_params, d_params, state, per_sample * micro, micro, memory)
    if memory is not None and footprint.total_bytes > memory.bytes:
        if per_sample + state > memory.bytes:
            raise ConfigError(f"data.resolution and the network widths: one sample's activations ({size(per_sample)}) "
                              f"and the training state ({size(state)}) already exceed the {size(memory.bytes)} of "
                              f"{memory.what}; use a lower resolution or narrower networks")
        raise ConfigError(f"train.batch_size={cfg.train.batch_size}: one step needs ~{size(footprint.total_bytes)} "
                          f"({micro:,} samples per process and micro-batch at {size(per_sample)} of activations "
                          f"each, and {size(state)} of training state) but there are {size(memory.bytes)} of "
                          f"{memory.what}; lower train.batch_size or raise train.accumulate")
    return footprint


# --------------------------------------------------------------------------------------------
# The training state, counted on the meta device
# --------------------------------------------------------------------------------------------


def count_state(cfg: Config, memory: Memory | None, build_g: Build, build_d: Build) -> tuple[int, int, int] | None:
    """(G parameters, D parameters, training-state bytes) of the networks `build_g` and `build_d`
    make, built on the meta device; past the memory available the build stops with a ConfigError
    naming the network's key in `cfg`. None when a constructor cannot run on the meta device (it
    reads a tensor's values)."""
    counts = {"G": [0, 0], "D": [0, 0]}  # parameters, buffer bytes
    current = ["G"]
    seen: set[int] = set()

    def on_tensor(is_parameter: bool) -> Callable[[nn.Module, str, Tensor | None], None]:
        def hook(module: nn.Module, name: str, tensor: Tensor | None) -> None:
            if tensor is None or id(tensor) in seen:
                return
            seen.add(id(tensor))
            with torch._C.DisableTorchFunction():  # plain reads: past the modes of the build
                n = tensor.numel()
                if is_parameter:
                    counts[current[0]][0] += n
                else:
                    counts[current[0]][1] += n * tensor.element_size()
            if memory is not None and _state_bytes(counts) > memory.bytes:
                raise _OverBudget

        return hook

    hooks = [nn.modules.module.register_module_parameter_registration_hook(on_tensor(True)),
             nn.modules.module.register_module_buffer_registration_hook(on_tensor(False))]
    try:
        with _ShapesOnly():
            G = build_g()  # kept: the ids in `seen` stay theirs
            current[0] = "D"
            D = build_d()
        del G, D
    except _OverBudget:
        _too_large_networks(cfg, counts["G"][0], counts["D"][0], _state_bytes(counts), memory, counted_all=False)
    except (RuntimeError, NotImplementedError):
        return None  # e.g. `.item()` of a meta tensor; an error of the config itself comes as a ConfigError
    finally:
        for h in hooks:
            h.remove()
    return counts["G"][0], counts["D"][0], _state_bytes(counts)


class _OverBudget(Exception):
    """The count passed the memory available."""


def _state_bytes(counts: dict[str, list[int]]) -> int:
    """Training-state bytes of {network: [parameters, buffer bytes]} (G_ema copies G's buffers too)."""
    (g, g_buf), (d, d_buf) = counts["G"], counts["D"]
    return g * G_BYTES_PER_PARAMETER + d * D_BYTES_PER_PARAMETER + 2 * g_buf + d_buf


def _real_state(G: nn.Module, D: nn.Module) -> tuple[int, int, int]:
    counts = {name: [sum(p.numel() for p in net.parameters()),
                     sum(b.numel() * b.element_size() for b in net.buffers())] for name, net in (("G", G), ("D", D))}
    return counts["G"][0], counts["D"][0], _state_bytes(counts)


def _too_large_networks(cfg: Config, g_params: int, d_params: int, state: int, memory: Memory | None,
                        counted_all: bool) -> typing.NoReturn:
    """The ConfigError for networks whose training state alone exceeds the memory."""
    section = "generator" if g_params * G_BYTES_PER_PARAMETER >= d_params * D_BYTES_PER_PARAMETER else "discriminator"
    component: Component = getattr(cfg, section)
    key = _largest_size_key(component, section)
    more = "" if counted_all else "more than "
    counted = f"{g_params + d_params:,} parameters{'' if counted_all else ' counted before the check stopped'}"
    where = f"{size(memory.bytes)} of {memory.what}" if memory else "the memory available"
    raise ConfigError(f"{key}: training G and D needs {more}{size(state)} (weights, gradients, Adam's moments and "
                      f"G_ema of {counted}) but there are {where}; use smaller sizes")


def _largest_size_key(component: Component, section: str) -> str:
    """`section.key=value` for the integer parameter furthest above its default (the likely
    culprit), or `section (kind)` when none is above it."""
    from ganforge.config import component_params
    from ganforge.registry import DISCRIMINATORS, GENERATORS

    registry = GENERATORS if section == "generator" else DISCRIMINATORS
    defaults = {p.name: p.default for p in component_params(registry.get(component.kind, section).builder,
                                                              registry.injected) if not p.required}
    best, ratio = None, 1.0
    for name, value in component.params.items():
        default = defaults.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(default, int) and default > 0:
            if value / default > ratio:
                best, ratio = name, value / default
    if best is None:
        return f"{section} ({component.kind})"
    return f"{section}.{best}={component.params[best]} (default {defaults[best]})"


# Random draws and fills whose values a meta build never reads; and arithmetic that keeps the
# shape of its tensor operand. On the meta device many of these run kernels written in Python,
# whose first use imports sympy and torch._dynamo (seconds); skipping them keeps a build to
# milliseconds.
_META = torch.device("meta")
# The functions that make a tensor on the default device (those `torch.device(...)` redirects).
_FACTORIES = _device_constructors()
_RANDOM_FACTORIES = {"randn", "rand", "randint", "randperm"}
_LIKE = {"randn_like", "rand_like", "randint_like", "empty_like", "zeros_like", "ones_like"}
_IN_PLACE = {"normal_", "uniform_", "random_", "bernoulli_", "exponential_", "log_normal_", "cauchy_", "geometric_",
             "fill_", "zero_", "copy_", "clamp_", "mul_", "div_", "add_", "sub_", "orthogonal_", "requires_grad_"}
_SAME_SHAPE = {"div", "mul", "add", "sub", "neg", "abs", "sqrt", "clamp", "clone", "detach", "contiguous", "normalize",
               "__truediv__", "__rtruediv__", "__mul__", "__rmul__", "__add__", "__radd__", "__sub__", "__rsub__",
               "__neg__"}


class _ShapesOnly(TorchFunctionMode):
    """A build on the meta device: tensor factories make meta tensors (as `torch.device("meta")`
    does, in the same mode, since each mode costs every call), random draws become empty tensors
    of their shape, in-place fills do nothing, and arithmetic on one tensor (and numbers) returns
    an empty tensor of its shape. Anything else runs as usual."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = _META
        name = getattr(func, "__name__", "")
        if getattr(func, "__module__", None) == "torch.nn.init":  # kaiming_uniform_ and the like fill in place
            return args[0] if args else kwargs.get("tensor")
        if name in _RANDOM_FACTORIES:
            shape = kwargs.get("size", args[-1] if name == "randint" else args)
            dtype = kwargs.get("dtype", torch.long if name in ("randint", "randperm") else None)
            if name == "randperm":
                shape = (args[0],)
            return torch.empty(*_as_shape(shape), dtype=dtype, device=_META)
        if name in _LIKE and args and isinstance(args[0], Tensor):
            return torch.empty(args[0].shape, dtype=kwargs.get("dtype", args[0].dtype), device=_META)
        if name in _IN_PLACE or name in _SAME_SHAPE:
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
            if tensors and all(t.shape == tensors[0].shape for t in tensors):
                if name in _IN_PLACE:
                    return tensors[0]
                return torch.empty(tensors[0].shape, dtype=tensors[0].dtype, device=_META)
        return func(*args, **kwargs)


def _as_shape(shape: Any) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


# --------------------------------------------------------------------------------------------
# The activations, measured on two samples
# --------------------------------------------------------------------------------------------


def activation_bytes_per_sample(G: nn.Module, D: nn.Module, precision: str) -> int:
    """Bytes that one sample keeps for the backward pass in one step: G's forward plus two of D's
    (tensors saved by autograd, each storage once, parameters left out), in the configured precision."""
    n = 2  # BatchNorm in training mode needs two samples where a layer has no spatial extent
    parameters = {p.untyped_storage().data_ptr() for p in [*G.parameters(), *D.parameters()]}
    saved: dict[str, dict[int, int]] = {"G": {}, "D": {}}
    current = ["G"]

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[current[0]][storage.data_ptr()] = storage.nbytes()
        return t

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, G.latent_dim, generator=g)
    labels = torch.zeros(n, dtype=torch.long) if conditioning_classes(G) or reads_labels(D) else None
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        fake = G(z, labels if conditioning_classes(G) else None)
        current[0] = "D"
        D(fake, labels if reads_labels(D) else None)
    g_bytes, d_bytes = (sum(saved[k].values()) for k in ("G", "D"))
    return math.ceil((g_bytes + 2 * d_bytes) / n)


# --------------------------------------------------------------------------------------------
# The memory available
# --------------------------------------------------------------------------------------------


def available_memory(device: str, processes: int = 1) -> Memory | None:
    """The memory one training process may use on `device` (a train.device value): the GPU's on
    CUDA; otherwise RAM (or a cgroup or address-space limit below it) shared by the processes of
    this node. None when the device is not on this machine (`ganforge config` elsewhere)."""
    kind = device.split(":")[0]
    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            return None
        index = int(device.split(":")[1]) if ":" in device else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            return None
        props = torch.cuda.get_device_properties(index)
        return Memory(props.total_memory, f"GPU memory on cuda:{index} ({props.name})")
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", processes)))
    limits = [(_physical_ram(), "RAM"), (_cgroup_limit(), "memory allowed to this job (cgroup)"),
              (_address_space_left(), "address space left to this process (ulimit -v)")]
    found = [(b, what) for b, what in limits if b is not None]
    if not found:
        return None
    total, what = min(found)
    if local > 1:
        return Memory(total // local, f"{what}, shared by {local} processes")
    return Memory(total, what)


def _physical_ram() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def _address_space_left() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return soft
    return max(0, soft - in_use)


# --------------------------------------------------------------------------------------------
# Figures for people
# --------------------------------------------------------------------------------------------


def size(nbytes: float) -> str:
    """`812 KiB`, `1.9 GiB`, `3.1 TiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" or nbytes >= 100 else f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    raise AssertionError


def count(n: int) -> str:
    """`4.3 K`, `16.7 M`, `26.2 G`."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(n)
