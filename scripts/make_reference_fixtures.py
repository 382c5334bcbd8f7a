"""Write the parity fixtures: run each reference implementation on the CPU with random weights,
save a small checkpoint in that reference's own format, fixed inputs and the reference's outputs.

The reference code is not part of ganforge: each writer imports it from a checkout whose path it
is given, and only the files it writes (under tests/fixtures/reference/) are committed.

    python scripts/make_reference_fixtures.py --stylegan2-ada PATH --rosinality PATH --biggan PATH

Each reference is optional; the writers of the ones given run, in this order.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference"


# --------------------------------------------------------------------------------------------
# NVlabs/stylegan2-ada-pytorch
# --------------------------------------------------------------------------------------------


def make_stylegan2_ada(checkout: Path, out: Path) -> None:
    """StyleGAN2-ADA network pickles and their outputs."""
    raise NotImplementedError("stylegan2-ada fixtures: not written yet")


# --------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch
# --------------------------------------------------------------------------------------------


def make_rosinality(checkout: Path, out: Path) -> None:
    """rosinality stylegan2-pytorch checkpoints and their outputs."""
    raise NotImplementedError("rosinality fixtures: not written yet")


# --------------------------------------------------------------------------------------------
# ajbrock/BigGAN-PyTorch
# --------------------------------------------------------------------------------------------


def make_biggan_pytorch(checkout: Path, out: Path) -> None:
    """BigGAN-PyTorch weights (G.pth, D.pth, G_ema.pth, state_dict.pth) and their outputs."""
    raise NotImplementedError("BigGAN-PyTorch fixtures: not written yet")


# --------------------------------------------------------------------------------------------


WRITERS: dict[str, Callable[[Path, Path], None]] = {
    "stylegan2_ada": make_stylegan2_ada,
    "rosinality": make_rosinality,
    "biggan": make_biggan_pytorch,
}


def main() -> None:
    """Run the writers of the references whose checkouts are given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stylegan2-ada", type=Path, help="a checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--rosinality", type=Path, help="a checkout of rosinality/stylegan2-pytorch")
    parser.add_argument("--biggan", type=Path, help="a checkout of ajbrock/BigGAN-PyTorch")
    parser.add_argument("--out", type=Path, default=OUT, help="the fixture folder (default: %(default)s)")
    args = parser.parse_args()
    given = {"stylegan2_ada": args.stylegan2_ada, "rosinality": args.rosinality, "biggan": args.biggan}
    if not any(given.values()):
        parser.error("give at least one reference checkout")
    for name, checkout in given.items():
        if checkout is not None:
            WRITERS[name](checkout.resolve(), args.out / name)
            print(f"{name}: wrote {args.out / name}")


if __name__ == "__main__":
    main()
