"""Progress of every command: a live bar on a terminal, a few plain lines a minute anywhere else.

A batch job's log is a file: a tqdm bar there is a stream of carriage-return redraws (10 a
second, hundreds of KB per run) that no one can read. Off a terminal, `Progress` instead writes
a plain line at most every LINE_INTERVAL seconds: the count, the figures of the latest log
record (training: losses, speed), the time spent and the time left. `sample`, `interpolate`,
`project`, `dataset`, feature extraction and training all report through it.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ganforge.logrecord import D_LOSS, G_LOSS, IMG_PER_S, LOSSES, LR_G, SKIPPED_IMAGES, STEP

# Off a terminal, at most one line per this many seconds (besides the first log record and the
# end): three a minute in a batch log, however fast the steps.
LINE_INTERVAL = 20.0


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
    """`n` of `total` done (steps, images, frames: `unit`): a tqdm bar when `interactive` (default:
    the stream is a terminal), otherwise plain lines on `stream` at most every LINE_INTERVAL
    seconds; nothing at all unless `enabled`."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", enabled: bool = True,
                 interactive: bool | None = None, stream: TextIO | None = None, unit: str = "step",
                 leave: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            interactive = _is_terminal(self.stream)
        self.enabled, self.interactive, self.desc, self.unit = enabled, interactive, desc, unit
        self.total, self.n = total, initial
        self._bar: Any = None
        if enabled and interactive:
            from tqdm import tqdm

            # No monitor thread: a thread that takes SIGINT would run Python's handler in the main
            # thread even where it holds the signal back (the dataset tool's queue puts).
            tqdm.monitor_interval = 0
            self._bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, desc=desc or None,
                             file=self.stream, leave=leave)
        self._created = _now()
        self._start = (self._created, initial)  # the speed, and so the time left, counts from here
        self._last_line: float | None = None  # when the last plain line was written
        self._lines_at = -1  # the count the last plain line showed
        self._record: dict[str, Any] = {}  # the latest log record's figures, and when it came
        self._last_record = -math.inf

    def update(self, n: int = 1) -> None:
        """`n` more done; off a terminal, a line if the last one is LINE_INTERVAL old (counted from
        the start, so a task shorter than that writes none)."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and not self.interactive and _now() - self._quiet_since() >= LINE_INTERVAL:
            self._line(self.n)

    def _quiet_since(self) -> float:
        """Since when nothing was said: the last line or log record (a record that `show` did not
        print is left for the next one, which carries the figures), or the start."""
        return max(self._last_line or self._created, self._last_record)

    def show(self, record: dict[str, Any]) -> None:
        """A log step's figures (`d_loss`, `g_loss`, `lr_g`, `img_per_s`, ...): the bar's postfix on a
        terminal; otherwise a line for the first record, the last step and then at most every
        LINE_INTERVAL seconds."""
        if not self.enabled:
            return
        self._record, self._last_record = record, _now()
        if self._bar is not None:
            self._bar.set_postfix_str(_figures(record, short=True), refresh=False)
            return
        step = int(record.get(STEP, self.n))
        if self._last_line is None or step >= self.total or _now() - self._last_line >= LINE_INTERVAL:
            self._line(step)

    def _line(self, count: int) -> None:
        now = _now()
        done = count - self._start[1]
        eta = (self.total - count) * (now - self._start[0]) / done if done > 0 else math.inf
        width = len(str(self.total))
        percent = 100.0 * count / self.total if self.total else 100.0
        head = f"{self.desc} " if self.desc else ""
        figures = _figures(self._record) if self._record.get(STEP, count) == count else ""
        self.stream.write(f"{head}{self.unit} {count:>{width}}/{self.total} ({percent:3.0f}%) "
                          f"{figures + ' ' if figures else ''}elapsed={duration(now - self._created)} "
                          f"eta={duration(eta)}\n")
        self.stream.flush()
        self._last_line, self._lines_at = now, count

    def write(self, line: str) -> None:
        """A line of text for the user, printed above the bar on a terminal (the bar stays whole)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def reset(self, total: int, initial: int = 0) -> None:
        """Start counting again (after a rollback): `initial` of `total` done."""
        self.total, self.n = total, initial
        self._start = (_now(), initial)
        if self._bar is not None:
            self._bar.reset(total=total)
            self._bar.update(initial)

    def close(self) -> None:
        """End the bar; off a terminal, a last line with the final count if lines were written and
        the last one showed less."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self._last_line is not None and self._lines_at != self.n:
            self._line(self.n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _now() -> float:
    """The clock of progress lines (tests replace time.perf_counter)."""
    return time.perf_counter()


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
