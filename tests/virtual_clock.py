"""Virtual time for the hub and the recorder: a ``bridge.clock.Clock`` that tests move by hand.

Time stands still until a test calls ``advance`` or ``run_until``; these fire the due timers
one at a time, in order, and let the event loop settle after each one, so a five-second
post-roll costs milliseconds and every run sees the same packets in the same order.

Real work still runs in real time. "Settled" means the loop has nothing left to do *and*
no ``asyncio.to_thread`` call is in flight: the recorder indexes clips, checks free space and
makes thumbnails in threads, and virtual time must not race ahead of them (that would make a
millisecond of SQLite look like seconds of video). A clip's writer thread is not tracked: wait
for a finished clip's file in real time, after virtual time has stopped (``job.wait()``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["VirtualClock"]

_T = TypeVar("_T")
# Loop iterations that must pass with nothing in a thread before the loop counts as settled:
# enough for a timer's effects to ripple through (sleep -> packet -> hub -> subscriber ->
# recorder) however many tasks hand it on.
_SETTLE_ROUNDS = 12


class _Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock whose time moves only when the test says so (see the module docstring).

    Create it inside the running loop, before anything runs in a thread: it counts the loop's
    ``run_in_executor`` calls (``asyncio.to_thread``) to know when threads are busy.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        # Wall time starts at the real time, so clip names, retention ages and the index look
        # as they would; it then moves with virtual time.
        self._wall_offset = time.time() - start
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._in_threads = 0
        self._loop = asyncio.get_running_loop()
        self._track_threads()

    # -- the Clock protocol ------------------------------------------------------------------

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(self._now + max(delay, 0.0), callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)  # as asyncio.sleep(0): yield, nothing more
            return
        done = self._loop.create_future()
        timer = self.call_later(seconds, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            timer.cancel()

    # -- moving time ---------------------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Move time ``seconds`` on, firing every timer due meanwhile in order."""
        target = self._now + seconds
        await self._settle()
        while (timer := self._next_due(target)) is not None:
            await self._fire(timer)
        self._now = max(self._now, target)
        await self._settle()

    async def run_until(self, done: Callable[[], bool], *, limit: float = 60.0) -> None:
        """Move time on, timer by timer, until ``done()``; TimeoutError after ``limit``
        virtual seconds. Time stops the moment ``done()`` holds."""
        deadline = self._now + limit
        await self._settle()
        while not done():
            timer = self._next_due(deadline)
            if timer is None:
                self._now = max(self._now, deadline)
                raise TimeoutError(f"not done after {limit:g} virtual seconds")
            await self._fire(timer)

    async def run(self, aw: Awaitable[_T], *, limit: float = 60.0) -> _T:
        """Await ``aw`` while time moves on; it keeps moving while ``aw`` waits on real work
        too, so use ``run_until`` where what happens after the awaited moment matters."""
        task = asyncio.ensure_future(aw)
        try:
            await self.run_until(task.done, limit=limit)
        finally:
            if not task.done():
                task.cancel()
        return task.result()

    # -- internals -----------------------------------------------------------------------------

    def _next_due(self, until: float) -> _Timer | None:
        while self._timers:
            when, _, timer = self._timers[0]
            if timer.cancelled:
                heapq.heappop(self._timers)
                continue
            if when > until:
                return None
            heapq.heappop(self._timers)
            return timer
        return None

    async def _fire(self, timer: _Timer) -> None:
        self._now = max(self._now, timer.when)
        # From the loop, as a real timer would be: an exception is the loop's to report.
        self._loop.call_soon(self._call, timer)
        await self._settle()

    @staticmethod
    def _call(timer: _Timer) -> None:
        if not timer.cancelled:  # cancelled between its turn and its call, as asyncio allows
            timer.callback()

    async def _settle(self) -> None:
        quiet = 0
        while quiet < _SETTLE_ROUNDS:
            await asyncio.sleep(0)
            if self._in_threads:
                quiet = 0
                await asyncio.sleep(0.001)  # real time: a thread is working
            else:
                quiet += 1

    def _track_threads(self) -> None:
        original = self._loop.run_in_executor

        def run_in_executor(executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
            future = original(executor, func, *args)
            self._in_threads += 1
            # Counted down when the loop gets the result, so the awaiting task's wake-up is
            # already scheduled when the count reaches zero.
            future.add_done_callback(self._thread_done)
            return future

        self._loop.run_in_executor = run_in_executor  # type: ignore[method-assign]

    def _thread_done(self, _: object) -> None:
        self._in_threads -= 1
