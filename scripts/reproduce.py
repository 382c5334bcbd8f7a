"""Reproduce a full-size recipe's published figure: train, evaluate with the paper's protocol,
print measured next to reported.

    python scripts/reproduce.py configs/sngan_cifar10.yaml                 # the whole recipe (GPU, days)
    python scripts/reproduce.py configs/sngan_cifar10.yaml --print-only    # what it would run and compare
    python scripts/reproduce.py --table                                    # the README's recipe table

Each `*_cifar10.yaml` recipe has an entry below: the figures its paper (or reference repository)
reports on CIFAR-10, where they come from, the evaluation protocol (generated samples, real
reference, splits), and how long the reference trained. The script runs `ganforge train` and
`ganforge eval` as a user would (subprocesses), with the protocol's sample counts, and writes
`REPRO_OUT/<recipe>.json` with both columns. CIFAR-10 and the FID Inception weights must be on
disk (`data/cifar-10-batches-py`, `--inception-weights`); smaller `--steps`/`--num-samples` make a
smoke run on stand-ins (the test suite does that).

Our evaluation uses the training split as the real reference (all of it, capped by
`--real-samples`); a protocol that used the test split says so in its `protocol` line, and the
measured figure is then not strictly comparable.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Reported:
    """A published result and how it was measured."""

    figures: dict[str, float]  # e.g. {"fid": 21.7, "is": 8.22}
    source: str  # paper and table
    protocol: str  # generated samples, real reference, splits
    num_samples: int  # generated samples of the protocol
    reference_steps: str  # how long the reference trained
    metrics: tuple[str, ...] = field(default=("fid", "is"))


RECIPES: dict[str, Reported] = {
    "wgan_gp_cifar10": Reported(
        figures={"is": 7.86},
        source="Gulrajani et al. 2017, Table 3 (unsupervised CIFAR-10, ResNet): IS 7.86 +- 0.07",
        protocol="Inception Score on 50,000 samples, 10 splits (the paper reports no FID)",
        num_samples=50_000,
        reference_steps="100,000 G iterations, 5 critic steps each, batch 64 (igul222 gan_cifar_resnet.py)",
    ),
    "sngan_cifar10": Reported(
        figures={"is": 8.22, "fid": 21.7},
        source="Miyato et al. 2018, Table 2 (SN-GANs, ResNet, hinge, n_dis = 5): IS 8.22 +- 0.05, FID 21.7 +- 0.21",
        protocol="IS on 50,000 samples, 10 splits; FID between 10,000 generated and 5,000 real images",
        num_samples=10_000,
        reference_steps="50,000 G iterations, 5 D steps each, batch 64, linear lr decay",
    ),
    "biggan_cifar10": Reported(
        figures={"is": 9.22, "fid": 14.73},
        source="Brock et al. 2019 (class-conditional CIFAR-10), as tabulated in Karras et al. 2020 (ADA), Table 2",
        protocol="50,000 samples; FID against the 50,000 training images",
        num_samples=50_000,
        reference_steps="BigGAN-PyTorch launch_cifar_ema.sh: 500 epochs at batch 50, 4 D steps per G step",
    ),
    "stylegan2_cifar10": Reported(
        figures={"fid": 2.92, "is": 9.83},
        source="Karras et al. 2020 (ADA), Table 2, unconditional StyleGAN2 + ADA + tuning (the `cifar` config)",
        protocol="fid50k_full: 50,000 generated against all 50,000 training images; is50k",
        num_samples=50_000,
        reference_steps="100,000 kimg (about 1.56 M steps at batch 64) in stylegan2-ada-pytorch's cifar config",
    ),
}


def recipe_name(config: Path) -> str:
    """The RECIPES key of a config file (its stem)."""
    name = config.stem
    if name not in RECIPES:
        raise SystemExit(f"error: no published figure recorded for {config}; known: {', '.join(sorted(RECIPES))}")
    return name


def run(cmd: list[str], dry: bool) -> subprocess.CompletedProcess | None:
    """Run a ganforge command as a user would (or print it)."""
    print("$ " + " ".join(cmd), flush=True)
    if dry:
        return None
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"error: command failed with exit code {result.returncode}")
    return result


def reproduce(config: Path, out: Path, steps: int | None, num_samples: int | None, real_samples: int | None,
              inception_weights: str | None, overrides: list[str], dry: bool) -> dict:
    """Train and evaluate one recipe; returns measured and reported figures."""
    name = recipe_name(config)
    reported = RECIPES[name]
    run_dir = out / name
    ganforge = [sys.executable, "-m", "ganforge"]
    train = [*ganforge, "train", str(config), "--set", f"output.dir={run_dir}", "--overwrite", "-q"]
    if steps is not None:
        train += ["--set", f"train.steps={steps}"]
    for item in overrides:
        train += ["--set", item]
    run(train, dry)
    n = num_samples or reported.num_samples
    evaluate = [*ganforge, "eval", str(run_dir), "--metrics", ",".join(reported.metrics), "--num", str(n),
                "--json", "-q", "--out", str(out / f"{name}-eval.json")]
    if real_samples is not None:
        evaluate += ["--real-num", str(real_samples)]
    if inception_weights is not None:
        evaluate += ["--inception-weights", inception_weights]
    result = run(evaluate, dry)
    measured = json.loads(result.stdout)["metrics"] if result is not None else {}
    report = {"recipe": name, "config": str(config), "measured": {k: measured.get(k) for k in reported.metrics},
              "generated_samples": n, "steps": steps, "reported": asdict(reported)}
    if not dry:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def print_comparison(report: dict) -> None:
    """measured vs reported, one line per figure."""
    reported = report["reported"]
    print(f"{report['recipe']}: {reported['source']}")
    print(f"  protocol: {reported['protocol']}; here {report['generated_samples']} generated samples")
    for metric in reported["metrics"]:
        mine = report["measured"].get(metric)
        theirs = reported["figures"].get(metric)
        mine_text = "not yet run" if mine is None else f"{mine:.4g}"
        theirs_text = "-" if theirs is None else f"{theirs:g}"
        print(f"  {metric:<4} measured {mine_text:>12}   reported {theirs_text}")


def markdown_table() -> str:
    """The README's recipe table: reported figures, and measured ones where a result file exists."""
    lines = ["| recipe | reported | source | measured |", "| --- | --- | --- | --- |"]
    for name, rep in RECIPES.items():
        figures = ", ".join(f"{k.upper()} {v:g}" for k, v in rep.figures.items())
        lines.append(f"| `configs/{name}.yaml` | {figures} | {rep.source} | not yet run |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, nargs="?", help="a configs/*_cifar10.yaml recipe")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproduce", help="run folders and results")
    parser.add_argument("--steps", type=int, help="override train.steps (smoke runs)")
    parser.add_argument("--num-samples", type=int, help="generated samples (default: the protocol's)")
    parser.add_argument("--real-samples", type=int, help="real samples of the reference statistics")
    parser.add_argument("--inception-weights", help="the FID Inception weights file (pt_inception-2015-12-05)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="more config overrides, e.g. data.root=/datasets (repeatable)")
    parser.add_argument("--print-only", action="store_true", help="print the commands and the reported figures")
    parser.add_argument("--table", action="store_true", help="print the README's recipe table and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table())
        return
    if args.config is None:
        parser.error("give a recipe config, or --table")
    report = reproduce(args.config, args.out, args.steps, args.num_samples, args.real_samples,
                       args.inception_weights, args.overrides, args.print_only)
    print_comparison(report)


if __name__ == "__main__":
    main()
