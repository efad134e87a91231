"""A fixed-bucket histogram small enough to keep per stream and to fill on the media path.

It only counts (a bisect and two additions per observation); ``/metrics`` turns its stats into
a Prometheus histogram family at scrape time, and ``/api/streams`` shows them as they are.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import TypedDict

__all__ = ["FIRST_FRAME_BOUNDS", "Histogram", "HistogramStats"]

# Seconds from asking for a live call to its first picture: the simulator answers in about a
# second, a real SkyBell in 3 to 8 (the cloud wakes the doorbell, then KVS and ICE run).
FIRST_FRAME_BOUNDS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0)


class HistogramStats(TypedDict):
    """Observations per bucket; ``counts`` has one entry more than ``bounds``: the overflow."""

    bounds: list[float]  # upper bounds, inclusive, as Prometheus' ``le``
    counts: list[int]  # per bucket, not cumulative
    sum: float
    count: int


class Histogram:
    """Counts of observations at or under each bound."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bounds must increase")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def stats(self) -> HistogramStats:
        """A JSON-friendly copy."""
        return {
            "bounds": list(self.bounds),
            "counts": list(self.counts),
            "sum": round(self.sum, 3),
            "count": self.count,
        }
