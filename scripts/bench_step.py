#!/usr/bin/env python
"""Training-step speed: ganforge's loop against a minimal hand-written PyTorch loop, the effect of
each speed option, where peak memory goes, model FLOP utilisation per architecture, and a
StyleGAN2 128 px anchor against StyleGAN2-ADA's published speed.

Sections (`--sections`, default all):

  speed   The same DCGAN (ganforge's modules, widths, batch and Adam settings, non-saturating loss,
          one D step per G step with fresh noise for the G step, data in memory) trained by
          ganforge's real entry point, `ganforge.training.loop.train`, under each option, and by a hand
          loop, plain and with its launch overhead removed: the whole step captured once as a CUDA
          graph (static buffers, capturable fused Adam inside the graph) or G and D compiled with
          `mode="reduce-overhead"`. Every measurement runs in a fresh process (so peak memory is its
          own) and rounds alternate between variants; the table shows median images/s, the ratio to
          the hand loop and peak memory (allocated and reserved on a GPU, resident set on the CPU),
          then where the peak goes: weights, gradients, Adam moments, the EMA copy of G and the data
          set held on the device, counted from the models, and the rest (activations, cuDNN
          workspaces, allocator slack) as the difference. `--memory-snapshot DIR` also writes one
          CUDA memory snapshot per variant (open at https://pytorch.org/memory_viz).
  mfu     Each architecture at its shipped size (configs/*.yaml; the CIFAR-10 ones on digits at
          32 px, as nothing is downloaded) in bf16: images/s from ganforge's log, and model FLOP
          utilisation: FLOPs of the training steps counted with torch.utils.flop_counter (matmuls
          and convolutions, forward and backward, lazy regularizers averaged over their period)
          divided by the time per step and the GPU's peak dense bf16 FLOP/s.
  anchor  StyleGAN2 at 128 px (StyleGAN2-ADA's `auto` config for one GPU: widths 128-512, batch 32,
          mapping 2, R1 every 16, path length every 4, ADA, style mixing 0.9) in bf16 on digits
          upscaled to 128: s/kimg and peak memory next to the published 12.8-13.7 s/kimg and 7.2 GB
          on one V100 (official code, custom CUDA kernels, fp16 in the four highest-resolution layers).

    python scripts/bench_step.py                                        # everything (a GPU: ~15 min)
    python scripts/bench_step.py --sections speed --resolution 32 --rounds 2
    python scripts/bench_step.py --sections mfu anchor
    python scripts/bench_step.py --device cpu --sections mfu --mfu-configs quickstart --flop-batch 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from ganforge.logrecord import D_LOSS, G_LOSS, IMG_PER_S

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import common_overrides, first_line, log_records, prepared_config, train_run  # noqa: E402

# --------------------------------------------------------------------------------------------
# Variants of the speed section
# --------------------------------------------------------------------------------------------

# ganforge: name -> (train-section overrides, optimizer implementation, EMA decay). Every variant
# but "EMA off" keeps the default EMA of G (decay 0.999), work the hand loop does not do; all but
# "cudnn.benchmark off" let cuDNN autotune (train.deterministic: false).
GANFORGE_VARIANTS: dict[str, tuple[dict, str, float]] = {
    "default": ({}, "auto", 0.999),
    "default, cudnn.benchmark off": ({"deterministic": True}, "auto", 0.999),
    "EMA off": ({}, "auto", 0.0),
    "adam loop (not fused)": ({}, "loop", 0.999),
    "channels_last": ({"channels_last": True}, "auto", 0.999),
    "bf16 autocast": ({"precision": "bf16"}, "auto", 0.999),
    "compile": ({"compile": True}, "auto", 0.999),
    "compile + channels_last": ({"compile": True, "channels_last": True}, "auto", 0.999),
    "compile reduce-overhead": ({"compile": "reduce-overhead"}, "auto", 0.999),  # CUDA graphs of G and D
}

# The hand loop: name -> switches. The first is the baseline every ratio divides by.
HAND_VARIANTS: dict[str, dict[str, Any]] = {
    "hand loop": {},
    "hand loop, cudnn.benchmark": {"benchmark": True},
    "hand loop, data on host": {"host_data": True},
    "hand loop, CUDA graph": {"graph": True},
    "hand loop, CUDA graph + benchmark": {"graph": True, "benchmark": True},
    "hand loop, CUDA graph, bf16": {"graph": True, "bf16": True},
    "hand loop, compile reduce-overhead": {"compile": "reduce-overhead"},
}
CUDA_ONLY = ("hand loop, CUDA graph", "hand loop, CUDA graph + benchmark", "hand loop, CUDA graph, bf16",
             "hand loop, compile reduce-overhead", "compile reduce-overhead")
BASELINE = "hand loop"

LATENT = 100
WIDTH = 64


def ganforge_config(resolution: int, batch: int, steps: int, window: int, variant: str, device: str,
                    out: Path) -> dict:
    """The DCGAN of the speed section as a ganforge config, with the variant's settings."""
    extra, implementation, ema = GANFORGE_VARIANTS[variant]
    adam = {"kind": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "implementation": implementation}
    return {
        "data": {"kind": "digits", "resolution": resolution},
        "generator": {"kind": "dcgan", "latent_dim": LATENT, "base_width": WIDTH},
        "discriminator": {"kind": "dcgan", "base_width": WIDTH},
        "loss": {"kind": "non_saturating"},
        "optim": {"g": adam, "d": adam},
        "train": {"steps": steps, "batch_size": batch, "seed": 0, "device": device, "ema": {"decay": ema},
                  "deterministic": False, **extra},
        "log": {"every": window},  # the last record covers exactly the measured window
        "samples": {"every": 10**6, "num": 16},
        "checkpoint": {"every": 10**6, "keep": 1},
        "output": {"dir": str(out)},
    }


def measured_steps(warmup: int, window: int) -> int:
    """Total steps: the warm-up rounded up to whole windows (ganforge logs every `window` steps
    and its last record times the last window), then the window."""
    return -(-warmup // window) * window + window


def mib(tensors: Any) -> float:
    """Size of some tensors in MiB."""
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def static_memory(G: torch.nn.Module, D: torch.nn.Module, data: list[torch.Tensor], ema: bool) -> dict[str, float]:
    """What a step keeps on the device between steps, by owner (MiB): the rest of the peak is
    activations, workspaces and allocator slack."""
    params = [p for net in (G, D) for p in net.parameters() if p.requires_grad]
    return {
        "weights": mib([*G.parameters(), *G.buffers(), *D.parameters(), *D.buffers()]),
        "grads": mib(params),
        "adam": 2 * mib(params),
        "ema": mib([*G.parameters(), *G.buffers()]) if ema else 0.0,
        "data": mib(data),
    }


def run_ganforge(resolution: int, batch: int, warmup: int, window: int, variant: str, device: str) -> dict:
    """ganforge's own training on the variant: images/s over the window and static memory."""
    from ganforge.build import build_data, build_networks
    from ganforge.config import config_to_dict, parse_config
    from ganforge.run import RunDir
    from ganforge.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(ganforge_config(resolution, batch, measured_steps(warmup, window), window, variant,
                                           device, Path(tmp) / "run"))
        run = RunDir(cfg.output.dir)
        run.create()
        try:
            train(cfg, config_to_dict(cfg), run, progress=False)
        finally:
            run.release_lock()
        record = log_records(run.path)[-1]
    source = build_data(cfg)
    G, D, _ = build_networks(cfg, source.info)
    x, y = source.tensors()  # held whole on the training device (TensorBatches)
    return {"img_per_s": record[IMG_PER_S], "d_loss": record[D_LOSS], "g_loss": record[G_LOSS],
            "static": static_memory(G, D, [x, y], ema=cfg.train.ema.decay > 0)}


def run_hand_loop(resolution: int, batch: int, warmup: int, window: int, device: str, flags: dict[str, Any]
                  ) -> dict:
    """The loop one writes by hand: no framework, the same networks and hyper-parameters; with
    `graph` the whole step (batch draw, D update, G update, both Adam steps) is captured once as a
    CUDA graph and replayed, so a step costs one launch."""
    from sklearn.datasets import load_digits

    from ganforge.models.dcgan import DCGANDiscriminator, DCGANGenerator

    dev = torch.device(device)
    graph, host_data = bool(flags.get("graph")), bool(flags.get("host_data"))
    torch.backends.cudnn.benchmark = bool(flags.get("benchmark"))
    torch.manual_seed(0)
    G = DCGANGenerator(1, resolution, latent_dim=LATENT, base_width=WIDTH).to(dev)
    D = DCGANDiscriminator(1, resolution, base_width=WIDTH).to(dev)
    # Inside a graph, Adam's step count must live on the device: capturable (fused: one kernel).
    adam: dict[str, Any] = {"lr": 2e-4, "betas": (0.5, 0.999), **({"capturable": True, "fused": True} if graph else {})}
    opt_g, opt_d = torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam)
    x = torch.from_numpy(load_digits().images).float().unsqueeze(1) / 8 - 1
    data = F.interpolate(x, size=(resolution, resolution), mode="bilinear")
    data = data.pin_memory() if host_data and dev.type == "cuda" else data.to(dev)
    G_run, D_run = G, D
    if flags.get("compile"):
        G_run, D_run = torch.compile(G, mode=flags["compile"]), torch.compile(D, mode=flags["compile"])

    def amp() -> contextlib.AbstractContextManager[Any]:
        if not flags.get("bf16"):
            return contextlib.nullcontext()
        # A graph replays the casts it captured: autocast's weight-cast cache must be off.
        return torch.autocast(dev.type, dtype=torch.bfloat16, cache_enabled=not graph)

    def real_batch() -> torch.Tensor:
        if host_data:  # what a DataLoader with pinned memory hands over: a host batch, copied asynchronously
            rows = data[torch.randint(len(data), (batch,))]
            return rows.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else rows
        return data[torch.randint(len(data), (batch,), device=dev)]

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        if flags.get("compile") == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten
        real = real_batch()
        # (1) D: maximise log D(x) + log(1 - D(G(z)))
        with torch.no_grad(), amp():
            fake = G_run(torch.randn(batch, LATENT, device=dev))
        with amp():
            d_loss = F.softplus(-D_run(real)).float().mean() + F.softplus(D_run(fake)).float().mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # (2) G: maximise log D(G(z))
        with amp():
            g_loss = F.softplus(-D_run(G_run(torch.randn(batch, LATENT, device=dev)))).float().mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        return d_loss.detach(), g_loss.detach()

    run: Callable[[], Any] = step
    done = 0
    losses: tuple[torch.Tensor, torch.Tensor] | None = None
    if graph:
        # Warm up on a side stream (cuDNN picks its kernels, Adam creates its state), then capture
        # one step; set_to_none before capture puts the gradients in the graph's memory pool.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        done = 3
        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph):
            losses = step()  # static outputs: refreshed by every replay
        run = cuda_graph.replay

    for _ in range(max(0, measured_steps(warmup, window) - window - done)):
        out = run()
    synchronize(dev)
    start = time.perf_counter()
    for _ in range(window):
        out = run()
    synchronize(dev)
    seconds = time.perf_counter() - start
    d_loss, g_loss = losses if graph else out
    return {"img_per_s": window * batch / seconds, "d_loss": d_loss.item(), "g_loss": g_loss.item(),
            "static": static_memory(G, D, [] if host_data else [data], ema=False)}


def synchronize(dev: torch.device) -> None:
    """Wait for the GPU (timing boundaries)."""
    if dev.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# Model FLOP utilisation
# --------------------------------------------------------------------------------------------

MFU_CONFIGS = ("quickstart", "sngan_digits", "sngan_cifar10", "biggan_digits", "biggan_cifar10", "stylegan2_digits",
               "stylegan2_cifar10")
# Dense bf16 tensor-core peaks (no sparsity), by a fragment of torch.cuda.get_device_name(); first match wins.
PEAK_BF16_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
                   ("A100", 312e12))


def peak_bf16_flops(device: str) -> tuple[str, float | None]:
    """The device's name and its peak dense bf16 FLOP/s (None when not in the table)."""
    if not device.startswith("cuda"):
        return f"cpu ({torch.get_num_threads()} threads)", None
    name = torch.cuda.get_device_name(torch.device(device))
    return name, next((peak for fragment, peak in PEAK_BF16_FLOPS if fragment in name), None)


def lazy_period(cfg: Any) -> int:
    """Steps after which the lazy regularizers' pattern repeats (lcm of their `every`)."""
    from ganforge.build import build_regularizers

    return math.lcm(1, *(reg.every for _, reg in build_regularizers(cfg)))


def conv_backward_flop(grad_out_shape: Any, x_shape: Any, w_shape: Any, bias: Any, stride: Any, padding: Any,
                       dilation: Any, transposed: bool, output_padding: Any, groups: int, output_mask: Any,
                       out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of a convolution's backward: the forward's for each gradient asked (input, weight).
    torch's own formula counts a grouped convolution's weight gradient as if every group met every
    other, `groups` times too much: StyleGAN2's modulated convolutions are one group per sample."""
    spatial = x_shape[2:] if transposed else grad_out_shape[2:]
    forward = 2 * x_shape[0] * math.prod(w_shape) * math.prod(spatial)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


class _NoModuleTracking:
    """Stands in for FlopCounterMode's per-module tracker, whose hooks fail on a view of a parameter
    taken under no_grad (StyleGAN2's constant input while generating fakes for D): totals only."""

    parents = ("Global",)

    def __enter__(self) -> _NoModuleTracking:
        return self

    def __exit__(self, *args: Any) -> None:
        return None


def count_flops(path: Path, overrides: list[str], steps: int, batch: int) -> float:
    """FLOPs (matmuls and convolutions, forward and backward) per training step at `batch`, over
    `steps` steps of ganforge's real loop (setup, the final 16-sample grid and checkpoint included:
    a grid is under 1% of a step's work)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flop})
    counter.mod_tracker = _NoModuleTracking()
    with tempfile.TemporaryDirectory() as tmp, counter:
        train_run(path, [*overrides, f"train.steps={steps}", f"train.batch_size={batch}", f"log.every={steps}",
                         "samples.num=16", f"output.dir={Path(tmp) / 'run'}"])
    return counter.get_total_flops() / steps


def run_mfu(config: str, warmup: int, window: int, device: str, batch: int | None, flop_batch: int | None,
            precision: str) -> dict:
    """One architecture: images/s and peak memory from a timed run, then FLOPs per step."""
    from ganforge.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        label, path = prepared_config(config, Path(tmp))
        cfg, _ = load_config(path)
        batch = batch or cfg.train.batch_size
        overrides = [*common_overrides(measured_steps(warmup, window), device, Path(tmp) / "run"),
                     f"train.precision={precision}", "train.deterministic=false", f"train.batch_size={batch}",
                     f"log.every={window}"]
        records = log_records(train_run(path, overrides))
        memory = peak_memory(device)
        period = lazy_period(cfg)
        small = min(flop_batch or batch, batch)
        if small == batch:
            flops = count_flops(path, overrides, period, batch)
        else:  # FLOPs are affine in the batch: count at two small batches and extrapolate
            low, high = count_flops(path, overrides, period, small), count_flops(path, overrides, period, 2 * small)
            flops = low + (high - low) / small * (batch - small)
    return {"label": label, "batch": batch, "d_steps": cfg.train.d_steps_per_g_step,
            "resolution": int(cfg.data.params.get("resolution", 32)), "img_per_s": records[-1][IMG_PER_S],
            "flops_per_step": flops, "flop_period": period, "flop_batch": small, **memory}


# --------------------------------------------------------------------------------------------
# StyleGAN2 at 128 px against StyleGAN2-ADA
# --------------------------------------------------------------------------------------------

ADA_PUBLISHED = "StyleGAN2-ADA (official, one V100, 128 px, batch 32): 12.8-13.7 s/kimg, 7.2 GB"


def anchor_config(batch: int) -> dict:
    """StyleGAN2-ADA's `auto` config at 128 px on one GPU, in ganforge's terms."""
    adam = {"kind": "adam", "lr": 2.5e-3, "betas": [0.0, 0.99], "eps": 1e-8}
    return {
        "data": {"kind": "digits", "resolution": 128},
        # channels min(16384 / res, 512): 512 up to 32 px, 256 at 64, 128 at 128
        "generator": {"kind": "stylegan2", "latent_dim": 512, "w_dim": 512, "mapping_layers": 2,
                      "channel_base": 16384, "channel_max": 512, "conv_clamp": 256, "num_fp16_res": 4,
                      "style_mixing": 0.9},
        "discriminator": {"kind": "stylegan2", "channel_base": 16384, "channel_max": 512, "conv_clamp": 256,
                          "num_fp16_res": 4},
        "loss": {"kind": "non_saturating"},
        # gamma = 0.0002 * res^2 / batch = 0.1024 at batch 32
        "regularizers": [{"kind": "r1", "weight": 0.0002 * 128**2 / batch, "every": 16},
                         {"kind": "path_length", "weight": 2.0, "every": 4}, {"kind": "ada"}],
        "optim": {"g": adam, "d": adam},
        "train": {"batch_size": batch, "ema": {"decay": 0.5 ** (batch / 10_000), "rampup": 0.05}},
    }


def run_anchor(batch: int, warmup: int, window: int, device: str, precision: str) -> dict:
    """s/kimg and peak memory of the 128 px StyleGAN2."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stylegan2_128.yaml"
        path.write_text(yaml.safe_dump(anchor_config(batch)))
        overrides = [*common_overrides(measured_steps(warmup, window), device, Path(tmp) / "run"),
                     f"train.precision={precision}", "train.deterministic=false", f"log.every={window}"]
        record = log_records(train_run(path, overrides))[-1]
    return {"img_per_s": record[IMG_PER_S], "s_per_kimg": 1000 / record[IMG_PER_S], **peak_memory(device)}


# --------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------


def peak_memory(device: str) -> dict[str, float | None]:
    """Peak allocated and reserved GPU memory of this process (MiB); on the CPU its resident set."""
    if device.startswith("cuda"):
        return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20,
                "reserved_mib": torch.cuda.max_memory_reserved() / 2**20}
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "reserved_mib": None}


def worker(args: argparse.Namespace) -> None:
    """Run one measurement and print its result as the last line of JSON."""
    snapshot = args.memory_snapshot and args.device.startswith("cuda") and args.worker == "speed"
    if snapshot:
        torch.cuda.memory._record_memory_history(max_entries=200_000)
    try:
        if args.worker == "speed" and args.name in HAND_VARIANTS:
            flags = HAND_VARIANTS[args.name]
            result = run_hand_loop(args.res, args.batch, args.warmup, args.window, args.device, flags)
        elif args.worker == "speed":
            result = run_ganforge(args.res, args.batch, args.warmup, args.window, args.name, args.device)
        elif args.worker == "mfu":
            result = run_mfu(args.name, args.warmup, args.window, args.device, args.mfu_batch, args.flop_batch,
                             args.precision)
        else:
            result = run_anchor(args.anchor_batch, args.warmup, args.window, args.device, args.precision)
        result = {**peak_memory(args.device), **result}
    except Exception as e:  # noqa: BLE001 - one failing variant is a row, not the end of the benchmark
        from ganforge.errors import ConfigError

        result = {"error": ("refused: " + " ".join(str(e).split())) if isinstance(e, ConfigError) else first_line(e)}
    if snapshot:
        folder = Path(args.memory_snapshot)
        folder.mkdir(parents=True, exist_ok=True)
        torch.cuda.memory._dump_snapshot(str(folder / f"{args.res}px-{args.name.replace(' ', '_')}.pickle"))
    print(json.dumps(result))


def spawn(args: argparse.Namespace, kind: str, name: str, res: int = 0) -> dict:
    """One measurement in a fresh process (its own peak memory, no state from the others)."""
    command = [sys.executable, __file__, "--worker", kind, "--name", name, "--res", str(res),
               "--batch", str(args.batch), "--warmup", str(args.warmup), "--window", str(args.window),
               "--device", args.device, "--anchor-batch", str(args.anchor_batch), "--precision", args.precision]
    for flag, value in (("--mfu-batch", args.mfu_batch), ("--flop-batch", args.flop_batch),
                        ("--memory-snapshot", args.memory_snapshot)):
        if value:
            command += [flag, str(value)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=args.worker_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.worker_timeout} s"}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit code {out.returncode}: {tail[:200]}"}


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def section_speed(args: argparse.Namespace) -> None:
    """ganforge and the hand loop under each variant: speed, then where peak memory goes."""
    names = [BASELINE, *[v for v in args.variants if v != BASELINE]]
    cuda = args.device.startswith("cuda")
    warmup = measured_steps(args.warmup, args.window) - args.window
    print(f"\n== speed: {warmup} warm-up + {args.window} measured steps, {args.rounds} rounds, median shown")
    for res in args.resolution:
        results: dict[str, list[dict]] = {n: [] for n in names}
        for _ in range(args.rounds):
            for name in names:
                if name in CUDA_ONLY and not cuda:
                    results[name] = [{"error": "needs CUDA"}]
                    continue
                if results[name] and "error" in results[name][-1]:
                    continue  # a variant that failed once fails again
                results[name].append(spawn(args, "speed", name, res))
        good = {n: [r for r in rs if "error" not in r] for n, rs in results.items()}
        hand = statistics.median(r["img_per_s"] for r in good[BASELINE]) if good[BASELINE] else float("nan")
        print(f"\n{res}x{res} DCGAN (base width {WIDTH}), batch {args.batch}")
        print(f"  {'variant':<36} {'img/s':>8} {'x hand':>7} {'peak MiB':>9} {'reserved':>9}  (min-max img/s)")
        for name in names:
            if not good[name]:
                print(f"  {name:<36} {results[name][-1]['error']}")
                continue
            speeds = [r["img_per_s"] for r in good[name]]
            median = statistics.median(speeds)
            peak = max(r["peak_mib"] for r in good[name])
            reserved = f"{max(r['reserved_mib'] or 0 for r in good[name]):.0f}" if cuda else "-"
            finite = all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in good[name])
            print(f"  {name:<36} {median:>8.1f} {median / hand:>7.3f} {peak:>9.0f} "
                  f"{reserved:>9}  ({min(speeds):.0f}-{max(speeds):.0f})"
                  + ("" if finite else "  NON-FINITE LOSSES"))
        print("\n  where the peak goes (MiB; 'rest' = peak - the others: activations, cuDNN workspaces, slack;"
              + (")" if cuda else " no GPU peak on the CPU)"))
        parts = ("weights", "grads", "adam", "ema", "data")
        print(f"  {'variant':<36} " + " ".join(f"{p:>8}" for p in parts) + f" {'rest':>8} {'peak':>8}")
        for name in names:
            if good[name]:
                r = max(good[name], key=lambda r: r["peak_mib"])
                rest, peak = (f"{r['peak_mib'] - sum(r['static'].values()):.1f}", f"{r['peak_mib']:.1f}") if cuda \
                    else ("-", "-")
                print(f"  {name:<36} " + " ".join(f"{r['static'][p]:>8.1f}" for p in parts) + f" {rest:>8} {peak:>8}")
        graph = [n for n in names if "CUDA graph" in n and good[n]]
        for name in graph:
            ratio = statistics.median(r["img_per_s"] for r in good[name]) / hand
            print(f"  {name}: {ratio:.2f}x the hand loop (target >= 2x at 32 px, batch 64)")


def section_mfu(args: argparse.Namespace) -> None:
    """Images/s and model FLOP utilisation of each shipped architecture."""
    name, peak = peak_bf16_flops(args.device)
    where = f"peak {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else "peak unknown: FLOP/s only"
    print(f"\n== model FLOP utilisation, {args.precision}, cuDNN autotuned, shipped sizes ({name}, {where})")
    print(f"  {'config':<24} {'px':>4} {'batch':>5} {'D/G':>3} {'GFLOP/step':>11} {'img/s':>8} {'TFLOP/s':>8} "
          f"{'MFU':>6} {'peak MiB':>9}")
    for config in args.mfu_configs.split(","):
        r = spawn(args, "mfu", config)
        if "error" in r:
            print(f"  {config:<24} {r['error']}")
            continue
        steps_per_s = r["img_per_s"] / (r["batch"] * r["d_steps"])
        achieved = r["flops_per_step"] * steps_per_s
        mfu = f"{100 * achieved / peak:5.1f}%" if peak else "-"
        print(f"  {r['label']:<24} {r['resolution']:>4} {r['batch']:>5} {r['d_steps']:>3} "
              f"{r['flops_per_step'] / 1e9:>11.1f} {r['img_per_s']:>8.0f} {achieved / 1e12:>8.2f} {mfu:>6} "
              f"{r['peak_mib']:>9.0f}")
    print("  (FLOPs: matmuls and convolutions, forward and backward, counted over one period of the lazy "
          "regularizers" + (f", at batches {args.flop_batch} and {2 * args.flop_batch}, extrapolated)"
                            if args.flop_batch else ")"))


def section_anchor(args: argparse.Namespace) -> None:
    """StyleGAN2 at 128 px next to StyleGAN2-ADA's published speed."""
    print(f"\n== StyleGAN2 128 px anchor, batch {args.anchor_batch}, {args.precision}, digits upscaled to 128 px")
    r = spawn(args, "anchor", "stylegan2_128")
    if "error" in r:
        print(f"  {r['error']}")
    else:
        memory = f"{r['peak_mib'] / 1024:.1f} GiB peak allocated" if args.device.startswith("cuda") else \
            f"{r['peak_mib']:.0f} MiB resident"
        print(f"  ganforge: {r['s_per_kimg']:.1f} s/kimg ({r['img_per_s']:.0f} img/s), {memory}")
    print(f"  {ADA_PUBLISHED}")


def main() -> None:
    """Parse the command line; run a worker or the chosen sections."""
    variants = [*GANFORGE_VARIANTS, *[v for v in HAND_VARIANTS if v != BASELINE]]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["speed", "mfu", "anchor"], choices=["speed", "mfu", "anchor"])
    parser.add_argument("--resolution", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5,
                        help="steps before the window, rounded up to whole windows (compilation happens here)")
    parser.add_argument("--window", type=int, default=30, help="measured steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=variants, choices=variants, metavar="NAME")
    parser.add_argument("--mfu-configs", default=",".join(MFU_CONFIGS), help="comma-separated shipped configs")
    parser.add_argument("--mfu-batch", type=int, help="batch of the mfu section (default: each config's)")
    parser.add_argument("--flop-batch", type=int,
                        help="count FLOPs at this batch and twice it, then extrapolate (default: the real batch)")
    parser.add_argument("--anchor-batch", type=int, default=32)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"],
                        help="precision of the mfu and anchor sections (MFU divides by the bf16 peak)")
    parser.add_argument("--memory-snapshot", help="folder for one CUDA memory snapshot per speed variant")
    parser.add_argument("--worker-timeout", type=int, default=300, help="seconds per measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--res", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"torch {torch.__version__} on {args.device} ({peak_bf16_flops(args.device)[0]}), "
          f"{torch.get_num_threads()} CPU threads, batch {args.batch}")
    for section in args.sections:
        {"speed": section_speed, "mfu": section_mfu, "anchor": section_anchor}[section](args)


if __name__ == "__main__":
    main()
