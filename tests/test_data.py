"""Data sets read real on-disk formats (files generated here); streams resume exactly."""

from __future__ import annotations

import gzip
import math
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.build import build_data
from ganforge.config import parse_config
from ganforge.errors import ConfigError, DataError


def source(kind: str, **params):
    raw = {"data": {"kind": kind, **params}, "generator": {"kind": "mlp"}, "discriminator": {"kind": "mlp"}}
    return build_data(parse_config(raw))


def take(src, batch_size=4, seed=0, n=1):
    stream = src.batches(batch_size, seed, torch.device("cpu"))
    return [next(stream) for _ in range(n)]


# -- toy data -------------------------------------------------------------------------------


def test_gaussian_grid_has_25_modes_with_std_005():
    src = source("gaussian_grid", num_samples=20000)
    x, y = src.tensors()
    assert x.shape == (20000, 2) and y is None
    centres = src.centres
    assert sorted({tuple(c.tolist()) for c in centres}) == [(a, b) for a in (-4.0, -2.0, 0.0, 2.0, 4.0)
                                                            for b in (-4.0, -2.0, 0.0, 2.0, 4.0)]
    nearest = torch.cdist(x, centres).argmin(1)
    assert torch.bincount(nearest, minlength=25).min() > 600  # all modes, roughly equal weight
    residual = x - centres[nearest]
    assert residual.std().item() == pytest.approx(0.05, rel=0.05)


def test_gaussian_ring_has_8_modes_on_unit_circle_with_std_001():
    src = source("gaussian_ring", num_samples=8000)
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    expected = torch.stack([angles.cos(), angles.sin()], dim=1).float()  # 8 points, 45 degrees apart, radius 1
    assert torch.allclose(src.centres, expected, atol=1e-6)
    x, _ = src.tensors()
    nearest = torch.cdist(x, expected).argmin(1)
    assert torch.bincount(nearest, minlength=8).min() > 800  # every mode, roughly equal weight (1000 each)
    residual = x - expected[nearest]
    # std 0.01 per coordinate: 16000 values estimate it to within 1%; 5% still fails at 1.05x the std.
    assert residual.std().item() == pytest.approx(0.01, rel=0.05)
    assert residual.mean(0).abs().max().item() < 0.01 * 5 / math.sqrt(8000)  # centred on the modes


# -- digits ---------------------------------------------------------------------------------


def test_digits_resized_with_labels():
    src = source("digits", resolution=16)
    assert src.info.shape == (1, 16, 16) and src.info.num_classes == 10
    x, y = src.tensors()
    assert x.shape == (1797, 1, 16, 16) and x.dtype == torch.uint8
    assert sorted(y.unique().tolist()) == list(range(10))
    (batch, labels), = take(src, batch_size=5)
    assert batch.min() >= -1 and batch.max() <= 1 and batch.dtype == torch.float32
    assert labels.shape == (5,)


# -- MNIST / Fashion-MNIST (IDX) ------------------------------------------------------------


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_mnist(root, folder="MNIST", n=12, compress=True, splits=("train", "t10k")):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {}
    for split in splits:
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", x, compress)
        write_idx(raw / f"{split}-labels-idx1-ubyte", y, compress)
        images[split] = (x, y)
    return images


@pytest.mark.parametrize(("kind", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
@pytest.mark.parametrize("compress", [True, False])
def test_mnist_family_reads_idx_files(tmp_path, kind, folder, compress):
    images = make_mnist(tmp_path, folder, compress=compress)
    src = source(kind, root=str(tmp_path), resolution=28)
    x, y = src.tensors()
    assert torch.equal(x[:, 0], torch.from_numpy(images["train"][0]))
    assert torch.equal(y, torch.from_numpy(images["train"][1]).long())
    both = source(kind, root=str(tmp_path), split="all", resolution=32)
    assert both.tensors()[0].shape == (24, 1, 32, 32)


def test_mnist_missing_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DataError) as info:
        source("mnist", root=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "data.download=true" in message


def test_mnist_download_offline_is_a_one_line_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    src = source("mnist", root=str(tmp_path), download=True)
    with pytest.raises(DataError, match=r"could not download mnist .*offline, put the files in .*MNIST/raw"):
        src.tensors()


def test_truncated_idx_file_is_a_data_error(tmp_path):
    make_mnist(tmp_path, compress=False)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="truncated"):
        source("mnist", root=str(tmp_path), resolution=28).tensors()


# -- CIFAR-10 (python batches) --------------------------------------------------------------


def make_cifar(root, n=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        # The real files are Python 2 pickles of dicts with byte-string keys.
        batch = {b"batch_label": name.encode(), b"labels": [(i + j) % 10 for j in range(n)],
                 b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"filenames": [f"img{j}.png".encode() for j in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def test_cifar10_reads_python_batches(tmp_path):
    folder = make_cifar(tmp_path)
    src = source("cifar10", root=str(tmp_path))
    x, y = src.tensors()
    assert x.shape == (30, 3, 32, 32) and y.shape == (30,)
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    assert torch.equal(x[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))
    assert source("cifar10", root=str(tmp_path), split="test").tensors()[0].shape == (6, 3, 32, 32)


def test_cifar10_batch_with_code_is_refused(tmp_path):
    folder = make_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match="refusing to load"):
        source("cifar10", root=str(tmp_path)).tensors()
    assert not marker.exists()


def test_cifar10_missing(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*data.download=true"):
        source("cifar10", root=str(tmp_path))


# -- image folders --------------------------------------------------------------------------


def make_folder(root, classes=("cat", "dog"), per_class=3, size=(20, 12)):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            colour = (40 * i, 200, 30) if c == "cat" else (10, 20, 250)
            Image.new("RGB", size, colour).save(root / c / f"{i}.png")


def test_image_folder_resizes_crops_and_labels_subfolders(tmp_path):
    make_folder(tmp_path)
    for in_memory in (True, False):
        src = source("image_folder", path=str(tmp_path), resolution=8, num_workers=0, in_memory=in_memory)
        assert src.info.shape == (3, 8, 8) and src.info.num_classes == 2
        (x, y), = take(src, batch_size=6)
        assert x.shape == (6, 3, 8, 8) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
        dog = x[y == 1][0]
        # (10, 20, 250) -> [-1, 1]
        assert torch.allclose(dog[:, 4, 4], torch.tensor([10, 20, 250]) / 127.5 - 1, atol=1e-6)


def test_image_folder_grayscale_and_unlabelled(tmp_path):
    for i in range(4):
        Image.new("RGB", (10, 10), (i * 50, 0, 0)).save(tmp_path / f"{i}.jpg")
    src = source("image_folder", path=str(tmp_path), resolution=4, channels=1, num_workers=0)
    assert src.info.shape == (1, 4, 4) and src.info.num_classes == 0
    (x, y), = take(src, batch_size=2)
    assert x.shape == (2, 1, 4, 4) and y is None


def test_image_folder_skips_unreadable_images(tmp_path):
    make_folder(tmp_path, classes=("a",), per_class=4)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    src = source("image_folder", path=str(tmp_path), resolution=8, num_workers=0)
    stream = src.batches(5, 0, torch.device("cpu"))
    x, _ = next(stream)
    assert len(x) in (4, 5) and stream.skipped in (0, 1)
    batches = [next(stream)[0] for _ in range(3)]
    assert stream.skipped >= 1 and all(torch.isfinite(b).all() for b in batches)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        source("image_folder", path=str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="holds no images"):
        source("image_folder", path=str(tmp_path))
    with pytest.raises(ConfigError, match="data.path: missing"):
        source("image_folder")


# -- streams --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tensor", "folder"])
def test_stream_resumes_at_the_same_batch(tmp_path, kind):
    if kind == "tensor":
        src = source("gaussian_ring", num_samples=50)
    else:
        make_folder(tmp_path, classes=("a", "b"), per_class=5)
        src = source("image_folder", path=str(tmp_path), resolution=4, num_workers=0)
    full = src.batches(3, 7, torch.device("cpu"))
    expected = [next(full)[0] for _ in range(12)]  # crosses epoch boundaries
    first = src.batches(3, 7, torch.device("cpu"))
    for _ in range(5):
        next(first)
    resumed = src.batches(3, 7, torch.device("cpu"))
    resumed.load_state_dict(first.state_dict())
    assert all(torch.equal(next(resumed)[0], e) for e in expected[5:])


def test_batch_larger_than_data_is_a_clear_error():
    src = source("gaussian_ring", num_samples=10)
    with pytest.raises(DataError, match="train.batch_size=16 is larger than the data set"):
        src.batches(16, 0, torch.device("cpu"))



def test_digits_read_from_sklearns_file_match_load_digits() -> None:
    # The data set is read from scikit-learn's bundled CSV without importing scikit-learn;
    # it must be exactly what sklearn.datasets.load_digits gives.
    from sklearn.datasets import load_digits

    from ganforge.data.images import Digits

    ref = load_digits()
    x, y = Digits(8).load()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], torch.from_numpy(np.round(ref.images * (255.0 / 16.0))).to(torch.uint8))
    assert torch.equal(y, torch.from_numpy(ref.target).long())
