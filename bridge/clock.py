"""The clock that live media runs on: reading time and waiting for it, behind one small protocol.

The hub, its keyframe requests and the recorder take a ``Clock`` instead of calling
``time.monotonic``, ``loop.call_later`` and ``asyncio.sleep`` themselves, so tests can drive
them with virtual time (tests/virtual_clock.py) instead of sleeping through pre- and post-rolls.

``now()`` must be the clock that media packets are stamped with (``MediaPacket.arrival``):
pre-roll, silence and clip deadlines all compare the two. In production that is
``time.monotonic``, which the WebRTC source stamps with, and which asyncio's default event
loop uses for ``loop.time()`` too, so ``SYSTEM_CLOCK`` changes nothing about the timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "Timer"]


class Timer(Protocol):
    """A pending ``call_later``; ``asyncio.TimerHandle`` is one."""

    def cancel(self) -> None:
        """Do not call it after all (no-op once it ran)."""
        ...


class Clock(Protocol):
    """Monotonic time, wall time, timers and sleeps, all on one time line."""

    def now(self) -> float:
        """Monotonic seconds, on the scale of ``MediaPacket.arrival``."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for names and index rows people read."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` from the event loop ``delay`` seconds from now."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """Real time: ``time.monotonic``/``time.time`` and the running event loop's timers."""

    def now(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def wall(self) -> float:
        """``time.time()``."""
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """``loop.call_later`` on the running loop."""
        return asyncio.get_running_loop().call_later(delay, callback)

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
