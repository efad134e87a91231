"""The event bus: sources publish, duplicates across sources merge, subscribers each get a copy.

One press is usually reported three times: the UDP broadcast (instant, no activity id), the webhook
(a second or two later, with the activity id) and the activity list (whenever the poller looks).
The bus keeps recent events and treats a new report as the same event when

1. it has the same event id (the same report again: a retried webhook, a re-polled activity), or
2. it has the same device, type and activity id as a kept event, or
3. it is a press (doorbell/motion) of the same device and type whose time is within ``window``
   seconds of a kept event's, and the two do not carry different activity ids.

A duplicate is not delivered again. What it adds (an activity id, a preview, its source, payload
keys) is merged into the kept event, and the merged event goes to subscribers that asked for
updates (the event log rewrites its row); plain subscribers saw the event once and are not told.

Each subscriber has its own bounded queue, so a slow or failing one never holds up the others or
the publisher: when its queue is full the oldest entry is dropped and counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypedDict

from bridge.skybell.payloads import PRESS_TYPES, Event

__all__ = [
    "BusCounts",
    "BusStats",
    "EventBus",
    "EventQueue",
    "Published",
    "SubscriberStats",
    "Subscription",
]

_LOGGER = logging.getLogger(__name__)

Kind = Literal["new", "update"]
Callback = Callable[[Event], Awaitable[None]]
_Item = tuple[Kind, Event]


class _SubscriberFailures(TypedDict, total=False):
    # total=False, not NotRequired: Python 3.11 cannot see NotRequired at run time under
    # postponed annotations (tests/test_api_shapes.py reads __optional_keys__).
    failures: int  # callbacks that raised; a Subscription's only (a queue has no callback)


class SubscriberStats(_SubscriberFailures):
    """One subscriber's queue."""

    name: str
    queued: int
    dropped: int  # oldest deliveries dropped from a full queue


class BusCounts(TypedDict):
    """Reports published, and how many were new events or merged duplicates."""

    published: int
    new: int
    duplicates: int


class BusStats(BusCounts):
    """The bus in ``/api/events/stats``."""

    # Reports published, duplicates included: source ("udp", "webhook", ...) -> type -> count.
    by_source: dict[str, dict[str, int]]
    kept: int  # recent events kept for merging duplicates
    subscribers: list[SubscriberStats]


@dataclass(frozen=True)
class Published:
    """What ``publish`` did: the kept event (merged if a duplicate) and whether it was new."""

    event: Event
    new: bool
    changed: bool  # a duplicate that added something to the kept event


class _Sink:
    """A bounded queue of deliveries for one subscriber."""

    def __init__(self, bus: EventBus, name: str, max_queue: int, updates: bool) -> None:
        self.bus = bus
        self.name = name
        self.updates = updates
        self.dropped = 0
        self.closed = False
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._max = max_queue

    @property
    def queued(self) -> int:
        """Deliveries waiting."""
        return self._queue.qsize()

    def _put(self, item: _Item | None) -> None:
        # The end marker (None) may go over the bound: it must not cost a queued event.
        if item is not None and self._queue.qsize() >= self._max:
            self._queue.get_nowait()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                _LOGGER.warning(
                    "event subscriber %s is too slow: %d events dropped", self.name, self.dropped
                )
        self._queue.put_nowait(item)

    def deliver(self, kind: Kind, event: Event) -> None:
        """Queue one delivery without waiting."""
        if not self.closed and (kind == "new" or self.updates):
            self._put((kind, event))

    def close(self) -> None:
        """Stop receiving; whoever reads the queue sees the end. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.bus._remove(self)
        self._put(None)

    def stats(self) -> SubscriberStats:
        """Name, queue depth and drops."""
        return {"name": self.name, "queued": self.queued, "dropped": self.dropped}


class EventQueue(_Sink):
    """A subscriber that pulls: ``async for kind, event in queue`` until closed."""

    async def get(self) -> _Item | None:
        """The next delivery, or None once the queue is closed."""
        if self.closed and self._queue.empty():
            return None
        item = await self._queue.get()
        if item is None:
            self._put(None)  # stay closed for every later get()
        return item

    async def __aiter__(self) -> AsyncIterator[_Item]:
        while (item := await self.get()) is not None:
            yield item


class Subscription(_Sink):
    """A subscriber that is called: its own task awaits each callback in turn."""

    def __init__(
        self,
        bus: EventBus,
        name: str,
        on_event: Callback,
        on_update: Callback | None,
        max_queue: int,
    ) -> None:
        super().__init__(bus, name, max_queue, updates=on_update is not None)
        self.failures = 0
        self._on_event = on_event
        self._on_update = on_update
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"events:{name}")

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            kind, event = item
            callback = self._on_event if kind == "new" else self._on_update
            try:
                if callback is not None:
                    await callback(event)
            except Exception:
                self.failures += 1
                _LOGGER.exception("event subscriber %s failed on %s", self.name, event.type)

    async def cancel(self) -> None:
        """Stop now, dropping queued deliveries."""
        self.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def stats(self) -> SubscriberStats:
        """Name, queue depth, drops and callback failures."""
        return {**super().stats(), "failures": self.failures}


@dataclass
class _Entry:
    event: Event
    arrived: float


class EventBus:
    """Dedup and fan-out of events; publish from the event loop's thread."""

    def __init__(
        self,
        *,
        window: float = 5.0,
        memory: float = 3600.0,
        max_kept: int = 2048,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._memory = memory
        self._max_kept = max_kept
        self._clock = clock
        self._kept: OrderedDict[str, _Entry] = OrderedDict()  # first event id -> entry
        self._aliases: dict[str, str] = {}  # event id or activity key -> first event id
        self._sinks: list[_Sink] = []
        self._counts: BusCounts = {"published": 0, "new": 0, "duplicates": 0}
        self._by_source: dict[str, dict[str, int]] = {}
        self._closed = False

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(
        self,
        name: str,
        on_event: Callback,
        *,
        on_update: Callback | None = None,
        max_queue: int = 256,
    ) -> Subscription:
        """Call ``on_event`` once per new event (and ``on_update`` per merge), in order."""
        sub = Subscription(self, name, on_event, on_update, max_queue)
        self._sinks.append(sub)
        return sub

    def queue(self, name: str, *, updates: bool = False, max_queue: int = 256) -> EventQueue:
        """A queue of ("new"|"update", event) pairs to read at the subscriber's own pace."""
        sink = EventQueue(self, name, max_queue, updates)
        self._sinks.append(sink)
        return sink

    def _remove(self, sink: _Sink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, event: Event) -> Published:
        """Deliver ``event`` unless it duplicates a kept one, in which case merge it in."""
        self._counts["published"] += 1
        types = self._by_source.setdefault(event.source, {})
        types[event.type] = types.get(event.type, 0) + 1
        now = self._clock()
        self._prune(now)
        entry = self._match(event)
        if entry is None:
            self._counts["new"] += 1
            entry = _Entry(event, now)
            self._kept[event.id] = entry
            self._index(event.id, event)
            self._fan_out("new", event)
            return Published(event, new=True, changed=False)
        self._counts["duplicates"] += 1
        merged = _merge(entry.event, event)
        old = entry.event
        changed = (
            merged != old
            or merged.payload != old.payload
            or (merged.preview is None) != (old.preview is None)
        )
        if changed:
            entry.event = merged
            self._index(merged.id, merged)
            self._fan_out("update", merged)
        self._aliases.setdefault(event.id, merged.id)
        return Published(merged, new=False, changed=changed)

    def _match(self, event: Event) -> _Entry | None:
        for key in (event.id, _activity_key(event)):
            first = self._aliases.get(key) if key else None
            if first is not None and first in self._kept:
                return self._kept[first]
        if event.type not in PRESS_TYPES:
            return None
        best: _Entry | None = None
        best_gap = self.window
        for entry in reversed(self._kept.values()):
            kept = entry.event
            if kept.device_id != event.device_id or kept.type != event.type:
                continue
            if kept.activity_id and event.activity_id and kept.activity_id != event.activity_id:
                continue  # two activities: two presses, however close
            gap = abs((kept.time - event.time).total_seconds())
            if gap <= best_gap:
                best, best_gap = entry, gap
        return best

    def _index(self, first_id: str, event: Event) -> None:
        self._aliases[event.id] = first_id
        key = _activity_key(event)
        if key:
            self._aliases[key] = first_id

    def _prune(self, now: float) -> None:
        while self._kept:
            first_id, entry = next(iter(self._kept.items()))
            if now - entry.arrived <= self._memory and len(self._kept) <= self._max_kept:
                return
            del self._kept[first_id]
            for alias in [k for k, v in self._aliases.items() if v == first_id]:
                del self._aliases[alias]

    def _fan_out(self, kind: Kind, event: Event) -> None:
        for sink in list(self._sinks):
            sink.deliver(kind, event)

    # -- state ---------------------------------------------------------------------------------

    def recent(self, limit: int = 50) -> list[Event]:
        """The newest kept events (merged), newest first."""
        return [e.event for e in reversed(self._kept.values())][:limit]

    def stats(self) -> BusStats:
        """Counters and subscribers, for the API and tests."""
        return {
            **self._counts,
            "by_source": {source: dict(types) for source, types in self._by_source.items()},
            "kept": len(self._kept),
            "subscribers": [s.stats() for s in self._sinks],
        }

    async def close(self, grace: float = 5.0) -> None:
        """End every subscriber: callbacks get ``grace`` seconds to finish what is queued, then
        are cancelled. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        sinks, self._sinks = list(self._sinks), []
        for sink in sinks:
            sink.close()
        subs = [s for s in sinks if isinstance(s, Subscription)]
        if not subs:
            return
        _, stuck = await asyncio.wait([s._task for s in subs], timeout=grace)
        for task in stuck:
            _LOGGER.warning("event subscriber %s did not finish in time", task.get_name())
        await asyncio.gather(*(s.cancel() for s in subs))


def _activity_key(event: Event) -> str | None:
    if not event.activity_id:
        return None
    return f"activity|{event.device_id}|{event.type}|{event.activity_id}"


def _merge(kept: Event, later: Event) -> Event:
    """The kept event, completed with what a later report of it knows."""
    sources = kept.sources if later.source in kept.sources else (*kept.sources, later.source)
    return dataclasses.replace(
        kept,
        activity_id=kept.activity_id or later.activity_id,
        sources=sources,
        payload={**later.payload, **kept.payload},
        known_device=kept.known_device or later.known_device,
        preview=kept.preview or later.preview,
    )
