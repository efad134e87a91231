"""The clip index: one row per clip file, in the bridge's database (see ``bridge.db``).

Rows are written by the recorder (``source='live'``) and, later, by the cloud-archive download
(``source='cloud'``, keyed by a unique ``activity_id``). ``uploaded`` is the S3 queue's state
column (``no`` until an uploader claims it). ``path`` and ``thumbnail`` are relative to the
clips folder, so the folder can move. Times are Unix seconds (UTC).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from bridge.db import Database
from bridge.record.errors import RecordError

__all__ = ["Clip", "ClipDict", "ClipIndex", "ClipPage", "ClipSource", "ClipState"]

ClipState = Literal["recording", "done", "failed"]
ClipSource = Literal["live", "cloud"]

_COLUMNS = (
    "device_id",
    "device",
    "event",
    "start",
    "end",
    "duration",
    "size",
    "video_codec",
    "audio_codec",
    "width",
    "height",
    "preroll",
    "source",
    "activity_id",
    "path",
    "thumbnail",
    "state",
    "uploaded",
    "note",
)
_SELECT = "SELECT id, " + ", ".join(f'"{c}"' for c in _COLUMNS) + " FROM clips"  # noqa: S608


class ClipDict(TypedDict):
    """A clip as the API gives it: every ``Clip`` field, then its times in ISO 8601."""

    device_id: str
    device: str
    event: str
    start: float  # Unix seconds
    path: str
    state: ClipState
    end: float | None
    duration: float
    size: int
    video_codec: str
    audio_codec: str
    width: int
    height: int
    preroll: float
    source: ClipSource
    activity_id: str | None
    thumbnail: str | None
    uploaded: str
    note: str
    id: int
    start_iso: str
    end_iso: str | None


@dataclass(frozen=True)
class Clip:
    """One indexed clip."""

    device_id: str
    device: str  # the stream name (slug), also the clip's folder
    event: str
    start: float
    path: str  # relative to the clips folder
    state: ClipState = "done"
    end: float | None = None
    duration: float = 0.0
    size: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    width: int = 0
    height: int = 0
    preroll: float = 0.0
    source: ClipSource = "live"
    activity_id: str | None = None
    thumbnail: str | None = None
    uploaded: str = "no"
    note: str = ""  # why a clip failed or ended early
    id: int = 0  # 0 until indexed

    def as_dict(self) -> ClipDict:
        """JSON-friendly fields, with ISO-8601 times beside the Unix ones."""
        # Spelt out rather than dataclasses.asdict, so mypy checks each value against the
        # declared shape; the keys keep the fields' order, as the API has always given them.
        return {
            "device_id": self.device_id,
            "device": self.device,
            "event": self.event,
            "start": self.start,
            "path": self.path,
            "state": self.state,
            "end": self.end,
            "duration": self.duration,
            "size": self.size,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "width": self.width,
            "height": self.height,
            "preroll": self.preroll,
            "source": self.source,
            "activity_id": self.activity_id,
            "thumbnail": self.thumbnail,
            "uploaded": self.uploaded,
            "note": self.note,
            "id": self.id,
            "start_iso": _iso(self.start),
            "end_iso": _iso(self.end) if self.end is not None else None,
        }


@dataclass(frozen=True)
class ClipPage:
    """A page of clips, newest first; pass ``next_cursor`` back for the next page."""

    clips: list[Clip]
    next_cursor: str | None


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds")


def _row_to_clip(row: Any) -> Clip:
    return Clip(id=row["id"], **{c: row[c] for c in _COLUMNS})


class ClipIndex:
    """Queries and updates of the ``clips`` table (blocking: call from a thread)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, clip: Clip) -> Clip:
        """Insert a clip; returns it with its id. Raises RecordError on a duplicate path/activity."""
        values = [getattr(clip, c) for c in _COLUMNS]
        names = ", ".join(f'"{c}"' for c in _COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)
        try:
            new_id = self.db.execute(f"INSERT INTO clips ({names}) VALUES ({marks})", values)  # noqa: S608
        except sqlite3.IntegrityError as err:
            raise RecordError(f"clip already indexed: {err}") from err
        return dataclasses.replace(clip, id=new_id)

    def update(self, clip_id: int, **fields: Any) -> Clip | None:
        """Change some columns of one clip; returns the updated clip."""
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown clip columns: {sorted(unknown)}")
        if fields:
            sets = ", ".join(f'"{name}" = ?' for name in fields)
            self.db.execute(
                f"UPDATE clips SET {sets} WHERE id = ?",  # noqa: S608 (names checked above)
                [*fields.values(), clip_id],
            )
        return self.get(clip_id)

    def get(self, clip_id: int) -> Clip | None:
        """The clip with this id."""
        rows = self.db.query(f"{_SELECT} WHERE id = ?", (clip_id,))
        return _row_to_clip(rows[0]) if rows else None

    def find(self, *, path: str | None = None, activity_id: str | None = None) -> Clip | None:
        """The clip with this relative path or cloud activity id."""
        column, value = ("path", path) if path is not None else ("activity_id", activity_id)
        rows = self.db.query(f'{_SELECT} WHERE "{column}" = ?', (value,))
        return _row_to_clip(rows[0]) if rows else None

    def delete(self, clip_id: int) -> bool:
        """Remove one row (the files are the store's business)."""
        return self.db.execute("DELETE FROM clips WHERE id = ?", (clip_id,)) > 0

    def query(
        self,
        *,
        device: str | None = None,
        event: str | None = None,
        since: float | None = None,
        until: float | None = None,
        source: str | None = None,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
        cursor: str | None = None,
    ) -> ClipPage:
        """Clips newest first, filtered; ``device`` matches the slug or the device id.

        Page with ``cursor`` (stable while clips are added) or ``offset``.
        """
        where: list[str] = []
        params: list[Any] = []
        if device is not None:
            where.append("(device = ? OR device_id = ?)")
            params += [device, device]
        for column, value in (("event", event), ("source", source), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("start >= ?")
            params.append(since)
        if until is not None:
            where.append("start < ?")
            params.append(until)
        if cursor is not None:
            start, clip_id = _parse_cursor(cursor)
            where.append("(start < ? OR (start = ? AND id < ?))")
            params += [start, start, clip_id]
        limit = max(1, min(int(limit), 1000))
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY start DESC, id DESC LIMIT ? OFFSET ?"
        rows = self.db.query(sql, [*params, limit + 1, max(0, int(offset))])
        clips = [_row_to_clip(r) for r in rows[:limit]]
        more = len(rows) > limit
        next_cursor = f"{clips[-1].start!r}:{clips[-1].id}" if more and clips else None
        return ClipPage(clips, next_cursor)

    def all(self, *, states: Sequence[str] = ("recording", "done", "failed")) -> list[Clip]:
        """Every clip in the given states, oldest first (for retention and reindexing)."""
        marks = ", ".join("?" for _ in states)
        rows = self.db.query(
            f"{_SELECT} WHERE state IN ({marks}) ORDER BY start, id",
            list(states),
        )
        return [_row_to_clip(r) for r in rows]

    def remote_only(self) -> set[int]:
        """Ids of clips whose file now lives only in S3 (uploaded, then deleted locally)."""
        return {int(r[0]) for r in self.db.query("SELECT id FROM clips WHERE local = 0")}

    def total_size(self) -> int:
        """Bytes of all finished clips (``recording`` rows are sized by the store)."""
        rows = self.db.query("SELECT COALESCE(SUM(size), 0) FROM clips WHERE state != 'recording'")
        return int(rows[0][0])


def _parse_cursor(cursor: str) -> tuple[float, int]:
    # The cursor comes back from a client: SQLite raises OverflowError for an id past 64 bits.
    start, _, clip_id = cursor.partition(":")
    try:
        when = float(start)
        ok = math.isfinite(when) and clip_id.isascii() and clip_id.isdigit() and len(clip_id) < 19
    except ValueError:
        ok = False
    if not ok:
        raise RecordError(f"bad cursor {cursor[:40]!r}")
    return when, int(clip_id)
