"""What every `ganforge` command shares: one-line errors and warnings, and common options."""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import typer

from ganforge.errors import GanforgeError


def err(message: str) -> None:
    """One line on stderr."""
    typer.echo(message, err=True)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn GanforgeError into `error: message` and its exit code, without a traceback, and
    print warnings as single `warning: message` lines as they happen."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = _one_line_warning
            try:
                return fn(*args, **kwargs)
            except GanforgeError as e:
                err("error: " + " ".join(str(e).split()))  # always one line
                raise typer.Exit(e.exit_code) from None
            except OSError as e:  # a file-system failure no command anticipated: still one line
                where = f" {e.filename}" if e.filename else ""
                err(f"error: could not access{where} ({e.strerror or type(e).__name__}); "
                    "check the path, its permissions and the free space")
                raise typer.Exit(1) from None

    return wrapper


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    err("warning: " + " ".join(str(message).split()))


CLASS_OPTION = typer.Option(None, "--class", "-c", min=0, help="Only this class (conditional generators).")
TRUNCATION_OPTION = typer.Option(None, "--truncation", "-t", min=0.0, max=1.0,
                                 help="The truncation trick: stylegan2's psi in w (0 = the average w, 1 = none); for "
                                      "dcgan, resnet, biggan and mlp the threshold of the truncated normal z is "
                                      "drawn from, in (0, 1] (BigGAN's).")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress bar.")
JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON.")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as indented JSON at `path` (its folder made); a failed write is one line naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
    except OSError as e:
        raise GanforgeError(f"cannot write {path} ({e.strerror or e})") from None


def refuse_overwriting(outputs: Iterable[Path], inputs: Iterable[Path], option: str = "--out") -> None:
    """Refuse, in one line, to write an output over one of the files the command reads: the same
    file by any name (another spelling of the path, a link)."""
    read = {key: path for path in inputs if (key := _file_id(path)) is not None}
    for out in outputs:
        if (key := _file_id(out)) in read:
            raise GanforgeError(f"{option} {out} would overwrite {read[key]}, which this command reads; choose "
                                f"another {option}")


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (links followed), None for anything else."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if not os.path.isdir(path) else None
