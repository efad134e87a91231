"""The event log: every event and the actions taken for it, in SQLite, with retention.

The tables live in the bridge's database (``CLIPS_DIR/index.sqlite3``, made by ``bridge.db``),
and the log uses the same connection as the clip index: ``open_database`` shares it. Its calls
run on one worker thread of the log's own, so SQLite work never runs on the event loop and its
statements run in the order they were asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from bridge.db import Database, open_database
from bridge.skybell.payloads import Event

__all__ = ["EventLog", "EventPage", "EventPageDict", "LoggedEvent", "LoggedResult"]

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

_COLUMNS = "id, device_id, device, type, time, source, sources, activity_id, known_device, payload"
# A result may be written a moment before its event (the rules engine and the log are separate
# subscribers); an orphan result is only dropped once it is this old.
_ORPHAN_GRACE = 300.0


class LoggedResult(TypedDict):
    """What one action did for a logged event."""

    action: str  # "<rule>: <action>"
    ok: bool
    detail: str
    time: str  # ISO 8601, UTC ("...Z")


class LoggedEvent(TypedDict):
    """An event as the log keeps it, with what the rules did about it."""

    id: str
    device_id: str
    device: str
    type: str
    time: str  # ISO 8601, UTC ("...Z")
    source: str  # the source that saw it first
    sources: list[str]  # every source that reported it
    activity_id: str | None
    known_device: bool
    payload: dict[str, Any]  # as the source gave it
    results: list[LoggedResult]


class EventPageDict(TypedDict):
    """The body of ``GET /api/events``."""

    events: list[LoggedEvent]  # newest first
    total: int  # events matching the filters
    limit: int
    offset: int
    next_offset: int | None  # None: this is the last page


@dataclass(frozen=True)
class EventPage:
    """One page of a query: events as dicts (with their action results), newest first."""

    events: list[LoggedEvent]
    total: int
    limit: int
    offset: int

    def as_dict(self) -> EventPageDict:
        """The JSON body of ``GET /api/events``."""
        following = self.offset + len(self.events)
        return {
            "events": self.events,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
            "next_offset": following if following < self.total else None,
        }


class EventLog:
    """Events and action results in SQLite; every method is async and runs off the loop."""

    def __init__(
        self,
        path: Path,
        *,
        max_age: float = 30 * 86400.0,
        max_rows: int = 100_000,
        prune_every: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_age = max_age
        self.max_rows = max_rows
        self._prune_every = prune_every
        self._clock = clock
        self._since_prune = 0
        self._db: Database | None = None
        self._pool: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._pool is None:
            raise RuntimeError("the event log is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _database(self) -> Database:
        assert self._db is not None
        return self._db

    async def open(self) -> None:
        """Open (creating and migrating if needed) the database, then prune; safe twice."""
        if self._pool is not None:
            return
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-log")
        await self._run(self._open_sync)
        await self.prune()

    def _open_sync(self) -> None:
        self._db = open_database(self.path)

    async def close(self) -> None:
        """Finish pending writes and close; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        await asyncio.get_running_loop().run_in_executor(pool, self._close_sync)
        pool.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- writing -------------------------------------------------------------------------------

    async def add(self, event: Event) -> None:
        """Store an event (a repeat of the same id replaces the row)."""
        await self._run(self._upsert, event)
        self._since_prune += 1
        if self._since_prune >= self._prune_every:
            self._since_prune = 0
            await self.prune()

    update = add  # a merged event rewrites its row: same id, more sources, maybe an activity id

    def _upsert(self, event: Event) -> None:
        self._database().execute(
            f"INSERT OR REPLACE INTO events ({_COLUMNS}, logged) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 - constant column list
            (
                event.id,
                event.device_id,
                event.device,
                event.type,
                event.time.timestamp(),
                event.source,
                json.dumps(list(event.sources or (event.source,))),
                event.activity_id,
                int(event.known_device),
                json.dumps(event.payload, default=str),
                self._clock(),
            ),
        )

    async def add_result(self, event_id: str, action: str, ok: bool, detail: str = "") -> None:
        """Record what an action did for an event (the rules engine calls this)."""
        await self._run(self._add_result, event_id, action, ok, detail)

    def _add_result(self, event_id: str, action: str, ok: bool, detail: str) -> None:
        self._database().execute(
            "INSERT INTO event_results (event_id, action, ok, detail, time) VALUES (?,?,?,?,?)",
            (event_id, action, int(ok), detail[:2000], self._clock()),
        )

    async def prune(self) -> int:
        """Delete events older than ``max_age`` and beyond ``max_rows``; returns rows deleted."""
        return await self._run(self._prune)

    def _prune(self) -> int:
        now = self._clock()
        with self._database().transaction() as db:
            deleted = self._prune_in(db, now)
        if deleted:
            _LOGGER.info("event log: pruned %d old events", deleted)
        return deleted

    def _prune_in(self, db: sqlite3.Connection, now: float) -> int:
        deleted = db.execute("DELETE FROM events WHERE time < ?", (now - self.max_age,)).rowcount
        deleted += db.execute(
            "DELETE FROM events WHERE rowid IN "
            "(SELECT rowid FROM events ORDER BY time DESC, rowid DESC LIMIT -1 OFFSET ?)",
            (self.max_rows,),
        ).rowcount
        db.execute(
            "DELETE FROM event_results WHERE time < ? AND event_id NOT IN (SELECT id FROM events)",
            (now - _ORPHAN_GRACE,),
        )
        return deleted

    # -- reading -------------------------------------------------------------------------------

    async def get(self, event_id: str) -> LoggedEvent | None:
        """One event with its results, or None."""
        page = await self._run(self._query, "id = ?", [event_id], 1, 0)
        return page.events[0] if page.events else None

    async def query(
        self,
        *,
        device: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> EventPage:
        """Events matching every given filter, newest first; ``device`` is a slug or an id."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if device:
            where.append("(device = ? OR device_id = ?)")
            args += [device, device]
        if type:
            where.append("type = ?")
            args.append(type)
        if since:
            where.append("time >= ?")
            args.append(since.timestamp())
        if until:
            where.append("time < ?")
            args.append(until.timestamp())
        return await self._run(self._query, " AND ".join(where), args, limit, offset)

    def _query(self, where: str, args: list[Any], limit: int, offset: int) -> EventPage:
        # Held for the three statements, so the page, its count and its results agree.
        with self._database().locked() as db:
            return self._query_in(db, where, args, limit, offset)

    def _query_in(
        self, db: sqlite3.Connection, where: str, args: list[Any], limit: int, offset: int
    ) -> EventPage:
        total = db.execute(f"SELECT COUNT(*) FROM events WHERE {where}", args).fetchone()[0]  # noqa: S608 - where is built from constants
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE {where} "  # noqa: S608 - as above
            "ORDER BY time DESC, rowid DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        events = [_row(r) for r in rows]
        if events:
            marks = ",".join("?" * len(events))
            results = {e["id"]: e["results"] for e in events}  # each event's own list
            for event_id, action, ok, detail, when in db.execute(
                "SELECT event_id, action, ok, detail, time FROM event_results "  # noqa: S608 - placeholders only
                f"WHERE event_id IN ({marks}) ORDER BY time, rowid",
                list(results),
            ):
                results[event_id].append(
                    {"action": action, "ok": bool(ok), "detail": detail, "time": _iso(when)}
                )
        return EventPage(events=events, total=int(total), limit=limit, offset=offset)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _row(row: tuple[Any, ...]) -> LoggedEvent:
    event_id, device_id, device, type_, when, source, sources, activity, known, payload = row
    return {
        "id": event_id,
        "device_id": device_id,
        "device": device,
        "type": type_,
        "time": _iso(when),
        "source": source,
        "sources": json.loads(sources),
        "activity_id": activity,
        "known_device": bool(known),
        "payload": json.loads(payload),
        "results": [],  # filled in by the query, from event_results
    }
