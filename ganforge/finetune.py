"""Fine-tuning from a trained GAN: copy its weights into fresh networks, and freeze D's first blocks.

StyleGAN2-ADA's most used workflow: start from a model trained on a large data set and train it
on a few hundred images of a new one. `load_init` copies the chosen networks' weights (and
buffers) from any ganforge checkpoint; optimizers, schedules and the step stay fresh. A changed
number of classes re-initialises the class-indexed layers (embeddings, class projections, an
auxiliary classifier) and says so. `freeze_d_layers` is FreezeD (Mo et al. 2020): the first
blocks of D, counted from the input side, keep their pretrained weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.checkpoint import load_checkpoint
from ganforge.config import NETWORKS
from ganforge.config.parse import retired_parameter
from ganforge.data import DataInfo
from ganforge.errors import CheckpointError, ConfigError
from ganforge.run import find_checkpoint

SHOWN = 3  # names listed in one message before "and N more"
ROLE = {"G": "generator", "G_ema": "generator", "D": "discriminator"}
# Linear layers with equalized learning rate (stylegan2) keep their weight as a plain parameter.
EQUALIZED_LINEAR = ("FullyConnectedLayer",)


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _names(keys: Sequence[str]) -> str:
    more = f" (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def class_parameter_names(module: nn.Module, num_classes: int) -> set[str]:
    """State-dict names of the class-indexed layers: embedding tables and linear layers fed
    one-hot labels or producing class logits (a dimension equal to the class count), and every
    tensor of the sub-modules a network lists in `class_modules` (stylegan2 D's label mapping
    network, which exists only with labels)."""
    if num_classes <= 0:
        return set()
    names = {k for k in module.state_dict() if k.startswith(class_prefixes(module))}
    for prefix, m in module.named_modules():
        if not isinstance(m, (nn.Embedding, nn.Linear)) and type(m).__name__ not in EQUALIZED_LINEAR:
            continue
        tensors = m.state_dict()
        if any(num_classes in tuple(value.shape) for value in tensors.values()):
            names.update(f"{prefix}.{key}" if prefix else key for key in tensors)
    return names


def class_prefixes(module: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the sub-modules that exist only for class labels."""
    return tuple(f"{name}." for name in getattr(module, "class_modules", ()))


def _differs_by_classes(old: tuple[int, ...], new: tuple[int, ...], old_classes: int, new_classes: int) -> bool:
    """Shapes that differ only where the old class count became the new one."""
    return len(old) == len(new) and old != new and all(
        a == b or (a == old_classes and b == new_classes) for a, b in zip(old, new))


def merge_weights(name: str, module: nn.Module, source: dict[str, Tensor], old_classes: int, new_classes: int,
                  strict_shapes: bool) -> tuple[dict[str, Tensor], list[str]]:
    """`module`'s state dict with every matching tensor of `source` copied in -> (state, warnings).
    Raises a one-line ConfigError for a shape or key mismatch when `strict_shapes`."""
    target = module.state_dict()
    class_keys = class_parameter_names(module, new_classes)
    warnings: list[str] = []
    mismatched: list[str] = []
    for key, value in target.items():
        if key not in source:
            continue
        loaded = source[key]
        if tuple(loaded.shape) == tuple(value.shape):
            target[key] = loaded
        elif key in class_keys and _differs_by_classes(tuple(loaded.shape), tuple(value.shape), old_classes,
                                                       new_classes):
            warnings.append(f"init.checkpoint: {name} parameter {key} is re-initialised: the checkpoint has "
                            f"{old_classes} classes, this config {new_classes}")
        elif key.startswith(class_prefixes(module)):  # conditional in one, not in the other
            warnings.append(f"init.checkpoint: {name} parameter {key} is re-initialised: its shape depends on "
                            f"conditioning, which differs ({_shape(loaded)} in the checkpoint, {_shape(value)} here)")
        else:
            mismatched.append(key)
    # Keys in one and not the other. Class layers come and go with conditioning (a conditional
    # config from an unconditional checkpoint): expected. Anything else is another architecture.
    fresh = [k for k in target if k not in source and k in class_keys]
    # A checkpoint has no modules: its class layers are those with a matrix or table that has a
    # class-count dimension, with all their tensors.
    class_layers = {k.rpartition(".")[0] for k, v in source.items()
                    if k not in target and old_classes > 0 and v.dim() <= 2 and old_classes in tuple(v.shape)}
    dropped = [k for k in source if k not in target and (k.rpartition(".")[0] in class_layers or
                                                          (old_classes > 0 and k.startswith(class_prefixes(module))))]
    missing = [k for k in target if k not in source and k not in fresh]
    unexpected = [k for k in source if k not in target and k not in dropped]
    if fresh or dropped:
        parts = [f"initialised fresh: {_names(fresh)}" if fresh else "",
                 f"not used: {_names(dropped)}" if dropped else ""]
        warnings.append(f"init.checkpoint: {name} class layers differ from the checkpoint's ({old_classes} classes "
                        f"there, {new_classes} here): " + "; ".join(p for p in parts if p))
    if missing or unexpected:
        parts = [f"missing from the checkpoint: {_names(missing)}" if missing else "",
                 f"only in the checkpoint: {_names(unexpected)}" if unexpected else ""]
        what = f"init.checkpoint: {name} does not match this config's architecture (" + \
            "; ".join(p for p in parts if p) + ")"
        if any("parametrizations." in k for k in missing + unexpected):
            what += "; spectral_norm differs between the checkpoint's run and this config"
        if strict_shapes:
            raise ConfigError(f"{what}; use the checkpoint's architecture, or set init.strict_shapes: false to "
                              "load only the matching parameters")
        warnings.append(f"{what}; loaded the matching parameters only")
    if mismatched:
        key = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        what = (f"init.checkpoint: {name} parameter {key} has shape {_shape(source[key])} in the checkpoint, "
                f"{_shape(target[key])} in this config{more}")
        if strict_shapes:
            raise ConfigError(f"{what}; give the {ROLE[name]} the checkpoint's settings, or set "
                              "init.strict_shapes: false to keep such parameters freshly initialised")
        warnings.append(f"{what}; kept freshly initialised")
    return target, warnings


def load_init(state: Any, checkpoint: str | Path, num_classes: int, load: Sequence[str] = NETWORKS,
              strict_shapes: bool = True, regularizers: Sequence[tuple[str, Any]] = (), ada_p: bool = True
              ) -> list[str]:
    """Copy the weights of the networks named in `load` from a checkpoint (file or run folder)
    into `state.G`, `state.D`, `state.G_ema`; returns one warning line per adjustment.
    Optimizers, schedules and the step are left as they are (fresh). `num_classes`: this
    config's data classes. G loaded without G_ema: G_ema starts as a copy of G, as in training.
    With `ada_p`, an `ada` among `regularizers` (kind, object) starts at the checkpoint's p."""
    unknown = [n for n in load if n not in NETWORKS]
    if unknown or not load:
        raise ConfigError(f"init.load: {'unknown network ' + repr(unknown[0]) if unknown else 'empty'}; "
                          f"name one or more of {', '.join(NETWORKS)}")
    try:
        file, sha = find_checkpoint(checkpoint)
        ckpt = load_checkpoint(file, sha)
        stored = ckpt.state
        old_classes = DataInfo.from_dict(ckpt.data_info).num_classes
        retired = retired_parameter(ckpt.config)
    except CheckpointError as e:
        raise ConfigError(f"init.checkpoint: {e}") from None
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"init.checkpoint: {checkpoint} holds no network weights (not a training "
                          "checkpoint of ganforge)") from None
    if retired:  # the weights of a network ganforge no longer builds: say so, not which keys differ
        raise ConfigError(f"init.checkpoint: {file}: {retired}")
    warnings: list[str] = []
    merged: dict[str, dict[str, Tensor]] = {}
    for name in load:
        source = stored.get(name)
        if not isinstance(source, dict):
            raise ConfigError(f"init.checkpoint: {file} has no {name} weights; drop {name} from init.load")
        merged[name], notes = merge_weights(name, getattr(state, name), source, old_classes, num_classes,
                                            strict_shapes)
        warnings += notes
    # Every check passed: only now change the networks.
    for name, weights in merged.items():
        getattr(state, name).load_state_dict(weights)
    if "G" in load and "G_ema" not in load:
        state.G_ema.load_state_dict(state.G.state_dict())
    if "G_ema" in load and "G" not in load:
        warnings.append("init.load: G_ema is loaded but G is not; the moving average will drift towards the "
                        "fresh G (load both, or G alone)")
    p = stored_ada_p(ckpt.config, stored) if ada_p else None
    for kind, reg in regularizers:
        if kind == "ada" and p is not None:
            reg.p = torch.tensor(p)
            warnings.append(f"init.checkpoint: ADA's p starts at {p:.4g}, where the checkpoint's run left it "
                            "(init.ada_p: false starts it at initial_p)")
    return warnings


def stored_ada_p(config: Any, state: dict[str, Any]) -> float | None:
    """ADA's p in a checkpoint (its config's `ada` regularizer's saved state), or None."""
    kinds = [r.get("kind") if isinstance(r, dict) else None for r in (config or {}).get("regularizers") or []]
    saved = state.get("regularizers") or []
    for kind, reg_state in zip(kinds, saved):
        if kind == "ada" and isinstance(reg_state, dict) and isinstance(reg_state.get("p"), (int, float)):
            return float(reg_state["p"])
    return None


# --------------------------------------------------------------------------------------------
# FreezeD
# --------------------------------------------------------------------------------------------


def discriminator_blocks(D: nn.Module) -> list[list[nn.Module]]:
    """D's feature blocks from the input side, each a list of modules, as the architecture declares
    them (its `feature_blocks` method; none for one without it); the output head (final layer,
    minibatch-std epilogue, class projection) is not among them."""
    blocks = getattr(D, "feature_blocks", None)
    return blocks() if callable(blocks) else []


def freeze_d_layers(D: nn.Module, n: int) -> list[str]:
    """FreezeD: stop training D's first `n` blocks (requires_grad False, so an optimizer built
    afterwards leaves them out); returns the frozen parameter names."""
    if n < 0:
        raise ConfigError(f"init.freeze_d_layers: must be >= 0, got {n}")
    if n == 0:
        return []
    blocks = discriminator_blocks(D)
    if not blocks:
        raise ConfigError(f"init.freeze_d_layers: the {type(D).__name__} has no block list to freeze; use 0")
    if n > len(blocks):
        raise ConfigError(f"init.freeze_d_layers: {n} is more than the {len(blocks)} blocks of this "
                          f"{type(D).__name__}; use 0 to {len(blocks)}")
    frozen = {id(p) for block in blocks[:n] for m in block for p in m.parameters()}
    names = []
    for name, p in D.named_parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
            names.append(name)
    return names
