"""Errors meant for users: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class GanforgeError(Exception):
    """A failure the user can fix; `str(error)` is the whole one-line message."""

    exit_code = 2


class ConfigError(GanforgeError):
    """The config (file, `--set` override or component parameter) is invalid."""


class DataError(GanforgeError):
    """A data set could not be found, downloaded or read."""


class CheckpointError(GanforgeError):
    """A checkpoint or run folder is missing, corrupt, unsafe or incompatible."""


class RunFolderError(GanforgeError):
    """The run folder cannot be used (exists, locked, unwritable)."""


class PeerError(GanforgeError):
    """Another process of a multi-process run died, never joined or stopped answering; the
    message says where this process was and what was saved."""

    exit_code = 1


class TrainingAborted(GanforgeError):
    """Training stopped early (signal, non-finite values, full disk); the message says what to do."""

    exit_code = 1


# --------------------------------------------------------------------------------------------
# Reading files: one error path for every file a command reads
# --------------------------------------------------------------------------------------------


def read_problem(error: BaseException) -> tuple[str, str] | None:
    """(where in the file, what went wrong) reading or decoding a file, e.g. (":3", "invalid YAML
    (...)"), or None for an error that is not about the file (a bug, which keeps its traceback)."""
    import json
    import pickle
    import zipfile

    import yaml

    if isinstance(error, FileNotFoundError):
        return "", "no such file"
    if isinstance(error, IsADirectoryError):
        return "", "is a folder, not a file"
    if isinstance(error, PermissionError):
        return "", "permission denied"
    if isinstance(error, UnicodeDecodeError):
        # Someone passed a checkpoint, an image or an archive where text belongs.
        byte = error.object[error.start : error.start + 1].hex()
        return "", f"not a text file (byte 0x{byte} at offset {error.start} is not UTF-8)"
    if isinstance(error, yaml.YAMLError):
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or (str(error).splitlines() or ["?"])[0]
        return where, f"invalid YAML ({problem})"
    if isinstance(error, json.JSONDecodeError):
        return f":{error.lineno}", f"invalid JSON ({error.msg})"
    if isinstance(error, (pickle.UnpicklingError, zipfile.BadZipFile, EOFError)):
        return "", f"damaged or of another kind ({type(error).__name__})"
    if isinstance(error, RecursionError):
        return "", "nested too deeply"
    if isinstance(error, ValueError) and "null byte" in str(error):
        return "", "not a valid file name (it contains a NUL character)"
    if isinstance(error, OSError):
        return "", f"cannot read it ({error.strerror or type(error).__name__})"
    return None


@contextlib.contextmanager
def reading(path: object, expected: str, error: type[GanforgeError] = ConfigError) -> Iterator[None]:
    """Read and decode `path` inside this block: a missing, unreadable or undecodable file becomes
    one `error` line naming the file and what it should be (`expected`, e.g. "a YAML config file")."""
    try:
        yield
    except GanforgeError:
        raise
    except Exception as e:
        found = read_problem(e)
        if found is None:
            raise
        where, problem = found
        raise error(f"{path}{where}: {problem}; expected {expected}") from None
