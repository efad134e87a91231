"""One SQLite file shared by the bridge's stores (clips now, events later), in WAL mode.

Each component owns a list of migration steps and calls ``migrate(component, steps)`` once at
start; the file remembers how many steps of each component were applied. Steps are append-only:
never edit a released one, add a new one.

The connection is shared by threads behind a lock. Every call is a few milliseconds, so async
code runs them through ``asyncio.to_thread`` (see ``Database.run``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

__all__ = ["Database"]

_LOGGER = logging.getLogger(__name__)
_P = ParamSpec("_P")
_T = TypeVar("_T")


class Database:
    """A thread-safe SQLite connection with per-component migrations."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves, so a SELECT never holds one.
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._closed = False
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a process crash in WAL mode; only a power cut can lose
            # the last transactions, which recover()/reindex() can rebuild from the files.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    def migrate(self, component: str, steps: Sequence[str]) -> int:
        """Apply the steps of ``component`` not applied yet; returns the version now in force."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > len(steps):
                raise RuntimeError(
                    f"{self.path}: {component} schema v{version} is newer than this program"
                )
            for number, script in enumerate(steps[version:], start=version + 1):
                _LOGGER.info("database %s: migrating %s to v%d", self.path.name, component, number)
                for statement in _statements(script):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, len(steps)),
            )
        return len(steps)

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

    def _check_open(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError(f"{self.path}: database is closed")

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _statements(script: str) -> Iterator[str]:
    # executescript() would COMMIT our transaction, so split the step ourselves. Steps are
    # plain DDL written for this file: no semicolons inside strings or triggers.
    for part in script.split(";"):
        if part.strip():
            yield part
