"""Helpers of ``skybell-bridge clips sync``: ``--since`` parsing and a progress line.

Pure standard library: the parser is built with ``parse_since`` before any command runs, so
this module must not pull PyAV or aiohttp into every CLI start.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

__all__ = ["ProgressPrinter", "format_bytes", "format_progress", "parse_since"]

_SPAN_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2d``, ``12h``, ``30m``, ``90s``, ``1w`` ago, or an ISO date/time (local time unless it
    names a zone); returns an aware UTC datetime. Raises ValueError (argparse-friendly)."""
    match = _SPAN_RE.match(text)
    if match:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r}: expected a span like 2d, 12h or 30m, or a date like 2026-05-01"
        ) from None
    # A naive time is the user's wall clock: astimezone() reads it as local time.
    return when.astimezone(UTC)


def format_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KB`` (powers of 1024, as file managers show them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_progress(done: int, total: int, nbytes: int, elapsed: float, width: int = 24) -> str:
    """One status line: ``[#########---------------]  3/8 clips  1.2 MB  400.0 KB/s``."""
    filled = width if total == 0 else min(width, width * done // total)
    bar = "#" * filled + "-" * (width - filled)
    rate = f"  {format_bytes(nbytes / elapsed)}/s" if elapsed > 0 and nbytes else ""
    digits = len(str(total))
    return f"[{bar}] {done:>{digits}}/{total} clips  {format_bytes(nbytes)}{rate}"


class ProgressPrinter:
    """A ``progress(done, total, bytes)`` callback that redraws one line on a terminal.

    On a terminal the line is rewritten in place with ``\\r`` at most ``interval`` times a
    second; into a file or pipe it writes a line only when a clip finishes, so logs stay
    readable. Call ``finish()`` at the end to print the last state and a newline.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._width = 0  # of the line on screen, to blank what a shorter line leaves
        self._state = (0, 0, 0)
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int, nbytes: int) -> None:
        """Record progress; draw it if it is time to."""
        finished_one = done != self._state[0]
        self._state = (done, total, nbytes)
        now = self._clock()
        if self._tty and (finished_one or now - self._last_draw >= self.interval):
            self._draw(now, "\r")
        elif not self._tty and finished_one:
            self._draw(now, "", "\n")

    def finish(self) -> None:
        """Draw the final state and end the line."""
        self._draw(self._clock(), "\r" if self._tty else "", "\n")

    def _draw(self, now: float, start: str, end: str = "") -> None:
        self._last_draw = now
        line = format_progress(*self._state, elapsed=now - self._started)
        pad = " " * max(0, self._width - len(line)) if self._tty else ""
        self._width = len(line)
        self.stream.write(f"{start}{line}{pad}{end}")
        self.stream.flush()
