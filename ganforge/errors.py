"""Errors meant for users: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


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


class TrainingAborted(GanforgeError):
    """Training stopped early (signal, non-finite values, full disk); the message says what to do."""

    exit_code = 1
