"""Progress output: a bar on a terminal, one plain line per log step in a batch job's log."""

from __future__ import annotations

import io

import pytest

from ganforge import progress
from ganforge.progress import Progress, duration


class Clock:
    """A stand-in for time.perf_counter that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


RECORD = {"d_loss": 0.5, "g_loss": 1.25, "lr_g": 2e-4, "lr_d": 2e-4, "img_per_s": 1234.4, "images_seen": 0}


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", fake)
    return fake


def test_off_a_terminal_plain_lines_for_the_first_record_then_every_interval_and_the_end(clock):
    out = io.StringIO()
    bar = Progress(total=200, desc="grid", stream=out)  # StringIO is no terminal: plain lines by default
    assert not bar.interactive
    for _ in range(50):
        bar.update()
    assert out.getvalue() == ""  # steps alone write nothing before LINE_INTERVAL has passed
    clock.now += 10.0  # 50 steps in 10 s: the other 150 take 30 s
    bar.show({"step": 50, **RECORD})  # the first record: a line at once
    for step in (100, 150):  # 10 s apart: the first is too soon, the second 20 s after the last line
        for _ in range(50):
            bar.update()
        clock.now += 10.0
        bar.show({"step": step, **RECORD})
    for _ in range(50):
        bar.update()
    clock.now += 1.0
    bar.show({"step": 200, **RECORD})  # the end: always
    bar.close()
    lines = out.getvalue().splitlines(keepends=True)
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert lines[0] == ("grid step  50/200 ( 25%) d_loss=0.500 g_loss=1.250 lr=2.0e-04 img/s=1234 "
                        "elapsed=10s eta=30s\n")
    assert lines[1].startswith("grid step 150/200 ( 75%) d_loss=0.500 ") and lines[1].endswith("elapsed=30s eta=10s\n")
    assert lines[2].startswith("grid step 200/200 (100%) ") and lines[2].endswith("eta=0s\n")


def test_a_count_without_records_writes_a_line_per_interval_and_a_last_one(clock):
    """sample, interpolate, project, dataset and feature extraction count images or steps."""
    out = io.StringIO()
    with Progress(total=1000, desc="generating", unit="images", stream=out) as bar:
        for _ in range(100):
            clock.now += 1.0  # 10 images a second: 100 s in all
            bar.update(10)
    lines = out.getvalue().splitlines()
    assert lines == ["generating images  200/1000 ( 20%) elapsed=20s eta=1m20s",
                     "generating images  400/1000 ( 40%) elapsed=40s eta=1m00s",
                     "generating images  600/1000 ( 60%) elapsed=1m00s eta=40s",
                     "generating images  800/1000 ( 80%) elapsed=1m20s eta=20s",
                     "generating images 1000/1000 (100%) elapsed=1m40s eta=0s"]
    short = io.StringIO()
    with Progress(total=1000, stream=short, unit="images") as bar:  # done within the interval: silent
        for _ in range(100):
            clock.now += 0.1
            bar.update(10)
    assert short.getvalue() == ""


def test_reset_after_a_rollback_counts_from_the_restored_step(clock):
    out = io.StringIO()
    bar = Progress(total=100, initial=40, stream=out, interactive=False)
    clock.now += 60.0
    bar.reset(total=100, initial=20)  # rolled back to step 20
    clock.now += 8.0
    bar.show({"step": 60, "d_loss": 1.0, "g_loss": 1.0})  # 40 steps in 8 s since the reset: 40 more take 8 s
    assert out.getvalue() == "step  60/100 ( 60%) d_loss=1.000 g_loss=1.000 elapsed=1m08s eta=8s\n"


def test_resumed_run_speed_counts_from_the_resumed_step(clock):
    out = io.StringIO()
    bar = Progress(total=1000, initial=900, stream=out, interactive=False)
    clock.now += 5.0
    bar.show({"step": 950})
    assert "step  950/1000 ( 95%)" in out.getvalue() and out.getvalue().endswith("eta=5s\n")


def test_on_a_terminal_a_tqdm_bar_with_the_figures_as_postfix(clock):
    out = Terminal()
    bar = Progress(total=20, desc="run", stream=out)
    assert bar.interactive
    for step in range(1, 21):
        bar.update()
        if step % 10 == 0:
            bar.show({"step": step, **RECORD})
    bar.close()
    text = out.getvalue()
    assert "\r" in text and "run" in text and "20/20" in text  # a redrawn bar
    assert "d=0.500 g=1.250 lr=2.0e-04 img/s=1234" in text
    assert "eta=" not in text  # the plain-line format stays off terminals


@pytest.mark.parametrize("interactive", [True, False])
def test_disabled_writes_nothing(interactive):
    out = Terminal() if interactive else io.StringIO()
    bar = Progress(total=10, stream=out, enabled=False, interactive=interactive)
    for _ in range(10):
        bar.update()
    bar.show({"step": 10, **RECORD})
    bar.reset(total=10)
    bar.close()
    assert out.getvalue() == ""


def test_a_stream_that_cannot_say_counts_as_no_terminal():
    class Closed(io.StringIO):
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    assert not Progress(total=1, stream=Closed()).interactive


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (7620, "2h07m"),
                                               (float("inf"), "?"), (-1, "?")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_a_long_run_logs_a_few_lines_a_minute_whatever_log_every(clock):
    out = io.StringIO()
    total, every = 16000, 200
    bar = Progress(total=total, desc="gaussian_grid", stream=out, interactive=False)
    for step in range(1, total + 1):
        clock.now += 0.01  # 160 s in all, a record every 2 s
        bar.update()
        if step % every == 0:
            bar.show({"step": step, **RECORD})
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) <= 160 / progress.LINE_INTERVAL + 2  # the first record, one per interval, the end
    assert all("d_loss=0.500" in line for line in lines)  # lines come at log steps, with their figures
    assert lines[-1].startswith("gaussian_grid step 16000/16000 (100%)")
    assert len(out.getvalue()) < 150 * len(lines)


def test_records_far_apart_get_a_count_line_between_them(clock):
    out = io.StringIO()
    bar = Progress(total=100, stream=out)
    bar.show({"step": 0, **RECORD})
    for _ in range(50):
        clock.now += 1.0  # log.every far beyond LINE_INTERVAL: the count still moves on in the log
        bar.update()
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == ["step   0/100", "step  20/100",
                                                                            "step  40/100"]
