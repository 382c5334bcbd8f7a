"""ganforge: train generative adversarial networks from YAML configs.

    import ganforge
    net = ganforge.load("runs/stylegan2_digits")      # a run folder, a checkpoint, or an importable file
    images = net.generate(seeds=[0, 1, 2], truncation=0.7)   # (3, C, H, W) in [-1, 1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganforge.about import RUNS_FOLDER, __version__

if TYPE_CHECKING:
    from pathlib import Path

    from ganforge.api import Networks

__all__ = ["RUNS_FOLDER", "__version__", "load"]


def load(path: str | Path, device: str = "auto") -> Networks:
    """The networks of a run folder, a ganforge checkpoint, or a file `ganforge import` reads
    (StyleGAN2-ADA/StyleGAN3 pickle, rosinality or BigGAN-PyTorch checkpoint), in eval mode:
    `.G`, `.D`, `.G_ema`, `.config` and `.generate(...)`. torch is imported on the first call."""
    from ganforge.api import load as load_networks

    return load_networks(path, device)
