"""Progress of one long stage, with an ETA: a tqdm bar on a terminal, a periodic one-line log otherwise.

Every training stage reports through :class:`Progress` (collection, CMA-ES generations, evaluation
episodes, and the Lightning fits of V, M and Dreamer through one callback in ``trainers/``), so a run
shows exactly one progress display per stage. Off a terminal (a log file, CI) it writes lines like::

    vae step 1200/4000 (30%), 2.1 steps/s, ETA 22 min; train/loss 0.0312

every ``every_seconds`` (30 s) or whenever another ``every_percent`` (25 %) of the total is done,
whichever comes first, and once more at the end (``done in ...``): a long run's log says where it is,
a tiny test run prints a handful of lines. The rate counts only the work done since this display began,
so a resumed stage does not claim the steps it inherited.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm.auto import tqdm


def format_duration(seconds: float) -> str:
    """``45 s``, ``22 min``, ``1.5 h``: the coarsest unit that still reads as a useful ETA."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_line(stage: str, done: int, total: int, *, unit: str, rate: float, detail: str = "",
                elapsed: float | None = None) -> str:
    """``{stage} {unit} {done}/{total} ({pct}%), {rate} {unit}s/s, ETA {eta}[; detail]``.

    ``elapsed`` (seconds) marks a finished stage: ``done in {elapsed}`` replaces the ETA.
    """
    percent = 100.0 * done / total if total > 0 else 100.0
    if elapsed is not None:
        timing = f"done in {format_duration(elapsed)}"
    else:
        timing = f"ETA {format_duration(max(total - done, 0) / rate)}" if rate > 0 else "ETA ?"
    line = f"{stage} {unit} {done}/{total} ({percent:.0f}%), {rate:.3g} {unit}s/s, {timing}"
    return f"{line}; {detail}" if detail else line


class Progress:
    """Counts ``initial .. total`` units of ``stage``; a bar when ``stream`` is a TTY, else periodic lines.

    ``tty`` overrides the detection; ``enabled=False`` shows nothing (``update`` / ``set`` still count).
    Use as a context manager or call :meth:`close`, which writes the final line.
    """

    def __init__(self, stage: str, total: int, *, unit: str = "step", initial: int = 0, stream: TextIO | None = None,
                 tty: bool | None = None, every_seconds: float = 30.0, every_percent: float = 25.0,
                 enabled: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        if total < 0 or initial < 0:
            raise ValueError(f"progress of {stage!r}: total {total} and initial {initial} must be >= 0")
        self.stage, self.total, self.unit, self.initial = stage, int(total), unit, int(initial)
        self.done = int(initial)
        self.detail = ""
        self.stream = stream if stream is not None else sys.stderr  # looked up now: pytest's capture replaces it
        self.every_seconds, self.every_percent, self.clock = every_seconds, every_percent, clock
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.started = self._last_time = clock()
        self._last_bucket = self._bucket(self.done)
        self._last_written: int | None = None  # close() always writes once
        self._closed = False
        self._bar = None
        if enabled and self.tty:
            self._bar = tqdm(total=self.total, initial=self.done, desc=stage, unit=unit, file=self.stream,
                             dynamic_ncols=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rate(self) -> float:
        """Units per second since this display began."""
        elapsed = self.clock() - self.started
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The current log line; ``done in`` the time this display ran once the total is reached."""
        elapsed = self.clock() - self.started
        return format_line(self.stage, self.done, self.total, unit=self.unit, rate=self.rate, detail=self.detail,
                           elapsed=elapsed if self.done >= self.total else None)

    def update(self, n: int = 1, *, detail: str | None = None) -> None:
        """``n`` more units done (``detail``: a short status appended to the line, e.g. a loss)."""
        self.set(self.done + n, detail=detail)

    def set(self, done: int, *, detail: str | None = None) -> None:
        """``done`` units done in total (e.g. a Trainer's ``global_step``)."""
        advanced = int(done) - self.done
        self.done = int(done)
        if detail is not None:
            self.detail = detail
        if not self.enabled or self._closed:
            return
        if self._bar is not None:
            if detail is not None:
                self._bar.set_postfix_str(detail, refresh=False)
            self._bar.update(advanced)
            return
        now, bucket = self.clock(), self._bucket(self.done)
        if bucket > self._last_bucket or now - self._last_time >= self.every_seconds or \
                (self.done >= self.total and self.done != self._last_written):
            self._write(self.line(), now, bucket)

    def close(self) -> None:
        """End the display: the bar closes; the log writes a final ``done in`` line if it has not shown this count."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self.done != self._last_written:
            self._write(self.line(), self.clock(), self._bucket(self.done))

    def _bucket(self, done: int) -> int:
        percent = 100.0 * done / self.total if self.total > 0 else 100.0
        return int(percent // self.every_percent) if self.every_percent > 0 else 0

    def _write(self, line: str, now: float, bucket: int) -> None:
        print(line, file=self.stream, flush=True)
        self._last_time, self._last_bucket, self._last_written = now, bucket, self.done
