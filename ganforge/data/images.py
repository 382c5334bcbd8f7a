"""Image data sets held in memory (scikit-learn's digits, MNIST, Fashion-MNIST, CIFAR-10) and the
image file formats they and the decoded data sets (decoded.py) read.

Downloads go through torchvision's own URLs, mirrors and checksums; reading is ours, from the
files' documented formats (IDX for MNIST, pickled batches for CIFAR-10 read with an unpickler
that can build nothing but arrays), so no file from elsewhere can run code.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.data import DataInfo, TensorSource
from ganforge.data.decode import IMAGE_SUFFIXES  # noqa: F401  (the image file kinds, here for their callers)
from ganforge.errors import DataError
from ganforge.params import Range
from ganforge.registry import DATASETS

Resolution = Annotated[int, Range(ge=4, le=1024)]
# Options of the data sets of image files (image_folder, zip, hugging_face); see also decode.py.
LabelSource = Literal["auto", "none"]  # auto: class sub-folders or dataset.json, where there are any
OnBadImage = Literal["skip", "error"]


def resize_images(x: Tensor, resolution: int, chunk: int = 2048) -> Tensor:
    """Resize uint8 images (N, C, H, W) to resolution x resolution (bilinear, antialiased)."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    out = []
    for part in x.split(chunk):
        y = F.interpolate(part.float(), size=(resolution, resolution), mode="bilinear",
                          align_corners=False, antialias=True)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# scikit-learn digits (offline)
# --------------------------------------------------------------------------------------------


class Digits(TensorSource):
    def __init__(self, resolution: int, xflip: bool = False) -> None:
        super().__init__(DataInfo("digits", (1, resolution, resolution), num_classes=10), xflip)
        self.resolution = resolution

    def load(self) -> tuple[Tensor, Tensor]:
        # scikit-learn ships the set as datasets/data/digits.csv.gz (64 pixels 0..16, then the
        # label, per row). Read that file where it lies rather than `import sklearn.datasets`,
        # which costs 2-5 s of start-up (SciPy) on a 2-core machine.
        spec = importlib.util.find_spec("sklearn")
        if spec is None or spec.origin is None:
            raise DataError("the digits data set needs scikit-learn: pip install scikit-learn")
        file = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        try:
            table = np.loadtxt(file, delimiter=",", dtype=np.float64)
        except (OSError, ValueError) as e:
            raise DataError(f"could not read scikit-learn's digits file {file}: {e}") from None
        if table.ndim != 2 or table.shape[1] != 65:
            raise DataError(f"{file}: expected 65 columns (8x8 pixels and a label), found shape {table.shape}")
        # Pixel values are 0..16 in the original data.
        x = torch.from_numpy(np.round(table[:, :64].reshape(-1, 8, 8) * (255.0 / 16.0))).to(torch.uint8).unsqueeze(1)
        return resize_images(x, self.resolution), torch.from_numpy(table[:, 64]).long()


@DATASETS.register("digits")
def digits(resolution: Resolution = 32, xflip: bool = False, dequantize: bool = False) -> Digits:
    """scikit-learn's 1,797 8x8 handwritten digits (10 classes), resized; works offline. dequantize (here
    and for mnist, fashion_mnist, cifar10): pixels as x/128 - 1 + U(0, 1/128), as SNGAN's and WGAN-GP's
    code feed D, instead of x/127.5 - 1."""
    return Digits(resolution, xflip).with_dequantize(dequantize)


# --------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX files, torchvision's folder layout)
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x00 0x00 dtype ndim, big-endian sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - offset < count * dtype.itemsize:
        raise DataError(f"{path} is truncated ({len(raw)} bytes for shape {dims})")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims)


class IdxImages(TensorSource):
    """MNIST-format data: {root}/{folder}/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""

    def __init__(self, name: str, tv_class: str, root: str, split: str, resolution: int, download: bool,
                 xflip: bool = False):
        super().__init__(DataInfo(name, (1, resolution, resolution), num_classes=10), xflip)
        self.tv_class = tv_class
        self.raw = Path(root).expanduser() / tv_class / "raw"
        self.splits = ["train", "t10k"] if split == "all" else ["train" if split == "train" else "t10k"]
        self.resolution = resolution
        self.download = download
        if not download and self._missing():
            raise DataError(
                f"data: {name} not found: put {', '.join(self._missing())} (or their .gz) in {self.raw}, "
                "or set data.download=true"
            )

    def _files(self) -> list[str]:
        return [f"{s}-{kind}" for s in self.splits for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]

    def _find(self, name: str) -> Path | None:
        for candidate in (self.raw / name, self.raw / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def _missing(self) -> list[str]:
        return [n for n in self._files() if self._find(n) is None]

    def _fetch(self) -> None:
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(tvd, self.tv_class)
        self.raw.mkdir(parents=True, exist_ok=True)
        for filename, md5 in cls.resources:
            if self._find(filename.removesuffix(".gz")) is not None:
                continue
            errors = []
            for mirror in cls.mirrors:
                try:
                    download_and_extract_archive(f"{mirror}{filename}", str(self.raw), filename=filename, md5=md5)
                    break
                except Exception as e:  # network errors come in many types; all mean "try the next mirror"
                    errors.append(f"{type(e).__name__}")
            else:
                raise DataError(
                    f"could not download {self.info.name} ({filename}: {', '.join(errors)}); "
                    f"offline, put the files in {self.raw}"
                )

    def fetched(self) -> bool:
        return not self._missing()

    def prepare(self) -> None:
        if self.download and self._missing():
            self._fetch()

    def load(self) -> tuple[Tensor, Tensor]:
        self.prepare()
        xs, ys = [], []
        for s in self.splits:
            images = read_idx(self._find(f"{s}-images-idx3-ubyte"))  # type: ignore[arg-type]
            labels = read_idx(self._find(f"{s}-labels-idx1-ubyte"))  # type: ignore[arg-type]
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(f"{self.raw}: {s} images {images.shape} do not match labels {labels.shape}")
            xs.append(torch.from_numpy(images.astype(np.uint8)).unsqueeze(1))
            ys.append(torch.from_numpy(labels.astype(np.int64)))
        return resize_images(torch.cat(xs), self.resolution), torch.cat(ys)


Split = Literal["train", "test", "all"]


@DATASETS.register("mnist")
def mnist(root: str = "data", split: Split = "train", resolution: Resolution = 32, download: bool = False,
          xflip: bool = False, dequantize: bool = False) -> IdxImages:
    """MNIST handwritten digits (60k train / 10k test, 10 classes), resized; torchvision download."""
    return IdxImages("mnist", "MNIST", root, split, resolution, download, xflip).with_dequantize(dequantize)


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: str = "data", split: Split = "train", resolution: Resolution = 32, download: bool = False,
                  xflip: bool = False, dequantize: bool = False) -> IdxImages:
    """Fashion-MNIST clothing images (60k train / 10k test, 10 classes), resized; torchvision download."""
    return IdxImages("fashion_mnist", "FashionMNIST", root, split, resolution, download,
                     xflip).with_dequantize(dequantize)


# --------------------------------------------------------------------------------------------
# CIFAR-10 (python batches)
# --------------------------------------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batch files: dicts, lists, bytes and numpy arrays; nothing else is built."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            core = getattr(np, "_core", None) or np.core
            return core.multiarray._reconstruct
        return getattr(np, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one CIFAR-10 python batch file."""
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DataError(f"{path} is not a readable CIFAR-10 batch ({e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch (no dict inside)")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 batch (missing data or labels)")
    data = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(labels, dtype=np.int64)
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


class Cifar10(TensorSource):
    FOLDER = "cifar-10-batches-py"

    def __init__(self, root: str, split: str, resolution: int, download: bool, xflip: bool = False) -> None:
        super().__init__(DataInfo("cifar10", (3, resolution, resolution), num_classes=10), xflip)
        self.root = Path(root).expanduser()
        self.folder = self.root / self.FOLDER
        names = [f"data_batch_{i}" for i in range(1, 6)]
        self.files = {"train": names, "test": ["test_batch"], "all": [*names, "test_batch"]}[split]
        self.resolution = resolution
        self.download = download
        if not download and self._missing():
            raise DataError(
                f"data: cifar10 not found: put {', '.join(self._missing())} in {self.folder} "
                f"(unpack cifar-10-python.tar.gz in {self.root}), or set data.download=true"
            )

    def _missing(self) -> list[str]:
        return [n for n in self.files if not (self.folder / n).is_file()]

    def _fetch(self) -> None:
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(CIFAR10.url, str(self.root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
        except Exception as e:  # network errors come in many types
            raise DataError(
                f"could not download CIFAR-10 ({type(e).__name__}); offline, unpack cifar-10-python.tar.gz "
                f"so that {self.folder} holds {', '.join(self.files)}"
            ) from None

    def fetched(self) -> bool:
        return not self._missing()

    def prepare(self) -> None:
        if self.download and self._missing():
            self._fetch()

    def load(self) -> tuple[Tensor, Tensor]:
        self.prepare()
        parts = [read_cifar_batch(self.folder / n) for n in self.files]
        x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        return resize_images(x, self.resolution), y


@DATASETS.register("cifar10")
def cifar10(root: str = "data", split: Split = "train", resolution: Resolution = 32, download: bool = False,
            xflip: bool = False, dequantize: bool = False) -> Cifar10:
    """CIFAR-10 32x32 colour images (50k train / 10k test, 10 classes); torchvision download."""
    return Cifar10(root, split, resolution, download, xflip).with_dequantize(dequantize)
