"""Activity polling: the slowest event source, and the one that works with no inbound path at all.

Every ``interval`` seconds the poller reads the newest activities and publishes an event for each
doorbell/motion activity it has not seen. An activity shows up in the list only after its video
is uploaded, with ``event_time`` set to the press, so each poll looks back ``lookback`` seconds
behind the last good poll; seen ids keep that overlap from producing repeats. After an outage the
look-back starts from the last good poll, so presses during the outage are still reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime

from bridge.errors import CloudError
from bridge.skybell.client import SkyBellClient
from bridge.skybell.directory import DeviceDirectory
from bridge.skybell.models import Activity
from bridge.skybell.payloads import PRESS_TYPES, Event, event_from_activity

__all__ = ["ActivityPoller"]

_LOGGER = logging.getLogger(__name__)
# A press in the second the bridge starts may carry a cloud time a little behind ours.
_CLOCK_SKEW = 2.0
_MAX_PAGES = 5  # a page is 50 rows; more than this per poll means the cloud ignored `start`


class ActivityPoller:
    """Polls the activity list with capped exponential backoff on errors."""

    def __init__(
        self,
        client: SkyBellClient,
        directory: DeviceDirectory,
        publish: Callable[[Event], object],
        *,
        interval: float = 10.0,
        max_backoff: float = 300.0,
        lookback: float = 300.0,
        backfill: float = 0.0,
        types: Collection[str] = PRESS_TYPES,
        page: int = 50,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.max_backoff = max_backoff
        self.lookback = lookback
        self.types = frozenset(types)
        self.failures = 0
        self.published = 0
        self._client = client
        self._directory = directory
        self._publish = publish
        self._page = page
        self._clock = clock
        self._sleep = sleep
        # Activities older than this are history, not news (unless backfill reaches back).
        self._floor = clock() - backfill - _CLOCK_SKEW
        self._last_ok: float | None = None
        self._seen: dict[str, float] = {}  # activity id -> event time (unix seconds)
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        """False while polls are failing."""
        return self.failures == 0

    def start(self) -> None:
        """Start polling in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="activity-poll")

    async def close(self) -> None:
        """Stop polling; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except CloudError as err:
                self._failed(str(err))
            except Exception as err:  # a bug here must not end polling for good
                _LOGGER.exception("activity poll failed unexpectedly")
                self._failed(type(err).__name__)
            else:
                if self.failures:
                    _LOGGER.info("activity polling back after %d failed polls", self.failures)
                self.failures = 0
            await self._sleep(self._delay())

    def _failed(self, why: str) -> None:
        self.failures += 1
        if self.failures == 1:
            _LOGGER.warning("activity polling unavailable (%s); retrying with backoff", why)

    def _delay(self) -> float:
        if not self.failures:
            return self.interval
        return float(min(self.interval * 2**self.failures, self.max_backoff))

    async def poll_once(self) -> int:
        """Read new activities and publish their events, oldest first; returns how many."""
        now = self._clock()
        # The first poll reaches back to the floor (backfill); later ones overlap the last one.
        last = self._last_ok
        since = self._floor if last is None else max(self._floor, last - self.lookback)
        # A dict: a row inserted between two page reads shifts the next page by one.
        fresh = {a.id: a for a in await self._read_since(since) if a.id not in self._seen}
        for activity in fresh.values():
            self._seen[activity.id] = activity.event_time.timestamp()
        self._last_ok = now
        self._seen = {k: t for k, t in self._seen.items() if t >= since - self.lookback}
        count = 0
        for activity in sorted(fresh.values(), key=lambda a: a.event_time):
            if (
                activity.event_type not in self.types
                or activity.event_time.timestamp() < self._floor
            ):
                continue
            if self._directory.foreign_id(activity.device_id):
                continue  # another bridge instance's doorbell: that bridge reports it
            device = self._directory.by_id.get(activity.device_id)
            self._publish(event_from_activity(activity, device))
            count += 1
        self.published += count
        return count

    async def _read_since(self, since: float) -> list[Activity]:
        """Activities from ``since`` on, following pages (newest first, so stop at older ones)."""
        start = datetime.fromtimestamp(since, UTC)
        found: list[Activity] = []
        for n in range(_MAX_PAGES):
            batch = await self._client.activities(
                start=start, limit=self._page, offset=n * self._page
            )
            # Filter here too: if the cloud ignores `start`, older rows must still be skipped.
            found += [a for a in batch if a.event_time.timestamp() >= since]
            if len(batch) < self._page or batch[-1].event_time.timestamp() < since:
                break
        return found
