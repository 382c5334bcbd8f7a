"""Zip data sets (StyleGAN2-ADA's format) written by `ganforge dataset` and read in place;
Hugging Face data sets from save_to_disk folders and parquet files, written here."""

from __future__ import annotations

import io
import json
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganforge.build import build_data
from ganforge.cli import app as ganforge_app
from ganforge.config import parse_config
from ganforge.data import epoch_permutation
from ganforge.errors import ConfigError, DataError


def source(kind: str, **params):
    raw = {"data": {"kind": kind, **params}, "generator": {"kind": "mlp"}, "discriminator": {"kind": "mlp"}}
    return build_data(parse_config(raw))


def run(*args: str):
    return CliRunner().invoke(ganforge_app, list(args), catch_exceptions=False)


def assert_one_line(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def stylegan_center_crop(array: np.ndarray, resolution: int) -> np.ndarray:
    """StyleGAN2-ADA dataset_tool's centre crop: the central min(h, w) square, then Lanczos."""
    h, w = array.shape[:2]
    crop = min(h, w)
    square = array[(h - crop) // 2 : (h + crop) // 2, (w - crop) // 2 : (w + crop) // 2]
    return np.asarray(Image.fromarray(square).resize((resolution, resolution), Image.Resampling.LANCZOS))


@pytest.fixture
def photos(tmp_path):
    """cat/ and dog/ of random RGB images of several shapes, one broken file, one 16-bit image, a text file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    arrays = {}
    for c, shapes in (("cat", [(20, 30), (31, 17), (12, 12)]), ("dog", [(25, 40), (6, 6)])):
        (root / c).mkdir(parents=True)
        for i, shape in enumerate(shapes):
            arrays[f"{c}/{i}.png"] = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
            Image.fromarray(arrays[f"{c}/{i}.png"]).save(root / c / f"{i}.png")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    Image.fromarray(np.full((10, 10), 4000, dtype=np.uint16)).save(root / "dog" / "deep.png")
    (root / "notes.txt").write_text("not an image, ignored")
    return root, arrays


def read_zip(path):
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("dataset.json"))
        images = {n: np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in z.namelist() if n.endswith(".png")}
    return meta, images


# -- ganforge dataset -----------------------------------------------------------------------


def test_dataset_tool_writes_stylegan_zip_with_labels_and_a_summary(photos, tmp_path):
    root, arrays = photos
    out = tmp_path / "out" / "data.zip"
    result = run("dataset", str(root), "--out", str(out), "--resolution", "8", "--workers", "0", "-q")
    assert result.exit_code == 0, result.stderr
    summary = result.stdout
    assert "wrote 6 images (8x8 RGB PNG, crop center)" in summary and "2 classes from folders (cat 3, dog 3)" in summary
    assert "skipped 1 of 7 image files" in summary and "cat/broken.png (cannot decode" in summary
    assert "1 images were enlarged to reach 8 px" in summary
    assert "skipped cat/broken.png: cannot decode" in result.stderr  # each skipped file, as it happens
    meta, images = read_zip(out)
    # Sorted source order, StyleGAN2-ADA's names, labels by sub-folder.
    order = ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png", "dog/deep.png"]
    # The 16-bit image is scaled to 8 bits (4000 / 257 -> 16), not clipped to white.
    arrays = {**arrays, "dog/deep.png": np.full((10, 10, 3), 16, dtype=np.uint8)}
    names = [f"00000/img{i:08d}.png" for i in range(6)]
    assert sorted(images) == names
    assert meta == {"labels": [[n, int(o.startswith("dog"))] for n, o in zip(names, order)],
                    "class_names": ["cat", "dog"]}
    for name, original in zip(names, order):
        np.testing.assert_array_equal(images[name], stylegan_center_crop(arrays[original], 8))
    assert sorted(p.name for p in out.parent.iterdir()) == ["data.zip"]  # no temporary file left

    # Read in place: the same pixels and labels, in [-1, 1].
    src = source("zip", path=str(out), num_workers=0)
    assert src.info.shape == (3, 8, 8) and src.info.num_classes == 2 and src.classes == ["cat", "dog"]
    x, y = next(src.batches(6, 0, torch.device("cpu")))
    expected = {(int(o.startswith("dog")), stylegan_center_crop(arrays[o], 8).tobytes()) for o in order}
    got = {(int(label), ((img + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy().tobytes())
           for img, label in zip(x, y)}
    assert got == expected


def test_dataset_tool_from_a_zip_with_json_labels_in_processes(photos, tmp_path):
    root, _ = photos
    first = tmp_path / "first.zip"
    assert run("dataset", str(root), "--out", str(first), "--resolution", "16", "--workers", "0", "-q").exit_code == 0
    # zip -> zip at another resolution, labels from its dataset.json; two processes give the same bytes.
    again = tmp_path / "again.zip"
    result = run("dataset", str(first), "--out", str(again), "--resolution", "4", "--labels", "json", "--workers", "0",
                 "--json", "-q")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["written"] == 6 and report["labels_from"] == "json" and report["class_names"] == ["cat", "dog"]
    assert report["class_counts"] == [3, 3] and report["skipped"] == []
    parallel = tmp_path / "parallel.zip"
    assert run("dataset", str(first), "--out", str(parallel), "--resolution", "4", "--workers", "2",
               "-q").exit_code == 0
    assert read_zip(parallel)[0] == read_zip(again)[0]
    assert all(np.array_equal(a, b) for a, b in zip(read_zip(parallel)[1].values(), read_zip(again)[1].values()))
    # Unlabelled on request.
    plain = tmp_path / "plain.zip"
    assert run("dataset", str(root), "--out", str(plain), "--resolution", "4", "--labels", "none", "--workers", "0",
               "-q").exit_code == 0
    assert read_zip(plain)[0]["labels"] is None and source("zip", path=str(plain)).info.num_classes == 0


def test_dataset_tool_errors_are_one_line_and_leave_nothing_behind(photos, tmp_path):
    root, _ = photos
    out = tmp_path / "d.zip"
    assert_one_line(run("dataset", str(tmp_path / "nope"), "--out", str(out), "-r", "8"), 2, "no such folder or zip")
    assert_one_line(run("dataset", str(root), "--out", str(tmp_path / "d.tar"), "-r", "8"), 2, "end the name in .zip")
    assert_one_line(run("dataset", str(root), "--out", str(out), "-r", "8", "--labels", "jsn"), 2, "--labels jsn")
    assert_one_line(run("dataset", str(root), "--out", str(out), "-r", "8", "--labels", "json"), 2,
                    "--labels json", "has no dataset.json")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    assert_one_line(run("dataset", str(flat), "--out", str(out), "-r", "8", "--labels", "folders"), 2,
                    "--labels folders", "no sub-folders")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"nope")
    assert_one_line(run("dataset", str(broken), "--out", str(out), "-r", "8", "--workers", "0"), 2,
                    "none of the 1 images could be used", "a.png (cannot decode")
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    out.write_bytes(b"old")
    assert_one_line(run("dataset", str(root), "--out", str(out), "-r", "8"), 2, "exists", "--overwrite")
    assert out.read_bytes() == b"old"


# -- data: {kind: zip} -----------------------------------------------------------------------


def write_stylegan_zip(path, labels, size=(6, 6), names=None):
    """A zip as StyleGAN2-ADA's dataset_tool writes it: PNGs in numbered folders and dataset.json."""
    names = names or [f"00000/img{i:08d}.png" for i in range(len(labels) if isinstance(labels, list) else 4)]
    with zipfile.ZipFile(path, "w") as z:
        for i, name in enumerate(names):
            buf = io.BytesIO()
            Image.new("RGB", size, (10 * i, 0, 200)).save(buf, format="png")
            z.writestr(name, buf.getvalue())
        if labels != "no file":
            z.writestr("dataset.json", json.dumps({"labels": [[n, v] for n, v in zip(names, labels)]
                                                   if isinstance(labels, list) else labels}))
    return names


def test_zip_reads_stylegan_labels_in_worker_processes_and_resumes(tmp_path):
    path = tmp_path / "sg.zip"
    write_stylegan_zip(path, [0, 2, 2, 0, 1, 2, 0, 1, 1, 0])
    src = source("zip", path=str(path), num_workers=2)
    assert src.info.shape == (3, 6, 6) and src.info.num_classes == 3  # labels 0..2; resolution from the images
    # The main process opens its handle first: workers forked after it must open their own.
    assert src.dataset[1][1] == 2 and src.dataset._archive is not None
    full = src.batches(3, 5, torch.device("cpu"))
    expected = [next(full) for _ in range(8)]  # crosses epoch boundaries (3 batches of 3 per epoch)
    order = [i for epoch in range(3) for i in epoch_permutation(10, 5, epoch)[:9].tolist()]
    labels = [0, 2, 2, 0, 1, 2, 0, 1, 1, 0]
    assert torch.cat([y for _, y in expected]).tolist() == [labels[i] for i in order[:24]]
    reds = torch.cat([x[:, 0, 0, 0] for x, _ in expected])
    assert reds.tolist() == pytest.approx([10 * i / 127.5 - 1 for i in order[:24]])
    first = src.batches(3, 5, torch.device("cpu"))
    for _ in range(4):
        next(first)
    resumed = src.batches(3, 5, torch.device("cpu"))
    resumed.load_state_dict(first.state_dict())
    assert all(torch.equal(next(resumed)[0], x) for x, _ in expected[4:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sg.zip"]  # nothing extracted


def test_zip_labels_and_errors(tmp_path):
    path = tmp_path / "a.zip"
    write_stylegan_zip(path, None)  # "labels": null
    assert source("zip", path=str(path)).info.num_classes == 0
    write_stylegan_zip(path, "no file")
    assert source("zip", path=str(path), resolution=4).info.shape == (3, 4, 4)
    write_stylegan_zip(path, [0, 1, 1, 0])
    assert source("zip", path=str(path), labels="none").info.num_classes == 0
    # Names written on Windows ("a\\b.png") match their labels as StyleGAN2-ADA matches them.
    write_stylegan_zip(path, [1, 0], names=["x\\0.png", "x\\1.png"])
    assert source("zip", path=str(path)).dataset.labels == [1, 0]
    write_stylegan_zip(path, [0, 1.5, 1, 0])
    with pytest.raises(DataError, match=r"a.zip:dataset.json: the label of 00000/img00000001.png is 1.5; .*class"):
        source("zip", path=str(path))
    names = write_stylegan_zip(path, [0, 1, 1, 0])
    with zipfile.ZipFile(path, "a") as z:
        buf = io.BytesIO()
        Image.new("RGB", (6, 6)).save(buf, format="png")
        z.writestr("extra/unlabelled.png", buf.getvalue())
    with pytest.raises(DataError, match="has no label for extra/unlabelled.png .*data.labels=none"):
        source("zip", path=str(path))
    assert len(names) == 4
    write_stylegan_zip(path, "no file", size=(6, 4))
    with pytest.raises(DataError, match="6x4, not square.*set data.resolution"):
        source("zip", path=str(path))
    (tmp_path / "b.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable zip archive"):
        source("zip", path=str(tmp_path / "b.zip"))
    with pytest.raises(DataError, match="no such file.*ganforge dataset"):
        source("zip", path=str(tmp_path / "missing.zip"))
    with pytest.raises(ConfigError, match="data.labels: must be one of auto, none"):
        source("zip", path=str(path), labels="json")


# -- data: {kind: hf} -------------------------------------------------------------------------


def test_hf_without_the_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DataError, match=r"pip install 'ganforge\[hf\]'"):
        source("hf", path=str(tmp_path))


def test_hf_save_to_disk_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the optional extra ganforge[hf] (Hugging Face datasets)")
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    labels = [2, 0, 1, 2, 0, 1]
    features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=["a", "b", "c"])})
    table = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in arrays], "kind": labels},
                                       features=features)
    datasets.DatasetDict({"train": table, "test": table.select([0, 1])}).save_to_disk(str(tmp_path / "disk"))
    table.to_parquet(str(tmp_path / "t.parquet"))
    cache = str(tmp_path / "cache")
    for path in (tmp_path / "disk", tmp_path / "t.parquet"):
        src = source("hf", path=str(path), image_column="img", label_column="kind", resolution=8, num_workers=0,
                     cache_dir=cache)
        assert src.info.shape == (3, 8, 8) and src.info.num_classes == 3 and src.classes == ["a", "b", "c"]
        x, y = next(src.batches(6, 0, torch.device("cpu")))
        got = {(int(label), ((img + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy().tobytes())
               for img, label in zip(x, y)}
        assert got == {(label, a.tobytes()) for label, a in zip(labels, arrays)}
    test = source("hf", path=str(tmp_path / "disk"), split="test", image_column="img", label_column=None,
                  resolution=4, num_workers=0)
    assert len(test.dataset) == 2 and test.info.num_classes == 0
    with pytest.raises(DataError, match="has no split 'valid'; its splits: train, test"):
        source("hf", path=str(tmp_path / "disk"), split="valid")
    with pytest.raises(DataError, match="data.image_column: .* has no column 'image'; its columns: img, kind"):
        source("hf", path=str(tmp_path / "disk"))
    with pytest.raises(DataError, match="data.label_column: .* no column 'label'"):
        source("hf", path=str(tmp_path / "disk"), image_column="img", label_column="label")
    unlabelled = datasets.Dataset.from_dict({"image": [Image.fromarray(arrays[0])] * 2, "label": [-1, -1]})
    unlabelled.save_to_disk(str(tmp_path / "u"))
    with pytest.raises(DataError, match="rows labelled -1"):
        source("hf", path=str(tmp_path / "u"))
