"""Image files as users have them, each kind generated here in its real format with PIL: one
decoding path (ganforge.data.decode) for the loaders, `ganforge dataset` and `project --target`;
the crop modes; data.xflip; streams of files that never decode."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_line_error, tiny_config, write_config
from ganforge.build import build_data
from ganforge.config import parse_config
from ganforge.data import StopWaiting
from ganforge.data.decode import ImageOptions, decode
from ganforge.errors import ConfigError, DataError

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def source(kind: str, **params):
    raw = {"data": {"kind": kind, **params}, "generator": {"kind": "mlp"}, "discriminator": {"kind": "mlp"}}
    return build_data(parse_config(raw))


def pixels(x: torch.Tensor) -> np.ndarray:
    """A [-1, 1] image (C, H, W) -> uint8 (H, W, C)."""
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def decoded(path, **options) -> np.ndarray:
    return decode(path, ImageOptions(**{"resolution": 8, **options})).pixels


def png16_rgb(path: Path, values: np.ndarray) -> None:
    """A 16-bit RGB PNG (PIL cannot write one): signature, IHDR (depth 16, colour type 2), IDAT, IEND."""
    h, w, _ = values.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# -- each kind of file ----------------------------------------------------------------------


def half_transparent(path: Path) -> None:
    """8x8 RGBA: the left half red and fully transparent, the right half opaque blue."""
    a = np.zeros((8, 8, 4), dtype=np.uint8)
    a[:, :4] = (*RED, 0)
    a[:, 4:] = (*BLUE, 255)
    Image.fromarray(a, "RGBA").save(path)


def test_rgba_is_composited_on_the_background(tmp_path):
    half_transparent(tmp_path / "a.png")
    default = decoded(tmp_path / "a.png")
    assert (default[:, :4] == WHITE).all() and (default[:, 4:] == BLUE).all()  # white by default, not black
    grey = decoded(tmp_path / "a.png", background=(9, 99, 199))
    assert (grey[:, :4] == (9, 99, 199)).all() and (grey[:, 4:] == BLUE).all()
    # Half-transparent pixels are blended: alpha 128 red over white.
    Image.fromarray(np.full((8, 8, 4), (255, 0, 0, 128), np.uint8), "RGBA").save(tmp_path / "b.png")
    assert np.abs(decoded(tmp_path / "b.png")[0, 0].astype(int) - (255, 127, 127)).max() <= 1


def test_alpha_refuse_is_a_one_line_error_naming_the_file(tmp_path, cli):
    half_transparent(tmp_path / "see-through.png")
    Image.fromarray(np.full((8, 8, 4), (*BLUE, 255), np.uint8), "RGBA").save(tmp_path / "opaque.png")
    src = source("image_folder", path=str(tmp_path), resolution=8, alpha="refuse", num_workers=0)
    with pytest.raises(DataError, match=r"data.alpha=refuse: .*see-through.png has transparent pixels"):
        next(src.batches(2, 0, torch.device("cpu")))
    # An alpha channel with nothing transparent in it is no reason to refuse a file.
    assert (decoded(tmp_path / "opaque.png", alpha="refuse") == BLUE).all()
    result = cli("dataset", str(tmp_path), "--out", str(tmp_path.parent / "d.zip"), "-r", "8", "--alpha", "refuse",
                 "--workers", "0", "-q")
    assert result.exit_code == 2 and "--alpha refuse: see-through.png has transparent pixels" in result.stderr
    assert not (tmp_path.parent / "d.zip").exists()


def test_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"  # really 16 bits on disk
    expected = np.round(ramp / 257).astype(np.uint8)
    got = decoded(tmp_path / "grey16.png", channels=1)[:, :, 0]
    np.testing.assert_array_equal(got, expected)  # 65535 -> 255, 32896 -> 128: scaled, not clipped at 255
    rgb = np.stack([ramp, 65535 - ramp, np.full_like(ramp, 1000)], -1)
    png16_rgb(tmp_path / "rgb16.png", rgb)
    assert np.abs(decoded(tmp_path / "rgb16.png").astype(int) - rgb / 257).max() <= 1
    # project --target decodes the same way (it used to clip to white).
    from ganforge.project import load_target

    target = load_target(tmp_path / "grey16.png", channels=1, resolution=8)
    np.testing.assert_allclose(target[0].numpy(), expected / 127.5 - 1, atol=1e-6)


def test_palette_png_with_and_without_a_transparent_entry(tmp_path):
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, *RED, *BLUE] + [0] * 759)
    img.paste(2, (4, 0, 8, 8))
    img.save(tmp_path / "p.png")
    got = decoded(tmp_path / "p.png")
    assert (got[:, :4] == RED).all() and (got[:, 4:] == BLUE).all()
    img.save(tmp_path / "pt.png", transparency=1)  # palette entry 1 (red) is transparent
    got = decoded(tmp_path / "pt.png")
    assert (got[:, :4] == WHITE).all() and (got[:, 4:] == BLUE).all()


def test_grayscale_and_rgb_files_mixed_follow_channels(tmp_path):
    Image.new("L", (8, 8), 77).save(tmp_path / "a_grey.png")
    Image.new("RGB", (8, 8), (200, 100, 0)).save(tmp_path / "b_rgb.png")
    Image.new("1", (8, 8), 1).save(tmp_path / "c_bilevel.png")
    for channels in (1, 3):
        src = source("image_folder", path=str(tmp_path), resolution=8, channels=channels, num_workers=0,
                     in_memory=True)
        x = src.batches(3, 0, torch.device("cpu")).x  # the images as loaded, in file order
        assert x.shape == (3, channels, 8, 8)
        if channels == 3:
            assert (x[0] == 77).all() and x[1, :, 0, 0].tolist() == [200, 100, 0] and (x[2] == 255).all()
        else:  # ITU-R 601 luma, as PIL converts: 200 * 0.299 + 100 * 0.587 = 118.5
            assert (x[0] == 77).all() and abs(int(x[1, 0, 0, 0]) - 118) <= 1 and (x[2] == 255).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "print.jpg")  # red ink, as prepress tools write
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    assert np.abs(decoded(tmp_path / "print.jpg").astype(int) - RED).max() <= 3


def test_exif_orientation_is_applied_as_a_phone_shows_the_photo(tmp_path):
    stored = np.zeros((8, 12, 3), dtype=np.uint8)
    stored[0, 0] = RED  # the stored top-left pixel
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write portrait photos
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    shown = np.rot90(stored, k=-1)  # 12 rows x 8 columns, the red pixel now at the top right
    assert shown[0, -1].tolist() == list(RED)
    got = decode(tmp_path / "phone.png", ImageOptions(12, crop="pad")).pixels  # no resampling: 12 is the long side
    np.testing.assert_array_equal(got[:, 2:10], shown)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animation_gives_its_first_frame_and_a_warning(tmp_path, fmt):
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE), Image.new("RGB", (8, 8), WHITE)]
    frames[0].save(tmp_path / f"anim.{fmt}", save_all=True, append_images=frames[1:], duration=100,
                   **({"lossless": True} if fmt == "webp" else {}))
    assert Image.open(tmp_path / f"anim.{fmt}").n_frames == 3
    image = decode(tmp_path / f"anim.{fmt}", ImageOptions(8))
    assert np.abs(image.pixels.astype(int) - RED).max() <= 2
    assert image.notes == ("3 frames (animated): the first is used",)
    src = source("image_folder", path=str(tmp_path), resolution=8, num_workers=0)
    with pytest.warns(UserWarning, match=rf"anim.{fmt}: 3 frames \(animated\): the first is used"):
        next(src.batches(1, 0, torch.device("cpu")))


def test_empty_and_truncated_files_are_skipped_with_their_reason(tmp_path, cli):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (8, 8), RED).save(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole, "png")
    (folder / "cut.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    result = cli("dataset", str(folder), "--out", str(tmp_path / "d.zip"), "-r", "8", "--workers", "0", "-q")
    assert result.exit_code == 0, result.stderr
    assert "skipped empty.png: empty file (0 bytes)" in result.stderr
    assert "skipped cut.png: truncated (" in result.stderr
    assert "wrote 1 images" in result.stdout and "skipped 2 of 3 image files" in result.stdout
    # The loaders: skipped and counted by default, a one-line error with on_bad_image: error.
    stream = source("image_folder", path=str(folder), resolution=8, num_workers=0).batches(3, 0, torch.device("cpu"))
    x, _ = next(stream)
    assert len(x) == 1 and stream.skipped == 2
    strict = source("image_folder", path=str(folder), resolution=8, num_workers=0, on_bad_image="error")
    with pytest.raises(DataError, match=r"cannot read image .*(cut|empty).png \((truncated|empty file).*on_bad_image"):
        next(strict.batches(3, 0, torch.device("cpu")))


# -- framing: center, center-wide, pad, stretch ---------------------------------------------


def stripes(w: int, h: int) -> np.ndarray:
    """Distinct colour per column and row, so that any crop or flip is visible."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 10 % 256, y * 10 % 256, np.full_like(x, 99)], -1).astype(np.uint8)


def test_center_wide_is_a_letterboxed_strip_as_stylegan2_ada(tmp_path):
    # A source exactly the strip's size goes through untouched, between black bars (the reference's
    # center-crop-wide gives these same pixels: scripts run against it are in the README).
    a = stripes(12, 9)
    Image.fromarray(a).save(tmp_path / "wide.png")
    got = decoded(tmp_path / "wide.png", resolution=12, crop="center-wide", aspect=4 / 3)
    assert (got[:1] == 0).all() and (got[10:] == 0).all()  # (12 - 9) // 2 = 1 row above, 2 below
    np.testing.assert_array_equal(got[1:10], a)
    # A taller source keeps its full width and its central rows (no squeezing); a wider one its central columns.
    Image.fromarray(stripes(12, 15)).save(tmp_path / "tall.png")
    np.testing.assert_array_equal(decoded(tmp_path / "tall.png", resolution=12, crop="center-wide")[1:10],
                                  stripes(12, 15)[3:12])
    Image.fromarray(stripes(20, 9)).save(tmp_path / "panorama.png")
    np.testing.assert_array_equal(decoded(tmp_path / "panorama.png", resolution=12, crop="center-wide")[1:10],
                                  stripes(20, 9)[:, 4:16])


def test_pad_letterboxes_the_whole_image(tmp_path):
    a = stripes(8, 4)
    Image.fromarray(a).save(tmp_path / "land.png")
    bars = decoded(tmp_path / "land.png", crop="pad")  # default: black bars (pad_mode constant, pad_value 0)
    np.testing.assert_array_equal(bars[2:6], a)  # the whole image, centred
    assert (bars[:2] == 0).all() and (bars[6:] == 0).all()
    grey = decoded(tmp_path / "land.png", crop="pad", pad_value=50)
    assert (grey[:2] == 50).all() and (grey[6:] == 50).all()
    np.testing.assert_array_equal(decoded(tmp_path / "land.png", crop="pad", pad_mode="reflect")[:2], a[[2, 1]])
    np.testing.assert_array_equal(decoded(tmp_path / "land.png", crop="pad", pad_mode="edge")[:2], a[[0, 0]])
    portrait = decode(Image.fromarray(stripes(4, 8)), ImageOptions(8, crop="pad")).pixels
    np.testing.assert_array_equal(portrait[:, 2:6], stripes(4, 8))
    assert (portrait[:, :2] == 0).all() and (portrait[:, 6:] == 0).all()
    stretched = decoded(tmp_path / "land.png", crop="stretch")
    assert stretched.shape == (8, 8, 3) and not (stretched == bars).all()


@pytest.mark.parametrize("crop", ["center", "center-wide", "pad", "stretch"])
def test_dataset_and_loaders_frame_alike(tmp_path, cli, crop):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(stripes(30, 17)).save(folder / "a.png")
    out = tmp_path / "d.zip"
    assert cli("dataset", str(folder), "--out", str(out), "-r", "12", "--crop", crop, "--workers", "0",
               "-q").exit_code == 0
    with zipfile.ZipFile(out) as z:
        written = np.asarray(Image.open(io.BytesIO(z.read("00000/img00000000.png"))))
    src = source("image_folder", path=str(folder), resolution=12, crop=crop, num_workers=0)
    x, _ = next(src.batches(1, 0, torch.device("cpu")))
    np.testing.assert_array_equal(written, pixels(x[0]))


def test_crop_and_xflip_on_vector_data_are_one_line_config_errors(tmp_path):
    for key, value in (("crop", "pad"), ("xflip", True)):
        with pytest.raises(ConfigError, match=rf"data.{key}: unknown key; valid keys here: kind, num_samples"):
            source("gaussian_grid", **{key: value})
    with pytest.raises(ConfigError, match="data.crop: must be one of center, center-wide, pad, stretch"):
        source("image_folder", path=str(tmp_path), crop="letterbox")


# -- data.xflip ------------------------------------------------------------------------------


def asymmetric_folder(root: Path, n: int = 3) -> list[np.ndarray]:
    root.mkdir()
    images = []
    for i in range(n):
        a = np.zeros((8, 8, 3), dtype=np.uint8)
        a[:, : i + 2] = (60 * i, 200, 30)  # a bar at the left, of a width per image
        Image.fromarray(a).save(root / f"{i}.png")
        images.append(a)
    return images


@pytest.mark.parametrize("in_memory", [False, True])
def test_xflip_epoch_holds_each_image_and_its_mirror_once(tmp_path, in_memory):
    images = asymmetric_folder(tmp_path / "f")
    src = source("image_folder", path=str(tmp_path / "f"), resolution=8, xflip=True, num_workers=0,
                 in_memory=in_memory)
    stream = src.batches(6, 3, torch.device("cpu"))
    for _ in range(2):  # two epochs of 2N = 6
        x, _ = next(stream)
        got = sorted(pixels(img).tobytes() for img in x)
        assert got == sorted([a.tobytes() for a in images] + [a[:, ::-1].tobytes() for a in images])
    assert stream.state_dict() == {"epoch": 1, "cursor": 6, "items": 6}
    with pytest.raises(DataError, match=r"batch_size=7 is larger than the data set \(6 samples\)"):
        src.batches(7, 0, torch.device("cpu"))


@pytest.mark.parametrize("kind", ["digits", "zip", "hf"])
def test_xflip_on_every_kind_doubles_the_epoch_and_mirrors_the_second_half(tmp_path, kind, cli):
    images = asymmetric_folder(tmp_path / "f")
    if kind == "digits":
        params = {"resolution": 8}
    elif kind == "zip":
        assert cli("dataset", str(tmp_path / "f"), "--out", str(tmp_path / "d.zip"), "-r", "8", "--workers", "0",
                   "-q").exit_code == 0
        params = {"path": str(tmp_path / "d.zip"), "num_workers": 0}
    else:
        import datasets

        table = datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in images]},
                                           features=datasets.Features({"image": datasets.Image()}))
        table.save_to_disk(str(tmp_path / "hf"))
        params = {"path": str(tmp_path / "hf"), "resolution": 8, "num_workers": 0}
    plain, mirrored = source(kind, **params), source(kind, xflip=True, **params)
    n = 1797 if kind == "digits" else 3
    a, b = plain.batches(n, 0, torch.device("cpu")), mirrored.batches(2 * n, 0, torch.device("cpu"))
    assert a.state_dict()["items"] == n and b.state_dict()["items"] == 2 * n
    x, _ = next(a)
    both, _ = next(b)
    key = lambda t: sorted(pixels(i).tobytes() for i in t)  # noqa: E731
    assert key(both) == sorted(key(x) + key(x.flip(-1)))


def test_fid_reference_statistics_use_the_unmirrored_images(tmp_path):
    from ganforge.metrics.evaluate import Evaluator
    from ganforge.metrics.features import FeatureExtractor

    images = asymmetric_folder(tmp_path / "f")
    seen: list[bytes] = []

    class Recorder(FeatureExtractor):
        name = "recorder"

        def forward(self, x):
            seen.extend(pixels(i.float() / 127.5 - 1).tobytes() for i in x)
            return x.float().flatten(1)[:, :4], None

    for xflip in (True, False):
        cfg = parse_config({"data": {"kind": "image_folder", "path": str(tmp_path / "f"), "resolution": 8,
                                     "xflip": xflip, "num_workers": 0},
                            "generator": {"kind": "dcgan"}, "discriminator": {"kind": "dcgan"}})
        evaluator = Evaluator(cfg.data, build_data(cfg), ["fid"], 3, Recorder(), torch.device("cpu"),
                              cache_dir=str(tmp_path / "stats"), progress=False)
        evaluator.real_features()
    assert sorted(seen) == sorted(a.tobytes() for a in images)  # no mirror image; the second run read the cache
    assert len(list((tmp_path / "stats").iterdir())) == 1


def test_info_and_the_start_line_show_the_mirrored_size(tmp_path, cli):
    cfg = tiny_config(tmp_path / "run", data={"kind": "digits", "resolution": 16, "xflip": True},
                      train={"steps": 2, "batch_size": 8, "seed": 0, "device": "cpu"},
                      samples={"every": 2, "num": 4}, checkpoint={"every": 2, "keep": 1})
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 0, result.output
    assert "data: digits: 1,797 images, 3,594 an epoch with their mirror images (data.xflip)" in result.output
    info = cli("info", str(tmp_path / "run"))
    assert "3,594 an epoch (1,797 images and their mirror images)" in info.output


def test_dry_run_counts_the_mirrored_epoch(tmp_path, cli):
    for xflip, code in ((False, 2), (True, 0)):  # a batch of 2,000: more than 1,797 digits, less than 3,594
        cfg = tiny_config(tmp_path / "run", data={"kind": "digits", "resolution": 16, "xflip": xflip})
        cfg["train"]["batch_size"] = 2000
        result = cli("train", str(write_config(tmp_path, cfg)), "--dry-run")
        assert result.exit_code == code, result.output
    assert "3594 samples" in result.output


# -- streams that never decode end with one line, and on Ctrl+C / SIGTERM ----------------------


def text_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for i in range(4):
            z.writestr(f"{i}.png", "not an image, text")


def string_column(path: Path) -> None:
    import datasets

    datasets.Dataset.from_dict({"image": ["photo1.jpg", "photo2.jpg", "photo3.jpg"]}).save_to_disk(str(path))


@pytest.mark.parametrize("kind", ["image_folder", "zip", "hf"])
def test_a_stream_of_files_that_never_decode_stops_with_one_line(tmp_path, kind):
    if kind == "image_folder":
        (tmp_path / "f").mkdir()
        for i in range(5):
            (tmp_path / "f" / f"{i}.png").write_bytes(b"")
        params, first = {"path": str(tmp_path / "f"), "resolution": 8}, r"\d\.png \(empty file \(0 bytes\)\)"
    elif kind == "zip":
        text_zip(tmp_path / "t.zip")
        params, first = {"path": str(tmp_path / "t.zip"), "resolution": 8}, r"\d\.png \(cannot decode"
    else:
        string_column(tmp_path / "hf")
        params, first = {"path": str(tmp_path / "hf"), "resolution": 8}, r"row \d \(no such file\)"
    for xflip in (False, True):
        stream = source(kind, num_workers=0, xflip=xflip, **params).batches(2, 0, torch.device("cpu"))
        error = raised_within(60, functools.partial(next, stream))  # a stream that spins fails the test
        assert isinstance(error, DataError), error
        assert re.match(rf"data.path: none of the \d images in .* could be read: {first}", str(error)), str(error)


def raised_within(seconds: float, fn) -> BaseException | None:
    """The exception fn() raises, run in a daemon thread given `seconds` (a failure if it runs longer)."""
    outcome: dict = {}

    def call() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001  (handed to the test)
            outcome["error"] = e

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome.get("error")


def test_a_stop_request_ends_a_wait_for_data():
    from ganforge.data.decoded import DecodingDataset, FolderBatches

    class SlowAndUnreadable(DecodingDataset):
        def open(self, i):
            time.sleep(0.01)  # 1,000 files: 10 s of failures before the stream's own bound
            raise OSError("unreadable")

    dataset = SlowAndUnreadable(1000, None, ImageOptions(8), "skip", "slow")
    stream = FolderBatches(dataset, 1, 0, torch.device("cpu"), num_workers=0, has_labels=False)
    stop = threading.Event()
    stream.stop_on(stop)
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(StopWaiting):
        next(stream)
    assert 0 < stream.skipped < 1000  # it stopped waiting on the request, before its own bound


@pytest.fixture
def sigterm_guard():
    """SIGTERMs that reach this handler were not taken by the CLI's (instead of ending pytest)."""
    missed = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: missed.append(signum))
    yield missed
    signal.signal(signal.SIGTERM, old)


def sigterm_once(monkeypatch, module, name: str, when) -> None:
    """Make `module.name(state, ...)` send this process one SIGTERM the first time `when(state, kwargs)` holds."""
    original, sent = getattr(module, name), []

    def patched(state, *args, **kwargs):
        if not sent and when(state, kwargs):
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return original(state, *args, **kwargs)

    monkeypatch.setattr(module, name, patched)


@pytest.mark.parametrize("during", ["a D sub-step", "upkeep"])
def test_sigterm_on_files_read_from_disk_finishes_the_step_and_resumes_exactly(cli, tmp_path, monkeypatch,
                                                                                 sigterm_guard, during):
    """A stop request while the stream still has images to decode (between two D updates of a
    step, or while samples are written) lets the next batch through: the step finishes, a
    checkpoint is written for it, and a resume ends where an uninterrupted run does."""
    from ganforge.checkpoint import load_checkpoint
    from ganforge.training import loop, upkeep

    folder = tmp_path / "f"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    data = {"kind": "image_folder", "path": str(folder), "resolution": 16, "num_workers": 0}  # decoded per batch
    cfg = tiny_config(tmp_path / "run", data=data, checkpoint={"every": 100, "keep": 5}, samples={"every": 3, "num": 4})
    cfg["train"].update(steps=6, batch_size=4, d_steps_per_g_step=2)
    if during == "a D sub-step":  # after the first of step 4's two D updates
        sigterm_once(monkeypatch, loop, "discriminator_step", lambda state, kw: state.step == 3 and kw["phase"] == 0)
    else:  # while step 3's samples are written
        sigterm_once(monkeypatch, upkeep.Maintenance, "samples", lambda self, kw: self.state.step == 3)
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 130 and not sigterm_guard, result.stderr
    path = tmp_path / "run" / "checkpoints" / "step-00000004.pt"
    assert f"stopped at step 4 of 6; checkpoint: {path}" in result.stderr, result.stderr
    monkeypatch.undo()

    assert cli("train", "--resume", str(tmp_path / "run"), "-q").exit_code == 0
    reference = write_config(tmp_path, {**cfg, "output": {"dir": str(tmp_path / "ref")}}, "ref.yaml")
    assert cli("train", str(reference), "-q").exit_code == 0
    resumed, expected = (load_checkpoint(tmp_path / d / "checkpoints" / "step-00000006.pt").state
                         for d in ("run", "ref"))
    for net in ("G", "D", "G_ema"):
        assert all(torch.equal(resumed[net][k], expected[net][k]) for k in expected[net]), net


def test_train_on_undecodable_files_fails_in_one_line(tmp_path, cli):
    (tmp_path / "f").mkdir()
    for i in range(3):
        (tmp_path / "f" / f"{i}.png").write_bytes(b"")
    cfg = tiny_config(tmp_path / "run", data={"kind": "image_folder", "path": str(tmp_path / "f"), "resolution": 16,
                                              "num_workers": 1})
    cfg["train"]["batch_size"] = 2
    result = cli("train", str(write_config(tmp_path, cfg)), "-q")
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(r"none of the 3 images in .* \d\.png \(empty file \(0 bytes\)\)", errors[0])


@pytest.mark.parametrize("in_memory", [False, True])
def test_channels_3_on_files_that_cannot_become_rgb_fails_in_one_line(tmp_path, cli, in_memory):
    """`channels: 3` asked of files PIL opens but ganforge cannot turn into 8-bit RGB (32-bit
    float and integer TIFFs, as scientific cameras write): one line naming a file and why."""
    (tmp_path / "f").mkdir()
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "F").save(tmp_path / "f" / "depth.tif")
    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 70_000, "I").save(tmp_path / "f" / "counts.tif")
    assert {Image.open(p).mode for p in (tmp_path / "f").iterdir()} == {"F", "I"}  # what the files really hold
    cfg = tiny_config(tmp_path / "run", data={"kind": "image_folder", "path": str(tmp_path / "f"), "resolution": 16,
                                              "channels": 3, "num_workers": 0, "in_memory": in_memory})
    cfg["train"]["batch_size"] = 2
    line = one_line_error(cli("train", str(write_config(tmp_path, cfg)), "-q"), 2,
                          "data.path: none of the 2 images in")
    assert "counts.tif (32-bit integer pixels; convert the file to 8 or 16 bits)" in line, line
    assert "depth.tif (floating-point pixels; convert the file to 8 or 16 bits)" in line, line
    assert not (tmp_path / "run").exists()  # a run refused at its first step leaves nothing behind


# -- ganforge dataset: archives member by member, its source left alone, Ctrl+C --------------


def test_dataset_skips_a_damaged_zip_member_with_its_reason(tmp_path, cli):
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as z:
        for i in range(3):
            image = io.BytesIO()
            Image.new("RGB", (8, 8), (50 * i, 0, 0)).save(image, "png")
            z.writestr(f"{i}.png", image.getvalue())
        info = z.getinfo("1.png")
    raw = bytearray((tmp_path / "src.zip").read_bytes())
    raw[info.header_offset + 30 + len("1.png") + 20] ^= 0xFF  # a flipped byte in 1.png's data: its CRC fails
    (tmp_path / "src.zip").write_bytes(bytes(raw))
    result = cli("dataset", str(tmp_path / "src.zip"), "--out", str(tmp_path / "d.zip"), "-r", "8", "--workers",
                 "0", "-q")
    assert result.exit_code == 0, result.stderr
    assert "skipped 1.png: damaged in the archive (Bad CRC-32" in result.stderr and "Traceback" not in result.stderr
    with zipfile.ZipFile(tmp_path / "d.zip") as z:
        assert z.testzip() is None and len([n for n in z.namelist() if n.endswith(".png")]) == 2


def test_dataset_never_writes_into_its_source(tmp_path, cli):
    folder = tmp_path / "photos"
    asymmetric_folder(folder)
    before = sorted(p.name for p in folder.rglob("*"))
    for out in (folder / "d.zip", folder / "sub" / "d.zip"):
        result = cli("dataset", str(folder), "--out", str(out), "-r", "8")
        assert result.exit_code == 2 and "lies inside the source folder" in result.stderr
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_dataset_zip_is_the_same_bytes_in_processes_and_readable_as_zip64(tmp_path, cli):
    from ganforge.data.zipfiles import StoredZipWriter

    asymmetric_folder(tmp_path / "f", n=5)
    for workers in ("0", "2"):
        assert cli("dataset", str(tmp_path / "f"), "--out", str(tmp_path / f"{workers}.zip"), "-r", "8", "--workers",
                   workers, "-q").exit_code == 0
    assert (tmp_path / "0.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()
    # Over 65,535 members or 4 GiB the writer adds zip64 records; forced here on a small archive.
    with open(tmp_path / "z64.zip", "wb") as f:
        writer = StoredZipWriter(f, force_zip64=True)
        writer.add("a.png", b"x" * 10)
        writer.add("dataset.json", b"{}")
        writer.close()
    with zipfile.ZipFile(tmp_path / "z64.zip") as z:
        assert z.testzip() is None and z.read("a.png") == b"x" * 10 and z.read("dataset.json") == b"{}"


def _many_large_photos(tmp_path: Path) -> Path:
    """A folder of the same large photo 200 times over (hard links): seconds of decoding."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8)).save(folder / "0.jpg")
    for i in range(1, 200):
        os.link(folder / "0.jpg", folder / f"{i}.jpg")
    return folder


def _dataset_interrupted(folder: Path, out: Path, *python_flags: str) -> subprocess.Popen:
    """`ganforge dataset FOLDER --out OUT --workers 2`, sent SIGINT once it has started writing."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    command = [sys.executable, *python_flags, "-m", "ganforge", "dataset", str(folder), "--out", str(out), "-r", "64",
               "--workers", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300  # a bound for a hang only: a loaded machine takes tens of seconds to start
    while not list(out.parent.glob(f".{out.name}.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    return proc


def test_ctrl_c_during_dataset_says_so_and_leaves_nothing(tmp_path):
    folder = _many_large_photos(tmp_path)
    out = tmp_path / "out" / "d.zip"
    proc = _dataset_interrupted(folder, out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, (stdout, stderr)
    assert f"interrupted: nothing was written to {out}" in stderr and "Traceback" not in stderr
    assert list(out.parent.iterdir()) == []
    # Its worker processes are gone too (none waits forever on a queue).
    alive = [p for p in Path("/proc").glob("[0-9]*") if str(folder).encode() in _cmdline(p)]
    assert not alive, alive
    assert json.dumps(sorted(p.name for p in folder.iterdir())) == json.dumps(sorted(f"{i}.jpg" for i in range(200)))


def test_ctrl_c_at_any_moment_of_dataset_exits(tmp_path):
    """Ctrl+C landing inside the task queue's put left its lock taken, and the exit then waited for
    it forever (1 run in 9-13 before the fix; 40 runs here, which failed on that code)."""
    folder = _many_large_photos(tmp_path)
    for trial in range(40):
        # faulthandler: a hang prints where each thread waits (SIGABRT below).
        proc = _dataset_interrupted(folder, tmp_path / f"out{trial}" / "d.zip", "-X", "faulthandler")
        try:
            _, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, stderr = proc.communicate(timeout=60)
            pytest.fail(f"run {trial}: still running 120 s after Ctrl+C:\n{stderr[-3000:]}")
        # It stops (130) or, where Python swallows the KeyboardInterrupt (raised inside an import's
        # weakref callback: "Exception ignored in"), finishes; the test above checks the message.
        assert proc.returncode in (0, 130), stderr


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return b""
