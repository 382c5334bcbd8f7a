"""Nothing lost: no command writes over or deletes what it reads, a refused run leaves nothing
behind, --dry-run refuses what the run would, sample streams, and SIGTERM is one line."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import ROOT, one_line_error, tiny_config, write_config
from ganforge.build import build_networks
from ganforge.config import parse_config
from ganforge.data import DataInfo
from ganforge.generation import NoiseStream, class_labels, generate, sample_noise, seeded_global_rng
from ganforge.generation.drawing import LoadedGenerator, sample_batches
from ganforge.metrics.inception import FIDInception

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_run_v1"  # a run at step 3 of 6


def hashes(*roots: Path, skip: Path | None = None) -> dict[str, str]:
    """SHA-256 of every file under `roots` (or of the root file itself), but those under `skip`."""
    found = {}
    for root in roots:
        for p in [root] if root.is_file() else sorted(root.rglob("*")):
            if p.is_file() and (skip is None or skip not in p.parents):
                found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def write_images(folder: Path, n: int, size: int = 16) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{i}.png" for i in range(n)]
    for p in paths:
        Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")).save(p)
    return paths


@pytest.fixture
def world(tmp_path):
    """A user's folder: a run (the fixture's), its config, an image folder, an init-able checkpoint."""
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    # The fixture's DCGAN has the biases it had before issue 29: an init-able config asks for them.
    nets = {net: {**tiny_config(tmp_path)[net], "bias": True} for net in ("generator", "discriminator")}
    config = write_config(tmp_path, tiny_config(tmp_path / "new", **nets), "tiny.yaml")
    images = write_images(tmp_path / "photos", 4)
    return tmp_path, run, config, images


# -- train --overwrite: everything read before anything is deleted -------------------------------


def test_overwrite_with_init_from_the_same_folder_reads_the_weights_first(cli, world):
    tmp, run, config, _ = world
    before = hashes(run)
    # A refused variant first: its shapes do not fit, and the run it names is left byte for byte.
    refused = cli("train", str(config), "--init", str(run), "--overwrite", "--set", f"output.dir={run}",
                  "--set", "generator.base_width=16", "-q")
    one_line_error(refused, 2, "init.checkpoint: G parameter net.0.weight has shape")
    assert hashes(run) == before
    # The real thing: the weights are read, then the run is replaced by the one that starts from them.
    done = cli("train", str(config), "--init", str(run), "--overwrite", "--set", f"output.dir={run}", "-q")
    assert done.exit_code == 0, done.stderr
    assert (run / "checkpoints" / "step-00000006.pt").is_file()
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["init"]["checkpoint"] == str(run) and stored["train"]["steps"] == 6


def test_overwrite_refuses_data_that_lies_in_the_run_folder(cli, world):
    tmp, run, config, _ = world
    write_images(run / "mine", 10)
    before = hashes(run)
    result = cli("train", str(config), "--overwrite", "--set", f"output.dir={run}", "--set", "data.kind=image_folder",
                 "--set", f"data.path={run / 'mine'}", "--set", "data.resolution=16", "-q")
    one_line_error(result, 2, f"data.path: {run / 'mine'} lies in output.dir {run}, which --overwrite would empty")
    assert hashes(run) == before


def test_resume_with_overwrite_is_refused_and_the_run_kept(cli, world):
    _, run, _, _ = world
    before = hashes(run)
    one_line_error(cli("train", "--resume", str(run), "--overwrite"), 2, "--overwrite starts a run over and --resume")
    one_line_error(cli("train", "--resume", str(run), "--set", "generator.base_width=16"), 2, "cannot change")
    assert hashes(run) == before


# -- --dry-run refuses what the run refuses, and a refused run leaves nothing -------------------


def _foreign(tmp: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, tmp / "foreign.pt")
    return tmp / "foreign.pt"


def _damaged(tmp: Path, run: Path) -> Path:
    copy = Path(shutil.copytree(run, tmp / "damaged"))
    latest = copy / "checkpoints" / "step-00000003.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[:2000] + bytes(100) + data[2100:])  # still a zip; its checksum fails
    return copy


def _no_images(tmp: Path, run: Path) -> Path:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "a.txt").write_text("not an image")
    return tmp / "notes"


# The refusal cases of tests/test_finetune.py and tests/test_data.py, as a user types them:
# (id, arguments after the config (RUN and TMP filled in), what the one error line says).
REFUSALS = [
    ("shape mismatch", ["--init", "{run}", "--set", "generator.base_width=16"],
     "init.checkpoint: G parameter net.0.weight has shape (8, 16, 4, 4) in the checkpoint"),
    ("other architecture", ["--init", "{run}", "--set", "data.resolution=32"],
     "init.checkpoint: G does not match this config's architecture"),
    ("init missing", ["--init", "{tmp}/nothing"], "init.checkpoint: no such checkpoint or run folder"),
    ("init damaged", ["--init", "{damaged}"], "SHA-256 does not match"),
    ("foreign .pt", ["--init", "{foreign}"], "init.checkpoint: "),
    ("freeze too deep", ["--init", "{run}", "--set", "init.freeze_d_layers=9"],
     "init.freeze_d_layers: 9 is more than the 2 blocks"),
    ("freeze without init", ["--set", "init.freeze_d_layers=3"], "init.freeze_d_layers: 3 is more than the 2 blocks"),
    ("unknown network", ["--init", "{run}", "--set", "init.load=[G, E]"], "init.load"),
    ("batch above the data", ["--set", "train.batch_size=1800"],
     "train.batch_size=1800 is larger than the data set (1797 samples)"),
    ("batch above the vectors", ["{vectors}", "--set", "data.num_samples=10", "--set", "train.batch_size=16"],
     "train.batch_size=16 is larger than the data set (10 samples)"),
    ("batch above the folder", ["--set", "data={kind: image_folder, path: {photos}, resolution: 16}",
                                "--set", "train.batch_size=8"], "train.batch_size=8 is larger than the data set (4"),
    ("folder missing", ["--set", "data={kind: image_folder, path: {tmp}/gone}"], "data.path: no such folder"),
    ("folder of no images", ["--set", "data={kind: image_folder, path: {notes}}"], "holds no images"),
    ("mnist missing", ["--set", "data={kind: mnist, root: {tmp}/nothing}"], "data: mnist not found"),
]


@pytest.mark.parametrize("args,fragment", [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_dry_run_refuses_what_the_run_refuses_and_the_refused_run_leaves_nothing(cli, world, args, fragment):
    tmp, run, config, images = world
    names = {"run": run, "tmp": tmp, "photos": images[0].parent, "damaged": None, "foreign": None, "notes": None}
    text = " ".join(args)
    names["damaged"] = _damaged(tmp, run) if "{damaged}" in text else None
    names["foreign"] = _foreign(tmp) if "{foreign}" in text else None
    names["notes"] = _no_images(tmp, run) if "{notes}" in text else None
    if args[0] == "{vectors}":  # the 2D data of tests/test_data.py
        config = write_config(tmp, tiny_config(tmp / "new", data={"kind": "gaussian_ring"},
                                               generator={"kind": "mlp", "width": 8},
                                               discriminator={"kind": "mlp", "width": 8}), "vectors.yaml")
        args = args[1:]
    args = [_fill(a, names) for a in args]
    before = hashes(tmp)
    dry = one_line_error(cli("train", str(config), "--dry-run", *args), 2, fragment)
    real = one_line_error(cli("train", str(config), "-q", *args), 2, fragment)
    assert dry == real  # the same line: --dry-run knows every refusal that the run meets at its start
    assert not (tmp / "new").exists()  # refused before its folder was made
    assert hashes(tmp) == before  # and every input as it was


def _fill(arg: str, names: dict) -> str:
    for key, value in names.items():
        if value is not None:
            arg = arg.replace("{" + key + "}", str(value))
    return arg


def test_dry_run_of_a_good_config_names_the_data_size_and_writes_nothing(cli, world):
    tmp, run, config, _ = world
    before = hashes(tmp)
    result = cli("train", str(config), "--init", str(run), "--set", "init.freeze_d_layers=2", "--dry-run")
    assert result.exit_code == 0 and "1797 samples" in result.stdout and "nothing was written" in result.stdout
    assert hashes(tmp) == before and not (tmp / "new").exists()


def test_a_run_refused_at_its_first_batch_is_removed_and_the_corrected_command_runs(cli, world):
    tmp, _, config, _ = world
    broken = tmp / "broken"
    broken.mkdir()
    for i in range(10):
        (broken / f"{i}.png").write_bytes(b"")  # zero bytes: no image decodes
    bad = ["--set", f"data={{kind: image_folder, path: {broken}, resolution: 16, num_workers: 0, "
                    "on_bad_image: error}"]
    one_line_error(cli("train", str(config), "-q", *bad), 2, "cannot read image")
    assert not (tmp / "new").exists()  # made for the run, removed with it
    (tmp / "mine").mkdir()  # a folder the user made is kept, as empty as it was
    one_line_error(cli("train", str(config), "-q", "--set", f"output.dir={tmp / 'mine'}", *bad), 2)
    assert list((tmp / "mine").iterdir()) == []
    # The corrected command, as typed: no "already holds a run" for what the refusal left.
    assert cli("train", str(config), "-q").exit_code == 0


def test_what_a_killed_start_left_is_replaced_and_a_run_without_checkpoint_is_not_sent_to_resume(cli, world):
    tmp, _, config, _ = world
    # A start killed (SIGKILL) before its first step: config, empty folders, a dead process's lock.
    leftover = tmp / "new"
    (leftover / "samples").mkdir(parents=True)
    (leftover / "checkpoints").mkdir()
    (leftover / "config.yaml").write_text((FIXTURE / "config.yaml").read_text())
    (leftover / ".lock").write_text(f'{{"pid": 999999999, "host": "{os.uname().nodename}"}}')
    assert cli("train", str(config), "-q").exit_code == 0
    # A run that logged but stopped before its first checkpoint: kept, and nothing says --resume.
    stopped = tmp / "stopped"
    shutil.copytree(leftover, stopped)
    shutil.rmtree(stopped / "checkpoints")
    (stopped / "checkpoints").mkdir()
    line = one_line_error(cli("train", str(config), "--set", f"output.dir={stopped}"), 2,
                          "stopped before its first checkpoint", "--overwrite")
    assert "--resume" not in line and (stopped / "log.jsonl").is_file()


# -- no --out over an input ---------------------------------------------------------------------


def test_project_refuses_to_write_over_its_target(cli, world):
    tmp, run, _, images = world
    target = images[0].parent / "target.png"
    shutil.copyfile(images[0], target)
    before = hashes(tmp)
    one_line_error(cli("project", str(run), "--target", str(target), "--out", str(target.parent), "--steps", "2",
                       "-q"), 2, f"--out {target.parent / 'target.png'} would overwrite {target}")
    assert hashes(tmp) == before


def test_outputs_that_are_inputs_by_another_name_are_refused(cli, world):
    tmp, run, _, images = world
    ckpt = run / "checkpoints" / "step-00000003.pt"
    (tmp / "alias.png").symlink_to(ckpt)  # a link: the same file by another name
    (tmp / "data.yaml").write_text("data: {kind: digits, resolution: 16}\n")
    before = hashes(tmp)
    cases = [
        (["sample", str(run), "--grid", "--out", str(tmp / "alias.png"), "-q"], "alias.png would overwrite"),
        (["export", str(run), "--format", "torchscript", "--out", str(ckpt)], "which this command reads"),
        (["export", str(run), "--format", "onnx", "--out", str(run / "checkpoints" / "index.json")], "index.json"),
        (["interpolate", str(run), "--out", str(tmp / "alias.png"), "-q"], "alias.png would overwrite"),
        (["eval", str(run), "--out", str(ckpt), "-q"], "which this command reads"),
        (["report", str(run), "--out", str(run / "log.jsonl")], "log.jsonl would overwrite"),
        (["report", str(run), "--out", str(run / "samples" / "step-00000003.png")], "step-00000003.png"),
        (["eval-images", str(images[0].parent), "--reference", str(images[0].parent), "--out", str(images[1]), "-q"],
         "1.png would overwrite"),
        (["eval-images", str(images[0].parent), "--data", str(tmp / "data.yaml"), "--out", str(tmp / "data.yaml"),
          "-q"], "data.yaml would overwrite"),
    ]
    for args, fragment in cases:
        one_line_error(cli(*args), 2, fragment)
    assert hashes(tmp) == before


# -- sample streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("num,dim", [(1, 3), (5, 3), (37, 8), (257, 7), (3, 100)])
def test_noise_drawn_a_batch_at_a_time_equals_the_one_draw(num, dim):
    whole = sample_noise(num, dim, 11, torch.device("cpu"))
    for batch in (1, 2, 3, 16, 50):
        stream = NoiseStream(num, dim, 11)
        parts = [stream.take(min(batch, num - s)) for s in range(0, num, batch)]
        assert torch.equal(torch.cat(parts), whole), batch


def test_streamed_samples_equal_the_one_piece_draw_with_classes_and_noise_maps():
    # stylegan2 draws its per-pixel noise from the global generator inside the forward: the
    # stream must resume that generator between batches, whatever runs between them.
    raw = {"data": {"kind": "digits", "resolution": 8}, "generator": {"kind": "stylegan2", "latent_dim": 8,
           "w_dim": 8, "channel_base": 64, "channel_max": 8, "mapping_layers": 1, "conditional": True},
           "discriminator": {"kind": "stylegan2", "channel_base": 64, "channel_max": 8}}
    info = DataInfo("digits", (1, 8, 8), 10)
    torch.manual_seed(0)
    G = build_networks(parse_config(raw), info)[0].eval().requires_grad_(False)
    loaded = LoadedGenerator(G, info, 0, Path("x.pt"), raw)
    num, batch = 23, 5
    with seeded_global_rng(4, torch.device("cpu")):
        whole = generate(G, sample_noise(num, 8, 4, torch.device("cpu")), class_labels(num, 10, None,
                         torch.device("cpu")), batch)
    parts = []
    for b in sample_batches(loaded, num, seed=4, batch_size=batch):
        torch.randn(100)  # the caller's draws between batches change nothing
        parts.append(b)
    assert torch.equal(torch.cat(parts), whole)


def test_sample_refuses_a_num_that_cannot_fit_before_writing(cli, world, monkeypatch):
    tmp, run, _, _ = world
    out = tmp / "many"
    # 2e9 files take a block each at least: refused before a single draw.
    one_line_error(cli("sample", str(run), "--num", "2000000000", "--out", str(out), "-q"), 2,
                   "--num 2000000000: the samples need about", "free; lower --num")
    one_line_error(cli("sample", str(run), "--num", "2000000000", "--grid", "--out", str(tmp / "g.png")), 2,
                   "--grid of 2000000000 samples: needs about")
    # A disk with 100 KiB left: the first batch, encoded, shows that 600 samples do not fit.
    real = os.statvfs

    def small_disk(path):
        s = real(path)
        return os.statvfs_result((s.f_bsize, 1024, 10_000, 100, 100, s.f_files, s.f_ffree, s.f_favail, s.f_flag,
                                  s.f_namemax))
    monkeypatch.setattr(os, "statvfs", small_disk)
    one_line_error(cli("sample", str(run), "--num", "600", "--out", str(out), "-q"), 2,
                   "--num 600: the samples need about", "100.0 KiB free")
    assert not out.exists() and not (tmp / "g.png").exists()
    monkeypatch.undo()
    result = cli("sample", str(run), "--num", "600", "--batch-size", "256", "--out", str(out), "-q")
    assert result.exit_code == 0 and len(list(out.iterdir())) == 600


def test_sigterm_is_one_line_and_exit_143(tmp_path):
    out = tmp_path / "samples"
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "sample", str(FIXTURE), "--num", "10000000",
                             "--batch-size", "16", "--out", str(out), "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and any(out.iterdir())):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and stderr.strip().splitlines()[-1] == "terminated (SIGTERM)", stderr
    assert "Traceback" not in stderr


# -- runs -----------------------------------------------------------------------------------------


def test_runs_skips_another_tools_folders(cli, world):
    tmp, run, _, _ = world
    (tmp / "hydra").mkdir()
    (tmp / "hydra" / "config.yaml").write_text("model: resnet\nlr: 0.1\n")
    (tmp / "odd" / "checkpoints").mkdir(parents=True)
    (tmp / "odd" / "checkpoints" / "index.json").write_text("{}")
    result = cli("runs", str(tmp), "--json")
    assert result.exit_code == 0
    assert [r["name"] for r in yaml.safe_load(result.stdout)] == ["run"]
    assert cli("runs", str(tmp / "hydra")).stdout.strip() == f"no runs in {tmp / 'hydra'}"


# -- the sweep: every command, its inputs hashed before and after ---------------------------------


def test_every_command_leaves_its_inputs_as_they_were(cli, world):
    tmp, run, config, images = world
    out = tmp / "out"
    bad = tmp / "bad.yaml"
    bad.write_text("data: {kind: digits\n")
    target = shutil.copyfile(images[0], tmp / "target.png")
    # A 2D run, for `eval` without the Inception; stand-in Inception weights for `eval-images`.
    ring = tmp / "ring"
    ring_config = write_config(tmp, tiny_config(ring, data={"kind": "gaussian_ring", "num_samples": 200},
                                                generator={"kind": "mlp", "width": 8},
                                                discriminator={"kind": "mlp", "width": 8}), "ring.yaml")
    assert cli("train", str(ring_config), "-q").exit_code == 0
    torch.manual_seed(0)
    weights = tmp / "inception.pth"
    torch.save(FIDInception().net.state_dict(), weights)
    # Another tool's network (a StyleGAN2-ADA pickle), for `import`.
    network = shutil.copyfile(FIXTURE.parent / "reference" / "stylegan2_ada" / "orig-32.pkl", tmp / "network.pkl")
    # (arguments, exit code): successes first, then refusals; outputs go to out/, which is not hashed.
    cases = [
        (["eval", str(ring), "--metrics", "modes", "--num", "100", "--out", str(out / "e.json"), "-q"], 0),
        (["eval-images", str(images[0].parent), "--reference", str(images[0].parent), "--inception-weights",
          str(weights), "--device", "cpu", "--num-workers", "0", "--out", str(out / "f.json"), "-q"], 0),
        (["train", str(config), "--set", f"output.dir={out / 'run'}", "-q"], 0),
        (["train", str(config), "--dry-run"], 0),
        (["train", "--resume", str(run), "--dry-run"], 0),
        (["sample", str(run), "--num", "3", "--out", str(out / "s"), "-q"], 0),
        (["sample", str(run), "--num", "4", "--grid", "--out", str(out / "g.png"), "-q"], 0),
        (["interpolate", str(run), "--out", str(out / "i.png"), "--num-frames", "2", "--rows", "1", "-q"], 0),
        (["export", str(run), "--format", "torchscript", "--out", str(out / "g.pt")], 0),
        (["project", str(run), "--target", str(images[0]), "--out", str(out / "p"), "--steps", "2", "-q"], 0),
        (["report", str(run), "--out", str(out / "r.html")], 0),
        (["info", str(run)], 0),
        (["runs", str(tmp)], 0),
        (["config", str(config)], 0),
        (["dataset", str(images[0].parent), "--out", str(out / "d.zip"), "-r", "8", "--workers", "0", "-q"], 0),
        (["import", str(network), "--out", str(out / "imported")], 0),
        (["train", str(config), "--set", f"output.dir={run}"], 2),
        (["train", str(config), "--init", str(run), "--overwrite", "--set", f"output.dir={run}",
          "--set", "init.freeze_d_layers=9"], 2),
        (["train", str(bad)], 2),
        (["sample", str(run), "--num", "2000000000", "--out", str(out / "x"), "-q"], 2),
        (["sample", str(run), "--class", "11", "--out", str(out / "x"), "-q"], 2),
        (["interpolate", str(run), "--out", str(out / "i.txt")], 2),
        (["export", str(run), "--format", "keras", "--out", str(out / "k")], 2),
        (["export", str(run), "--format", "torchscript", "--out", str(run / "checkpoints" / "step-00000003.pt")], 2),
        (["eval", str(run), "--metrics", "nonsense", "-q"], 2),
        (["eval-images", str(images[0].parent), "--reference", str(images[0].parent), "--out", str(images[0])], 2),
        (["project", str(run), "--target", str(config), "--out", str(out / "p2"), "-q"], 2),
        (["project", str(run), "--target", str(target), "--out", str(target.parent), "-q"], 2),
        (["report", str(run), "--out", str(run / "config.yaml")], 2),
        (["info", str(bad)], 2),
        (["runs", str(tmp / "gone")], 2),
        (["config", str(bad)], 2),
        (["dataset", str(images[0].parent), "--out", str(out / "d2.zip"), "-r", "8", "--channels", "2", "-q"], 2),
        (["import", str(network), "--out", str(run)], 2),
        (["import", str(config), "--out", str(out / "imported2")], 2),
    ]
    commands = {args[0] for args, _ in cases}
    assert commands == {"train", "sample", "interpolate", "export", "project", "report", "info", "runs", "config",
                        "dataset", "eval", "eval-images", "import"}
    for args, code in cases:
        before = hashes(tmp, skip=out)
        result = cli(*args)
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        if code:
            one_line_error(result, code)
        assert hashes(tmp, skip=out) == before, args

