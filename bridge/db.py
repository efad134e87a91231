"""The bridge's one SQLite file (``<clips_dir>/index.sqlite3``): its connection and its schema.

Every table the bridge keeps (the clip index, the S3 upload columns, the cloud archive's memory
and the event log) is made by one ordered list of steps, ``MIGRATIONS``; ``PRAGMA user_version``
says how many the file has. They run when the file is opened, all in one transaction, so a
failed step leaves the file as it was. Steps are append-only: never edit a released one, add one.

One connection per file per process: ``open_database`` hands the clip store and the event log
the same ``Database``, and the cloud archive and the S3 uploader use the store's. The connection
is shared by threads behind a lock. Every call blocks for a few milliseconds (the open, which
migrates, for longer), so async code makes them in a thread: ``asyncio.to_thread``,
``Database.run``, ``open_database_async``, or the event log's own worker. Never on the loop.

A file written before the steps were numbered here (``user_version`` 0, with per-component
versions in a ``schema_versions`` table, and event tables made with ``IF NOT EXISTS``) is
adopted: a step whose tables are already there is counted as applied, the rest run, and the old
bookkeeping table is dropped. Its rows are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "FILE_NAME",
    "MIGRATIONS",
    "Database",
    "Migration",
    "open_database",
    "open_database_async",
]

_LOGGER = logging.getLogger(__name__)
_P = ParamSpec("_P")
_T = TypeVar("_T")

FILE_NAME = "index.sqlite3"  # in the clips folder, so the index moves with the clips


@dataclass(frozen=True)
class Migration:
    """One schema step: what it is for, its SQL, and how to spot it in an unversioned file."""

    name: str
    sql: str
    # For a file from before versioning (user_version 0): whether this step's effect is already
    # there. None means the step is newer than that scheme, so it always runs.
    present: Callable[[sqlite3.Connection], bool] | None = None


def _has_table(table: str) -> Callable[[sqlite3.Connection], bool]:
    def check(conn: sqlite3.Connection) -> bool:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return row is not None

    return check


def _has_column(table: str, column: str) -> Callable[[sqlite3.Connection], bool]:
    def check(conn: sqlite3.Connection) -> bool:
        return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))

    return check


# The DDL of the first four steps is what the per-component migrations (and the event log's own
# CREATE ... IF NOT EXISTS) wrote before, character for character, so a new file and an adopted
# one hold the same schema.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "clip index",
        """
    CREATE TABLE clips (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        device TEXT NOT NULL,
        event TEXT NOT NULL,
        start REAL NOT NULL,
        "end" REAL,
        duration REAL NOT NULL DEFAULT 0,
        size INTEGER NOT NULL DEFAULT 0,
        video_codec TEXT NOT NULL DEFAULT '',
        audio_codec TEXT NOT NULL DEFAULT '',
        width INTEGER NOT NULL DEFAULT 0,
        height INTEGER NOT NULL DEFAULT 0,
        preroll REAL NOT NULL DEFAULT 0,
        source TEXT NOT NULL DEFAULT 'live' CHECK (source IN ('live', 'cloud')),
        activity_id TEXT UNIQUE,
        path TEXT NOT NULL UNIQUE,
        thumbnail TEXT,
        state TEXT NOT NULL CHECK (state IN ('recording', 'done', 'failed')),
        uploaded TEXT NOT NULL DEFAULT 'no',
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX clips_start ON clips (start, id);
    CREATE INDEX clips_device_start ON clips (device, start);
    CREATE INDEX clips_state ON clips (state);
    CREATE INDEX clips_uploaded ON clips (uploaded)
    """,
        present=_has_table("clips"),
    ),
    # The S3 upload queue's columns (see record/s3.py). Once added only when S3 was configured;
    # now every file has them, with defaults that mean "not uploaded, file on disk".
    Migration(
        "S3 upload queue",
        """
    ALTER TABLE clips ADD COLUMN upload_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE clips ADD COLUMN upload_error TEXT NOT NULL DEFAULT '';
    ALTER TABLE clips ADD COLUMN upload_next REAL NOT NULL DEFAULT 0;
    ALTER TABLE clips ADD COLUMN s3_key TEXT;
    ALTER TABLE clips ADD COLUMN s3_thumbnail_key TEXT;
    ALTER TABLE clips ADD COLUMN s3_size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE clips ADD COLUMN local INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX clips_upload_due ON clips (uploaded, upload_next)
    """,
        present=_has_column("clips", "local"),
    ),
    Migration(
        "cloud archive",
        """
    CREATE TABLE cloud_archive (
        activity_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        event_time REAL NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('downloaded', 'rejected')),
        note TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL
    )
    """,
        present=_has_table("cloud_archive"),
    ),
    # IF NOT EXISTS stays: the event log used to create these itself, statement by statement,
    # so an old file may hold some of them and not the others.
    Migration(
        "event log",
        """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device TEXT NOT NULL,
    type TEXT NOT NULL,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    sources TEXT NOT NULL,
    activity_id TEXT,
    known_device INTEGER NOT NULL,
    payload TEXT NOT NULL,
    logged REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
CREATE INDEX IF NOT EXISTS events_device_time ON events(device, time);
CREATE TABLE IF NOT EXISTS event_results (
    event_id TEXT NOT NULL,
    action TEXT NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS event_results_event ON event_results(event_id);
""",
    ),
    # The per-component version table of the old scheme: user_version replaces it.
    Migration("retire schema_versions", "DROP TABLE IF EXISTS schema_versions"),
)


class Database:
    """A thread-safe SQLite connection whose schema is migrated when it opens (blocking).

    Components get theirs from ``open_database``; a direct instance is a connection of its own
    (tests use it with their own list of steps).
    """

    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves, so a SELECT never holds one.
        # The busy timeout covers another process (the ``clips`` command) writing at once.
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._closed = False
        self._users = 1  # open_database() calls sharing this instance, each owed a close()
        try:
            with self._lock:
                # WAL lets the CLI read while the service writes.
                self._conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable across a process crash in WAL mode; only a power cut can
                # lose the last transactions, which recover()/reindex() rebuild from the files.
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
                self._migrate(migrations)
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self.transaction() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(migrations):
                raise RuntimeError(
                    f"{self.path}: schema v{version} is newer than this program"
                    f" (v{len(migrations)})"
                )
            for number, step in enumerate(migrations[version:], start=version + 1):
                if version == 0 and step.present is not None and step.present(conn):
                    _LOGGER.info(
                        "database %s: v%d (%s) is already there", self.path.name, number, step.name
                    )
                else:
                    _LOGGER.info(
                        "database %s: migrating to v%d (%s)", self.path.name, number, step.name
                    )
                    for statement in _statements(step.sql):
                        conn.execute(statement)
            if version != len(migrations):
                # PRAGMA takes no parameters; the value is our own integer.
                conn.execute(f"PRAGMA user_version = {len(migrations):d}")

    @property
    def version(self) -> int:
        """The schema version in force (``PRAGMA user_version``)."""
        return int(self.query("PRAGMA user_version")[0][0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements atomically (BEGIN IMMEDIATE … COMMIT, ROLLBACK on error)."""
        with self._lock:
            self._check_open()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection alone, for several reads no other thread's statements interleave."""
        with self._lock:
            self._check_open()
            yield self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count (or the new rowid for INSERT)."""
        with self._lock:
            self._check_open()
            cur = self._conn.execute(sql, params)
            if sql.lstrip()[:6].upper() == "INSERT":
                return int(cur.lastrowid or 0)
            return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a SELECT and return every row."""
        with self._lock:
            self._check_open()
            return self._conn.execute(sql, params).fetchall()

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a blocking database function in a thread, for async callers."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._closed

    def _share(self) -> bool:
        # Called by open_database under _SHARED_LOCK, which close() holds too.
        with self._lock:
            if self._closed:
                return False
            self._users += 1
            return True

    def _check_open(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError(f"{self.path}: database is closed")

    def close(self) -> None:
        """Give back one ``open_database`` (the last closes the connection); no-op once closed."""
        with _SHARED_LOCK, self._lock:
            if self._closed:
                return
            self._users -= 1
            if self._users > 0:
                return
            self._closed = True
            self._conn.close()
            if _SHARED.get(self.path) is self:
                del _SHARED[self.path]


# The open files, by resolved path. Lock order: _SHARED_LOCK, then a Database's own lock.
_SHARED: dict[Path, Database] = {}
_SHARED_LOCK = threading.Lock()


def open_database(path: str | Path) -> Database:
    """The process's ``Database`` for this file, opened and migrated by the first call.

    Blocking: call it from a thread (or use ``open_database_async``). Match each call with one
    ``close()``; the connection closes with the last.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    key = target.resolve()
    with _SHARED_LOCK:
        db = _SHARED.get(key)
        if db is not None and db._share():
            return db
        db = Database(key)
        _SHARED[key] = db
        return db


async def open_database_async(path: str | Path) -> Database:
    """``open_database`` in a worker thread, so the migrations never run on the event loop."""
    return await asyncio.to_thread(open_database, path)


def _statements(script: str) -> Iterator[str]:
    # executescript() would COMMIT our transaction, so split the step ourselves. Steps are
    # plain DDL written for this file: no semicolons inside strings or triggers.
    for part in script.split(";"):
        if part.strip():
            yield part
