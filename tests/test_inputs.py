"""Every input either works or is refused in one line.

The registry sweep: every generator x discriminator x data kind (a stand-in for each data set,
written here in its on-disk format) either validates and trains one step, or is refused with a
one-line ConfigError naming the key; the same for every regularizer and every eval metric
against every data kind (validated only). Then the files a command reads that are not what
they should be: a checkpoint or image given as a config, damaged indexes and logs.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import CONFIGS, assert_one_line_error, run_cli, tiny_config, write_config
from ganforge.build import build, validate
from ganforge.config import Component, config_to_dict, load_config, parse_config
from ganforge.errors import CheckpointError, ConfigError
from ganforge.registry import DATASETS, DISCRIMINATORS, GENERATORS, METRICS, REGULARIZERS, Registry

# -- stand-ins for every data kind ------------------------------------------------------------

RES = 16  # every image stand-in: 16x16, the smallest resolution every image architecture takes


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="png")
    return buf.getvalue()


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def _mnist(root: Path, folder: str) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(_idx(rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)))
    with gzip.open(raw / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx((np.arange(12) % 10).astype(np.uint8)))


def _cifar(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        batch = {b"labels": [j % 10 for j in range(6)], b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8)}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)


def _folder(root: Path) -> None:
    # One flat folder: unlabelled colour images (the labelled cases are digits, MNIST, CIFAR-10, zip).
    root.mkdir(parents=True)
    for i in range(8):
        Image.new("RGB", (20, 12), (30 * i, 200, 30)).save(root / f"{i}.png")


def _zip(path: Path) -> None:
    names = [f"00000/img{i:08d}.png" for i in range(8)]
    with zipfile.ZipFile(path, "w") as z:
        for i, name in enumerate(names):
            z.writestr(name, _png((RES, RES), (10 * i, 0, 200)))
        z.writestr("dataset.json", json.dumps({"labels": [[n, i % 2] for i, n in enumerate(names)]}))


def _hf(root: Path) -> bool:
    try:
        import datasets
    except ImportError:
        return False
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    table = datasets.Dataset.from_dict({"image": [Image.new("RGB", (RES, RES), (40 * i, 9, 9)) for i in range(8)],
                                        "label": [i % 2 for i in range(8)]}, features=features)
    table.save_to_disk(str(root))
    return True


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, dict]:
    """A `data:` section for every registered data kind; a kind without a stand-in fails the sweep."""
    root = tmp_path_factory.mktemp("data")
    _mnist(root, "MNIST")
    _mnist(root, "FashionMNIST")
    _cifar(root)
    _folder(root / "folder")
    _zip(root / "images.zip")
    image = {"resolution": RES}
    loader = {"num_workers": 0, "in_memory": True}
    sections = {
        "gaussian_grid": {"num_samples": 64},
        "gaussian_ring": {"num_samples": 64},
        "digits": image,
        "mnist": {"root": str(root), **image},
        "fashion_mnist": {"root": str(root), **image},
        "cifar10": {"root": str(root), **image},
        "image_folder": {"path": str(root / "folder"), **image, **loader},
        "zip": {"path": str(root / "images.zip"), **image, **loader},
    }
    if _hf(root / "hf"):
        sections["hf"] = {"path": str(root / "hf"), **image, **loader}
    return {kind: {"kind": kind, **params} for kind, params in sections.items()}


def data_section(stand_ins: dict[str, dict], kind: str) -> dict:
    if kind == "hf" and kind not in stand_ins:
        pytest.skip("data kind hf needs the optional Hugging Face datasets package (ganforge[hf])")
    assert kind in stand_ins, f"data kind {kind!r} has no stand-in: add one to tests/test_inputs.py"
    return stand_ins[kind]


def small(registry: Registry, kind: str) -> dict:
    """The config section of `kind` with the tiny settings it declares (a step takes milliseconds)."""
    return {"kind": kind, **registry.tiny(kind)}


def raw_config(data: dict, out: Path, g: str = "mlp", d: str = "mlp", **sections) -> dict:
    return {"data": data, "generator": small(GENERATORS, g), "discriminator": small(DISCRIMINATORS, d),
            "train": {"steps": 1, "batch_size": 4, "device": "cpu", "ema": {"decay": 0.5, "rampup": None}},
            "log": {"every": 1}, "samples": {"every": 1, "num": 4}, "checkpoint": {"every": 1, "keep": 1},
            "output": {"dir": str(out)}, **sections}


def one_line(result, code: int, *fragments: str) -> None:
    """conftest's assert_one_line_error for an in-process CliRunner result."""
    assert_one_line_error(SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr),
                          code, *fragments)


def refused_in_one_line(error: ConfigError, *keys: str) -> None:
    message = str(error)
    assert "\n" not in message and message.strip() == message, message
    assert any(k in message for k in keys), (keys, message)


def validate_or_refuse(raw: dict, *keys: str):
    """The validated config and data description, or None when refused in one line naming one of `keys`."""
    cfg = parse_config(raw)  # the sweep's own settings always parse
    try:
        return cfg, validate(cfg)
    except ConfigError as e:
        refused_in_one_line(e, *keys)
        return None


# -- the sweep --------------------------------------------------------------------------------

# Data kinds that describe samples without holding any (`shape`: the data section of a run that
# `ganforge import` wrote): nothing trains on them; they have their own test below.
NO_SAMPLES = ("shape",)
TRAINABLE = [kind for kind in DATASETS.names() if kind not in NO_SAMPLES]

# Pairs trained for one step on every data kind; on digits and the image folder (1 and 3
# channels, labelled and not) every pair that validates trains. The rest are validated: a
# refusal or a build is decided there, and the training step is the same code for every data kind.
TRAIN_ALL_PAIRS_ON = ("digits", "image_folder", "gaussian_grid")


@pytest.mark.parametrize("data_kind", TRAINABLE)
def test_every_generator_discriminator_pair_trains_or_is_refused(stand_ins, data_kind, tmp_path):
    from ganforge.run import RunDir
    from ganforge.training.loop import train

    data = data_section(stand_ins, data_kind)
    trained, refused, broken = [], [], []
    for g in GENERATORS.names():
        for d in DISCRIMINATORS.names():
            valid = validate_or_refuse(raw_config(data, tmp_path / f"{g}-{d}", g, d), "generator", "discriminator")
            if valid is None:
                refused.append((g, d))
                continue
            if data_kind not in TRAIN_ALL_PAIRS_ON and g != d:
                continue
            run = RunDir(tmp_path / f"{g}-{d}")
            run.create()
            try:
                result = train(valid[0], config_to_dict(valid[0]), run, progress=False)
                assert result.step == 1 and not result.interrupted
                trained.append((g, d))
            except Exception as e:  # validated, so it must train: collect every pair that does not
                broken.append(f"G {g} x D {d}: {type(e).__name__}: {e}")
            finally:
                run.release_lock()
    assert not broken, f"{data_kind}: validated but failed to train:\n" + "\n".join(broken)
    # Each kind of data has architectures for it: same-named pairs are meant to work together.
    assert any(g == d for g, d in trained), (data_kind, refused)


@pytest.mark.parametrize("data_kind", TRAINABLE)
def test_every_regularizer_validates_or_is_refused(stand_ins, data_kind, tmp_path):
    data = data_section(stand_ins, data_kind)
    g = d = "dcgan" if is_image(data) else "mlp"
    accepted = set()
    for kind in REGULARIZERS.names():
        raw = raw_config(data, tmp_path, g, d, regularizers=[{"kind": kind}])
        if validate_or_refuse(raw, "regularizers.0") is not None:
            accepted.add(kind)
    assert {"r1", "gradient_penalty", "spectral_norm"} <= accepted  # the staples work on any data
    assert "path_length" not in accepted  # stylegan2's generator only
    assert ("diffaugment" in accepted) == ("consistency" in accepted) == is_image(data)  # image augmentations


@pytest.mark.parametrize("data_kind", TRAINABLE)
def test_every_metric_validates_or_is_refused(stand_ins, data_kind, tmp_path):
    data = data_section(stand_ins, data_kind)
    g = d = "dcgan" if is_image(data) else "mlp"
    accepted = set()
    for metric in METRICS.names():
        raw = raw_config(data, tmp_path, g, d, eval={"metrics": [metric], "num_samples": 100})
        if validate_or_refuse(raw, "eval.metrics") is not None:
            accepted.add(metric)
    assert ("fid" in accepted) == is_image(data) and ("modes" in accepted) != is_image(data)


def test_a_data_kind_without_samples_rebuilds_networks_and_refuses_training(tmp_path):
    from ganforge.build import build_data, build_networks
    from ganforge.errors import DataError

    data = {"kind": "shape", "channels": 1, "resolution": RES, "num_classes": 10, "source": "ffhq.pkl"}
    cfg = parse_config(raw_config(data, tmp_path, "stylegan2", "stylegan2"))
    info = build_data(cfg).info
    G, D, _ = build_networks(cfg, info)  # what sample, export and project need
    assert G(torch.randn(2, G.latent_dim)).shape == (2, 1, RES, RES)
    with pytest.raises(DataError, match=r"no data set, only the shape of its samples \(1x16x16, ffhq.pkl\)"):
        validate(cfg)
    with pytest.raises(DataError, match="--data CONFIG"):
        build_data(cfg).batches(4, 0, torch.device("cpu"))


def is_image(data: dict) -> bool:
    from ganforge.build import build_data

    return build_data(parse_config(raw_config(data, Path("unused")))).info.is_image


def test_image_architecture_on_vector_data_names_both_keys(cli, tmp_path):
    raw = raw_config({"kind": "gaussian_grid"}, tmp_path / "out", "dcgan", "mlp")
    result = cli("train", str(write_config(tmp_path, raw)), "--dry-run")
    one_line(result, 2, "generator", "dcgan", "gaussian_grid")
    assert "data" in result.stderr and not (tmp_path / "out").exists()


# -- the factory: a builder that cannot take the data, or a constructor that fails ------------------


def test_builder_needing_what_the_data_does_not_give_is_a_config_error():
    reg = Registry("generator", injected=("resolution", "channels", "data_dim", "num_classes"))

    @reg.register("conv")
    def conv(channels: int, resolution: int, width: int = 4) -> tuple[int, int, int]:
        """A stand-in image architecture that declares nothing."""
        return channels, resolution, width

    with pytest.raises(ConfigError) as info:
        build(reg, Component("conv", {"width": 8}), "generator", provider="data (gaussian_grid)", data_dim=2,
              num_classes=0)
    assert str(info.value) == ("generator (conv): needs channels, resolution from image data, but data "
                               "(gaussian_grid) gives data_dim; change generator.kind or data.kind")
    assert build(reg, Component("conv", {"width": 8}), "generator", channels=1, resolution=16) == (1, 16, 8)


@pytest.mark.parametrize(("error", "fragment"), [
    (TypeError("unsupported operand type(s) for *: 'int' and 'NoneType'"), "unsupported operand"),
    (ValueError("width must divide\n the resolution"), "width must divide the resolution"),
    (RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried 9 PB"), "more memory"),
    (OverflowError("Python int too large"), "more memory"),
])
def test_constructor_failures_become_one_config_line(error, fragment):
    reg = Registry("discriminator")

    @reg.register("fails")
    def fails(width: int = 4) -> None:
        """Raises."""
        raise error

    with pytest.raises(ConfigError) as info:
        build(reg, Component("fails", {"width": 4}), "discriminator")
    refused_in_one_line(info.value, "discriminator (fails)")
    assert fragment in str(info.value)


def test_constructor_bug_that_is_not_about_the_parameters_keeps_its_traceback():
    reg = Registry("loss")

    @reg.register("buggy")
    def buggy() -> None:
        """Raises a plain RuntimeError."""
        raise RuntimeError("expected scalar type Float but found Half")

    with pytest.raises(RuntimeError, match="scalar type"):
        build(reg, Component("buggy"), "loss")


def test_sizes_too_large_for_memory_are_one_line(cli, tmp_path):
    raw = raw_config({"kind": "gaussian_grid", "num_samples": 64}, tmp_path / "out")
    result = cli("train", str(write_config(tmp_path, raw)), "--dry-run", "--set", f"generator.width={2**50}")
    # Refused by the size check before anything is allocated (ganforge/footprint.py).
    one_line(result, 2, f"generator.width={2**50} (default 256): training G and D needs more than", "but there are")


# -- files that are not what they should be ---------------------------------------------------------


def test_checkpoint_given_as_config_is_one_line(cli, tmp_path):
    ckpt = tmp_path / "step-00000006.pt"
    torch.save({"G": torch.randn(64, 64)}, ckpt)
    result = cli("train", str(ckpt))
    one_line(result, 2, str(ckpt), "not a text file", "expected a YAML config file")
    result = cli("config", str(ckpt))
    one_line(result, 2, str(ckpt), "expected a YAML config file")


def test_image_or_binary_as_base_config_names_the_base_file(cli, tmp_path):
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "red.png")
    path = write_config(tmp_path, {"base": "red.png", **tiny_config(tmp_path / "out")})
    result = cli("train", str(path), "--dry-run")
    one_line(result, 2, str(tmp_path / "red.png"), "not a text file")


@pytest.mark.parametrize("text", [
    b"train: {steps: 3}\n\xff\xfe\x00garbage",  # a text file with binary junk appended
    b"\x00\x00\x00",  # NUL bytes are UTF-8 but no YAML
    b"a: &x [*x]\n",  # an alias inside itself: would recurse forever
    b"train: {seed: 2001-02-30}\n",  # PyYAML raises ValueError for impossible dates
    b"train: {steps: !!int 1e3}\n",
    b"x: " + b"[" * 1100 + b"\n",  # deeper than Python's recursion limit
    b"base: 5\n",
    b"base: ''\n",
    b"- just\n- a list\n",
])
def test_undecodable_or_odd_yaml_is_one_line(cli, tmp_path, text):
    path = tmp_path / "odd.yaml"
    path.write_bytes(text)
    one_line(cli("train", str(path), "--dry-run"), 2, "odd.yaml")


def test_aliases_multiplying_into_millions_of_values_are_refused(tmp_path):
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="laughs.yaml.*more than 100000 values"):
        load_config(path)


@pytest.mark.parametrize(("override", "fragment"), [
    ("optim.g.lr=.inf", "finite"),
    ("optim.g.lr=.nan", "finite"),
    ("train.ema.decay=nan", "finite"),
    (f"optim.g.lr={'9' * 400}", "finite"),
    (f"train.steps={2**70}", "too large"),
    ("train.seed=-1", "train.seed"),
    ("generator.kind=[dcgan]", "expected the name of a generator"),
    ("generator={kind: {a: 1}}", "generator.kind"),
    ("train.compile=fastest", "one of default|reduce-overhead|max-autotune|max-autotune-no-cudagraphs"),
    ("train.max_minutes=0", "must be > 0"),
    ("init.freeze_d_layers=-1", "must be >= 0"),
    ("init.load=[G, H]", "init.load.1"),
    ("init={checkpoint: x.pt, load: []}", "init: load: name at least one"),
])
def test_bad_values_are_one_line(cli, tmp_path, override, fragment):
    path = write_config(tmp_path, tiny_config(tmp_path / "out"))
    one_line(cli("train", str(path), "--dry-run", "--set", override), 2, fragment)


def test_channels_must_be_a_number_not_true(tmp_path):
    raw = raw_config({"kind": "image_folder", "path": str(tmp_path), "channels": True}, tmp_path)
    with pytest.raises(ConfigError, match="data.channels: must be one of 1, 3, got True"):
        parse_config(raw)


def test_compile_takes_false_true_or_a_mode(tmp_path):
    modes = {False: None, True: "default", "max-autotune": "max-autotune", "reduce-overhead": "reduce-overhead"}
    for value, mode in modes.items():
        cfg, resolved = load_config(write_config(tmp_path, tiny_config(tmp_path, train={"compile": value})))
        assert cfg.train.compile_mode == mode and resolved["train"]["compile"] == value


def test_dry_run_checks_everything_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, tiny_config(tmp_path / "out"))
    result = cli("train", str(path), "--dry-run", "--max-minutes", "5")
    assert result.exit_code == 0, result.output
    assert "valid; dcgan G and dcgan D on digits (1x16x16 images; 1797 samples), 6 steps" in result.output
    assert list(tmp_path.iterdir()) == [path]
    # What the full run would refuse, the dry run refuses: a batch that does not split over processes.
    result = cli("train", str(path), "--dry-run", "--nproc", "3")
    one_line(result, 2, "train.batch_size=8 does not split over 3 processes")


def test_init_checkpoint_must_exist_at_config_time(cli, tmp_path):
    path = write_config(tmp_path, tiny_config(tmp_path / "out"))
    missing = tmp_path / "pretrained.pt"
    one_line(cli("train", str(path), "--init", str(missing), "--dry-run"), 2,
                          "init.checkpoint", str(missing))
    one_line(cli("train", str(path), "--set", f"init.checkpoint={missing}", "--dry-run"), 2,
                          "init.checkpoint")
    one_line(cli("config", str(path), "--set", f"init.checkpoint={missing}"), 2, "init.checkpoint")
    one_line(cli("train", "--resume", str(tmp_path), "--init", str(missing)), 2, "--init", "--resume")
    not_a_checkpoint = write_config(tmp_path, {"a": 1}, "weights.pt")
    one_line(cli("train", str(path), "--init", str(not_a_checkpoint), "--dry-run"), 2, "init.checkpoint",
             "not a ganforge checkpoint")
    # A name that YAML would read as a number or a boolean stays a file name.
    cfg, _ = load_config(path, flags=[("init.checkpoint", "123", "--init 123")])
    assert cfg.init.checkpoint == "123"


def test_a_checkpoint_cut_short_is_named_damaged_not_foreign(cli, tmp_path):
    # A torch file (a zip) cut in half, as an interrupted copy leaves it: it is a checkpoint that
    # broke, not a file of another kind, and the line says so for --init as for sample.
    whole = tmp_path / "whole.pt"
    torch.save({"format": "ganforge-checkpoint", "weights": torch.zeros(4096)}, whole)
    cut = tmp_path / "step-100.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    path = write_config(tmp_path, tiny_config(tmp_path / "out"))
    result = cli("train", str(path), "--init", str(cut), "--dry-run")
    one_line(result, 2, "init.checkpoint", "damaged or truncated")
    assert "not a ganforge checkpoint" not in result.stderr
    result = cli("sample", str(cut), "--out", str(tmp_path / "x"))
    one_line(result, 2, "step-100.pt", "damaged or truncated")
    assert "not a ganforge checkpoint" not in result.stderr and not (tmp_path / "x").exists()


def test_max_minutes_flag_sets_the_budget(tmp_path):
    path = write_config(tmp_path, tiny_config(tmp_path / "out"))
    cfg, resolved = load_config(path, ["train.max_minutes=9"], [("train.max_minutes", 1.5, "--max-minutes 1.5")])
    assert cfg.train.max_minutes == 1.5 and resolved["train"]["max_minutes"] == 1.5
    with pytest.raises(ConfigError, match=r"^--max-minutes -2: train.max_minutes: must be > 0"):
        load_config(path, flags=[("train.max_minutes", -2, "--max-minutes -2")])


def test_time_budget_stops_with_a_checkpoint_and_resumes(cli, tmp_path):
    path = write_config(tmp_path, tiny_config(tmp_path / "run", train={**yaml.safe_load(
        (CONFIGS / "tiny.yaml").read_text())["train"], "steps": 50}))
    result = cli("train", str(path), "-q", "--max-minutes", "0.0001")  # spent after the first step
    assert result.exit_code == 3, result.output
    assert "time budget of 0.0001 min spent: stopped at step" in result.output
    assert f"continue with: ganforge train --resume {tmp_path / 'run'}" in result.output
    assert list((tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    # The budget is per invocation and may change on resume.
    result = cli("train", "--resume", str(tmp_path / "run"), "-q", "--max-minutes", "60")
    assert result.exit_code == 0, result.output
    assert "done: 50 steps" in result.output
    # The finished run is a valid --init for a new one.
    result = cli("train", str(path), "--init", str(tmp_path / "run"), "--set", f"output.dir={tmp_path / 'b'}",
                 "--dry-run")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "x.yaml", "--max-minutes", "soon"], "Invalid value for '--max-minutes'"),
    (["train", "--bogus"], "No such option: --bogus (see ganforge train --help)"),
    (["trian"], "No such command 'trian'"),
    (["sample"], "Missing argument"),
])
def test_usage_mistakes_are_one_line_too(args, fragment):
    assert_one_line_error(run_cli(*args), 2, fragment)  # click's usage box would be several lines


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("ganforge ")


# -- files of a run that are damaged -----------------------------------------------------------------


def test_index_that_is_not_text_is_damaged_not_a_traceback(tmp_path):
    (tmp_path / "index.json").write_bytes(b"\x80\x81 PK\x03\x04")
    with pytest.raises(CheckpointError, match=r"index.json is damaged \(not a text file .*delete it"):
        from ganforge.checkpoint import CheckpointIndex

        CheckpointIndex(tmp_path)
    (tmp_path / "index.json").write_text('{"checkpoints": [{"file": "a.pt", "step": "x"}]}')
    with pytest.raises(CheckpointError, match="index.json is damaged"):
        CheckpointIndex(tmp_path)


def test_log_and_config_with_undecodable_bytes_are_read_around(cli, tmp_path):
    from ganforge.runinfo import read_log, summarize

    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_bytes(b'{"step": 1, "d_loss": 1.0}\n\xff\xfe junk\n{"step": 2, "d_loss": 0.5}\n')
    (run / "config.yaml").write_bytes(b"data: {kind: digits}\n\xff")
    assert [r["step"] for r in read_log(run)] == [1, 2]
    assert summarize(run).step == 2
    result = cli("runs", str(tmp_path))
    assert result.exit_code == 0 and "run" in result.output
