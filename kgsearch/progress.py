"""Progress of long work inside one step (a training epoch, an evaluation pass, the preparation).

On a terminal: one self-overwriting line with a bar, the rate and the time left. Elsewhere (a Ray job
log, a file): a plain line every `every_s` seconds, so a minutes-long DKGR epoch is not silent.
Recipes take a `progress` factory and call it for each long loop; the default is silent, so tests and
sweep trials (which report per epoch through Tune) print nothing.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, TextIO


class Progress:
    def __init__(self, what: str, total: int, stream: TextIO | None = None, every_s: float = 30.0):
        self.what, self.total, self.done = what, max(int(total), 1), 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = 0.2 if self.tty else every_s
        self.started = self.shown = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.shown >= self.every_s and self.done < self.total:
            self.shown = now
            self._show(now)

    def close(self) -> None:
        if self.tty and self.done:
            self._show(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, now: float) -> None:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        share = self.done / self.total
        text = (f"{self.what}: {self.done}/{self.total} ({share:4.0%}) {rate:.1f}/s, "
                f"{_clock(elapsed)} elapsed, {_clock(left)} left")
        if self.tty:
            bar = "#" * int(20 * share)
            self.stream.write(f"\r{self.what}: [{bar:<20}] {text[len(self.what) + 2:]}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


ProgressFactory = Callable[[str, int], "Progress | _Silent"]


def silent(what: str, total: int) -> _Silent:
    return _Silent()


def console(what: str, total: int) -> Progress | _Silent:
    """Progress on stderr, unless $KGSEARCH_PROGRESS=0."""
    return _Silent() if os.environ.get("KGSEARCH_PROGRESS") == "0" else Progress(what, total)


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: no rate yet
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
