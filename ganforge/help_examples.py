"""Worked examples at the end of each command's --help, kept in one table keyed by command name
(cli.py applies them where it registers the commands). tests/test_help_examples.py parses every
example with its command's own options, so an example cannot drift from the flags."""

from __future__ import annotations

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "train": [
        ("ganforge train configs/quickstart.yaml", "train the 2-minute digits GAN on the CPU"),
        ("ganforge train configs/cifar10.yaml --set log.wandb.mode=offline",
         "override a key: mirror the log into an offline W&B run"),
        ("ganforge train --resume runs/cifar10 --set train.steps=200000", "continue a run, for longer"),
    ],
    "sample": [
        ("ganforge sample runs/quickstart --num 64 --grid --out grid.png", "one grid of 64 samples"),
        ("ganforge sample runs/quickstart --seeds 0-35,100 --out seeds", "seed0000.png ... seed0100.png, one per seed"),
        ("ganforge sample shared/qs --seeds 0-7 --truncation 0.7", "from an exported folder, truncated"),
    ],
    "interpolate": [
        ("ganforge interpolate runs/quickstart --out walk.gif", "a looping animation of 4x4 walks"),
        ("ganforge interpolate runs/quickstart --out walk.mp4 --num-frames 120",
         "an MP4 (needs PyAV, the video extra)"),
        ("ganforge interpolate runs/quickstart --out strip.png --rows 8", "8 walks as rows of a PNG"),
    ],
    "export": [
        ("ganforge export runs/quickstart --format safetensors --out shared/qs",
         "weights, config.json and a model card to share"),
        ("ganforge export runs/quickstart --format onnx --out G.onnx", "run it anywhere ONNX runs"),
        ("ganforge export runs/quickstart --format torchscript --out G.pt --no-ema", "the raw G, as TorchScript"),
    ],
    "eval": [
        ("ganforge eval runs/cifar10 --metrics fid,kid --num 10000", "FID and KID of the latest checkpoint"),
        ("ganforge eval runs/stylegan2_cifar10 --truncation 0.7 --json", "truncated samples; JSON out"),
        ("ganforge eval --images generated/ --reference real/", "score a folder of images"),
    ],
    "info": [
        ("ganforge info runs/quickstart", "step, networks, metrics, versions, where it ran"),
        ("ganforge info runs/quickstart/checkpoints/best.pt --json", "one checkpoint, as JSON"),
    ],
    "runs": [
        ("ganforge runs", "the runs under runs/"),
        ("ganforge runs experiments/ --json", "another folder, as JSON"),
    ],
    "report": [
        ("ganforge report runs/quickstart", "RUN/report.html: curves, samples, metrics, config"),
        ("ganforge report runs/quickstart --out quickstart.html", "somewhere else"),
    ],
    "config": [
        ("ganforge config configs/cifar10.yaml --set train.batch_size=128", "the config as it will run"),
        ("ganforge config --schema > ganforge.schema.json",
         "for editors: name it in a config's yaml-language-server line"),
    ],
    "list": [
        ("ganforge list", "every component, with its parameters"),
        ("ganforge list generator", "the generators alone"),
    ],
    "dataset": [
        ("ganforge dataset photos/ --out photos-64.zip --resolution 64", "a folder of images to a training zip"),
        ("ganforge dataset photos/ --out gray-32.zip --resolution 32 --channels 1", "greyscale, 32 px"),
    ],
    "eval-images": [
        ("ganforge eval-images generated/ --reference real/ --metrics fid,kid", "two folders of images"),
        ("ganforge eval-images generated/ --data configs/cifar10.yaml --json", "against a config's data"),
    ],
    "import": [
        ("ganforge import stylegan2-ffhq-256x256.pkl --out runs/ffhq",
         "a StyleGAN2-ADA pickle as a run folder (its code never runs)"),
        ("ganforge import rosinality-550000.pt --out runs/rosinality", "a rosinality stylegan2-pytorch checkpoint"),
        ("ganforge import weights/ --out runs/biggan --json", "BigGAN-PyTorch's G.pth, D.pth, G_ema.pth; JSON out"),
    ],
    "project": [
        ("ganforge project runs/quickstart --target digit.png --out projection",
         "the latent that redraws digit.png"),
        ("ganforge project runs/sg2 --target cat.png --out cat --lpips vgg.pth", "with the LPIPS distance"),
    ],
}


def epilog(command: str) -> str | None:
    """The examples of `command` as its help's epilog (None where it has none)."""
    examples = EXAMPLES.get(command)
    if not examples:
        return None
    # "\b" keeps click from rewrapping the block; typer's rich help prints it line by line.
    lines = ["Examples:", ""] + [f"  {cmd}\n      {what}" for cmd, what in examples]
    return "\b\n" + "\n".join(lines)


def commands(command: str) -> list[list[str]]:
    """Each example of `command` as arguments (after `ganforge COMMAND`), shell redirections left out."""
    import shlex

    out = []
    for cmd, _ in EXAMPLES.get(command, []):
        words = shlex.split(cmd.split(">")[0])
        assert words[:2] == ["ganforge", command], cmd
        out.append(words[2:])
    return out
