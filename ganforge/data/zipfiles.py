"""StyleGAN2-ADA's data set zip: the names and labels in one (read), and a writer for one whose
memory does not grow with the number of files. Needs no torch (`ganforge dataset` uses it).

The writer stores members uncompressed and spools the central directory to an unnamed temporary
file until the archive is closed.

Python's `zipfile` keeps one `ZipInfo` (about 500 bytes) per member in memory until `close()`
writes the central directory from them: 10 MB for 20,000 images, 500 MB for a million. Here each
member's central-directory record is written to disk as the member is, and copied after the last
one. Zip64 records are written where the format needs them (over 65,535 members, or offsets past
4 GiB), as zipfile would. Every member has the same timestamp (1980-01-01), so the same images give
the same archive, byte for byte.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from ganforge.data.decode import IMAGE_SUFFIXES
from ganforge.errors import DataError

LABELS_FILE = "dataset.json"


def image_names(archive: zipfile.ZipFile) -> list[str]:
    """The image files in an archive, sorted (folders and macOS resource forks left out)."""
    return sorted(
        info.filename for info in archive.infolist()
        if not info.is_dir() and Path(info.filename).suffix.lower() in IMAGE_SUFFIXES
        and not info.filename.startswith("__MACOSX/")
    )


def read_labels_file(raw: bytes, where: str) -> tuple[dict[str, int] | None, list[str]]:
    """({image name: class index} or None when unlabelled, class names) from dataset.json's bytes."""
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{where} is not valid JSON ({e}); fix it or remove it") from None
    if not isinstance(meta, dict) or "labels" not in meta:
        raise DataError(f"{where}: expected {{\"labels\": [[name, label], ...]}} (or \"labels\": null)")
    entries = meta["labels"]
    if entries is None:
        return None, []
    if not isinstance(entries, list):
        raise DataError(f"{where}: \"labels\" must be a list of [name, label] pairs or null")
    labels: dict[str, int] = {}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DataError(f"{where}: each label must be a [name, label] pair, got {entry!r}")
        name, label = entry
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise DataError(f"{where}: the label of {name} is {label!r}; ganforge needs class indices 0, 1, 2, ... "
                            "(vector labels are not supported)")
        labels[name.replace("\\", "/")] = label
    names = meta.get("class_names")
    class_names = [str(n) for n in names] if isinstance(names, list) else []
    return labels, class_names


_LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header, without name and extra field
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory header, without name, extra, comment
_END = struct.Struct("<IHHHHIIH")  # end of central directory record
_END64 = struct.Struct("<IQHHIIQQQQ")  # zip64 end of central directory record
_LOCATOR64 = struct.Struct("<IIQI")  # zip64 end of central directory locator
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest date a zip can hold
_MAX16, _MAX32 = 0xFFFF, 0xFFFFFFFF
_VERSION, _VERSION64 = 20, 45  # 2.0: stored files and folders; 4.5: zip64
_UNIX = 3 << 8  # "made by" a Unix system: external attributes hold file modes
_FILE_MODE = 0o100644 << 16


class StoredZipWriter:
    """Writes members one after another into `file` (opened for binary writing); `close()` writes
    the central directory. Member sizes must stay under 4 GiB (each is one image or a JSON file)."""

    def __init__(self, file: BinaryIO, spool_dir: Path | None = None, force_zip64: bool = False) -> None:
        self.file = file
        self.offset = file.tell()
        self.count = 0
        self.force_zip64 = force_zip64  # for tests: zip64 records on a small archive
        self._central = tempfile.TemporaryFile(dir=spool_dir)  # unnamed: gone however the process ends
        self._central_size = 0

    def add(self, name: str, data: bytes) -> None:
        """One member holding `data`."""
        self._add(name, zlib.crc32(data), len(data), [data])

    def add_file(self, name: str, source: BinaryIO, chunk: int = 1 << 20) -> None:
        """One member holding what is left of `source` (a seekable file), copied in chunks."""
        start = source.tell()
        crc, size = 0, 0
        while block := source.read(chunk):
            crc, size = zlib.crc32(block, crc), size + len(block)
        source.seek(start)
        self._add(name, crc, size, iter(lambda: source.read(chunk), b""))

    def _add(self, name: str, crc: int, size: int, blocks: object) -> None:
        if size >= _MAX32:
            raise ValueError(f"{name}: {size} bytes is too large for a member of this writer")
        encoded = name.encode("utf-8")
        flags = 0 if encoded.isascii() else 0x800  # bit 11: the name is UTF-8
        header = _LOCAL.pack(0x04034B50, _VERSION, flags, 0, 0, _DOS_DATE, crc, size, size, len(encoded), 0)
        self.file.write(header + encoded)
        for block in blocks:  # type: ignore[attr-defined]
            self.file.write(block)
        # The central record: a zip64 extra field carries the offset where 32 bits cannot.
        extra = b""
        offset32 = self.offset
        if self.offset >= _MAX32 or self.force_zip64:
            extra, offset32 = struct.pack("<HHQ", 0x0001, 8, self.offset), _MAX32
        version = _VERSION64 if extra else _VERSION
        record = _CENTRAL.pack(0x02014B50, _UNIX | version, version, flags, 0, 0, _DOS_DATE, crc, size, size,
                               len(encoded), len(extra), 0, 0, 0, _FILE_MODE, offset32) + encoded + extra
        self._central.write(record)
        self._central_size += len(record)
        self.offset += len(header) + len(encoded) + size
        self.count += 1

    def close(self) -> None:
        """Write the central directory and the end records; the file stays open."""
        start = self.offset
        self._central.seek(0)
        shutil.copyfileobj(self._central, self.file, 1 << 20)
        self._central.close()
        size = self._central_size
        if self.force_zip64 or self.count >= _MAX16 or start >= _MAX32 or size >= _MAX32:
            end64 = start + size
            self.file.write(_END64.pack(0x06064B50, _END64.size - 12, _UNIX | _VERSION64, _VERSION64, 0, 0,
                                        self.count, self.count, size, start))
            self.file.write(_LOCATOR64.pack(0x07064B50, 0, end64, 1))
        self.file.write(_END.pack(0x06054B50, 0, 0, min(self.count, _MAX16), min(self.count, _MAX16),
                                  min(size, _MAX32), min(start, _MAX32), 0))
