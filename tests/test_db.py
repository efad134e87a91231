"""The bridge's one SQLite file: versioned migrations, upgrades of old files, one shared
connection, and migrations kept off the event loop. Real SQLite files in tmp_path."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.db import (
    FILE_NAME,
    MIGRATIONS,
    Database,
    Migration,
    open_database,
    open_database_async,
)
from bridge.events.log import EventLog
from bridge.record import ClipStore
from bridge.record.archive import CloudArchive

from .conftest import ClientFactory
from .legacy_db import make_legacy_db

NEWEST = len(MIGRATIONS)


def rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (but SQLite's own and the retired one), by table."""
    out: dict[str, list[dict[str, Any]]] = {}
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] not in ("sqlite_sequence", "schema_versions")
        ]
        for table in tables:
            found = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")  # noqa: S608
            out[table] = [dict(r) for r in found]
    conn.close()
    return out


def schema(path: Path) -> set[tuple[str, str, str]]:
    """The file's tables and indexes as SQLite keeps them (``IF NOT EXISTS`` is not kept)."""
    with sqlite3.connect(path) as conn:
        found = {
            (r[0], r[1], " ".join((r[2] or "").split()))
            for r in conn.execute("SELECT type, name, sql FROM sqlite_master")
        }
    conn.close()
    return found


def migration_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bridge.db" and "migrating" in r.getMessage()]


LEGACY_SHAPES = {
    # The service: the store, the S3 uploader and the archive migrated, and the event log.
    "service with s3": (("clips", "s3", "cloud_archive"), True),
    "service": (("clips", "cloud_archive"), True),
    # `skybell-bridge clips list` on a fresh folder: the store alone.
    "clips command": (("clips",), False),
    # The event log opened alone (its tests, or a bridge without a store yet).
    "event log alone": ((), True),
}


@pytest.mark.parametrize("shape", LEGACY_SHAPES.values(), ids=list(LEGACY_SHAPES))
async def test_a_file_from_before_versioning_keeps_every_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, shape: tuple[tuple[str, ...], bool]
) -> None:
    components, events = shape
    path = tmp_path / "clips" / FILE_NAME
    make_legacy_db(path, components=components, events=events)
    before = rows(path)
    fresh = tmp_path / "fresh" / FILE_NAME
    Database(fresh).close()

    db = await open_database_async(path)
    assert db.version == NEWEST
    db.close()

    after = rows(path)
    for table, old_rows in before.items():
        # Same rows, same values; columns a later step added carry their defaults.
        assert len(after[table]) == len(old_rows), table
        kept = [{k: new[k] for k in old} for new, old in zip(after[table], old_rows, strict=True)]
        assert kept == old_rows, table
    assert schema(path) == schema(fresh)  # as if it had been made by the new code
    assert "schema_versions" not in {name for _, name, _ in schema(path)}

    # The components read what they wrote before, through their own queries.
    store = ClipStore(tmp_path / "clips")
    log = EventLog(path, clock=lambda: 3000.0)  # the fixture's events are from 1970: keep them
    await log.open()
    try:
        clips = (await store.query()).clips
        assert len(clips) == (2 if "clips" in components else 0)
        if "clips" in components:
            assert {c.activity_id for c in clips} == {"a1", "a2"}
            remote = {c.id for c in clips if c.activity_id == "a1"} if "s3" in components else set()
            assert store.index.remote_only() == remote
        page = await log.query()
        assert page.total == (2 if events else 0)
        if events:
            e2 = await log.get("e2")
            assert e2 is not None
            assert e2["sources"] == ["poll", "udp"]
            assert e2["payload"] == {"k": 1}
            assert [r["detail"] for r in e2["results"]] == ["clip 2"]
        outcomes = store.db.query("SELECT activity_id, outcome FROM cloud_archive")
        expected = {("a2", "downloaded"), ("a3", "rejected")}
        assert {tuple(r) for r in outcomes} == (
            expected if "cloud_archive" in components else set()
        )
    finally:
        await log.close()
        store.close()

    # Opened again: nothing left to migrate.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bridge.db"):
        again = await open_database_async(path)
        assert again.version == NEWEST
        again.close()
    assert migration_records(caplog) == []


async def test_migrations_run_off_the_event_loop(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    make_client: ClientFactory,
    session: aiohttp.ClientSession,
) -> None:
    loop_thread = threading.get_ident()
    make_legacy_db(tmp_path / "old" / FILE_NAME, components=("clips",), events=True)
    with caplog.at_level(logging.INFO, logger="bridge.db"):
        db = await open_database_async(tmp_path / "a" / FILE_NAME)  # a new file
        log = EventLog(tmp_path / "b" / FILE_NAME)  # the event log opening its own file
        await log.open()
        old = EventLog(tmp_path / "old" / FILE_NAME)  # and upgrading an old one
        await old.open()
        store = await asyncio.to_thread(ClipStore, tmp_path / "a")  # as the service builds it
        migrated = migration_records(caplog)
        caplog.clear()
        # The archive made on the loop runs no migration at all (it used to, synchronously).
        archive = CloudArchive(make_client(), session, store)
        await archive.close()
    assert migration_records(caplog) == []
    # Every step of the two new files, and the old file's missing ones.
    assert len(migrated) == 2 * NEWEST + (NEWEST - 1)
    assert {r.thread for r in migrated}.isdisjoint({loop_thread})
    for closing in (store.close, db.close):
        closing()
    await log.close()
    await old.close()


def test_steps_apply_once_in_order_and_atomically(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "index.sqlite3"
    steps = [Migration("t", "CREATE TABLE t (id TEXT PRIMARY KEY, n REAL)")]
    Database(path, migrations=steps).close()
    caplog.set_level(logging.INFO, logger="bridge.db")
    caplog.clear()
    db = Database(path, migrations=steps)  # idempotent: nothing to do the second time
    assert db.version == 1
    assert migration_records(caplog) == []
    db.close()
    steps.append(Migration("kind", "ALTER TABLE t ADD COLUMN kind TEXT; CREATE INDEX t_n ON t (n)"))
    db = Database(path, migrations=steps)
    assert db.version == 2
    db.execute("INSERT INTO t (id, n, kind) VALUES (?, ?, ?)", ("e1", 1.0, "motion"))

    def half_done() -> None:
        with db.transaction() as conn:
            conn.execute("INSERT INTO t (id, n) VALUES ('e2', 2.0)")
            conn.execute("INSERT INTO nowhere VALUES (1)")

    with pytest.raises(sqlite3.OperationalError):
        half_done()
    assert [r["id"] for r in db.query("SELECT id FROM t")] == ["e1"]  # rolled back
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    db.close()
    db.close()  # safe twice

    # A failing step leaves the file as it was: no half-made table, the old version.
    broken = [*steps, Migration("bad", "CREATE TABLE u (x); INSERT INTO nowhere VALUES (1)")]
    with pytest.raises(sqlite3.OperationalError):
        Database(path, migrations=broken)
    db = Database(path, migrations=steps)
    assert db.version == 2
    assert db.query("SELECT name FROM sqlite_master WHERE name = 'u'") == []
    assert [r["kind"] for r in db.query("SELECT kind FROM t")] == ["motion"]
    db.close()

    # A file from a newer program is refused, not downgraded.
    with pytest.raises(RuntimeError, match="newer"):
        Database(path, migrations=steps[:1])


async def test_the_store_and_the_event_log_share_one_connection(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    store = await asyncio.to_thread(ClipStore, tmp_path)
    log = EventLog(path)
    await log.open()
    # Every table of the bridge is in the one file, on the one connection.
    tables = {r[0] for r in store.db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"clips", "cloud_archive", "events", "event_results"} <= tables
    shared = await open_database_async(tmp_path / "." / FILE_NAME)
    assert shared is store.db
    shared.close()
    await log.add_result("e1", "record", True, "ok")
    assert [r["action"] for r in store.db.query("SELECT action FROM event_results")] == ["record"]

    # The last one out closes it; the others keep working until then.
    store.close()
    store.close()  # safe twice
    assert not store.db.closed
    assert (await log.query()).total == 0
    await log.close()
    assert store.db.closed
    reopened = open_database(path)  # a new connection once the old one is gone
    assert reopened is not store.db
    assert reopened.version == NEWEST
    reopened.close()


def test_a_file_from_a_newer_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {NEWEST + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        ClipStore(tmp_path)
    # The refused file is not held open: the next try opens it afresh (and fails the same way).
    with pytest.raises(RuntimeError, match="newer"):
        open_database(path)
