"""Training progress: a live bar on a terminal, one plain line per log step anywhere else.

A batch job's log is a file: a tqdm bar there is a stream of carriage-return redraws (10 a
second, hundreds of KB per run) that no one can read. Off a terminal, `Progress` instead writes
one line per log step, with the step, the losses, the speed and the time left.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ganforge.logrecord import D_LOSS, G_LOSS, IMG_PER_S, LOSSES, LR_G, SKIPPED_IMAGES, STEP


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: short enough for a progress line."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Steps done out of `total`: a tqdm bar when `interactive` (default: stderr is a terminal),
    otherwise a line per `show()` on `stream`; nothing at all unless `enabled`."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", enabled: bool = True,
                 interactive: bool | None = None, stream: TextIO | None = None, unit: str = "step") -> None:
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            interactive = _is_terminal(self.stream)
        self.enabled, self.interactive, self.desc, self.unit = enabled, interactive, desc, unit
        self.total, self.n = total, initial
        self._bar: Any = None
        if enabled and interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, desc=desc or None,
                             file=self.stream)
        self._created = time.perf_counter()
        self._start = (self._created, initial)  # the speed, and so the time left, counts from here

    def update(self, n: int = 1) -> None:
        """`n` more steps done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def show(self, record: dict[str, Any]) -> None:
        """A log step's figures (`d_loss`, `g_loss`, `lr_g`, `img_per_s`, ...): the bar's postfix on a
        terminal, one line otherwise."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(_figures(record, short=True), refresh=False)
            return
        step = int(record.get(STEP, self.n))
        now = time.perf_counter()
        done = step - self._start[1]
        eta = (self.total - step) * (now - self._start[0]) / done if done > 0 else math.inf
        elapsed = now - self._created
        width = len(str(self.total))
        percent = 100.0 * step / self.total if self.total else 100.0
        head = f"{self.desc} " if self.desc else ""
        self.stream.write(f"{head}{self.unit} {step:>{width}}/{self.total} ({percent:3.0f}%) {_figures(record)} "
                          f"elapsed={duration(elapsed)} eta={duration(eta)}\n")
        self.stream.flush()

    def write(self, line: str) -> None:
        """A line of text for the user, printed above the bar on a terminal (the bar stays whole)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def reset(self, total: int, initial: int = 0) -> None:
        """Start counting again (after a rollback): `initial` of `total` steps done."""
        self.total, self.n = total, initial
        self._start = (time.perf_counter(), initial)
        if self._bar is not None:
            self._bar.reset(total=total)
            self._bar.update(initial)

    def close(self) -> None:
        """End the bar (a no-op off a terminal: every line is already complete)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# (record key, label on the bar, format): the figures a progress line shows, in this order.
_SHOWN = ((D_LOSS, "d", ".3f"), (G_LOSS, "g", ".3f"), (LR_G, "lr", ".1e"), (IMG_PER_S, "img/s", ".0f"),
          (SKIPPED_IMAGES, "skipped", "d"))


def _figures(record: dict[str, Any], short: bool = False) -> str:
    """`d_loss=0.612 g_loss=1.234 ...` (`d=0.612 g=1.234 ...` on the bar) for the figures present."""
    parts = []
    for key, label, fmt in _SHOWN:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            name = label if short or key not in LOSSES else key
            parts.append(f"{name}={value:{fmt}}")
    return " ".join(parts)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
