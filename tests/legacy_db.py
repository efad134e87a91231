"""A database file exactly as the bridge wrote it before ``bridge.db``: the fixture for upgrades.

Until then each component migrated its own tables, counting versions per component in a
``schema_versions`` table (record/db.py), and the event log made its tables itself with
``CREATE TABLE IF NOT EXISTS`` on a connection of its own (events/log.py). The DDL below is a
frozen copy of that code: never edit it, it is what files in the field hold.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["make_legacy_db"]

# record/index.py CLIP_MIGRATIONS[0]
_CLIPS = """
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
    """

# record/s3.py S3_MIGRATIONS[0]
_S3 = """
    ALTER TABLE clips ADD COLUMN upload_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE clips ADD COLUMN upload_error TEXT NOT NULL DEFAULT '';
    ALTER TABLE clips ADD COLUMN upload_next REAL NOT NULL DEFAULT 0;
    ALTER TABLE clips ADD COLUMN s3_key TEXT;
    ALTER TABLE clips ADD COLUMN s3_thumbnail_key TEXT;
    ALTER TABLE clips ADD COLUMN s3_size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE clips ADD COLUMN local INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX clips_upload_due ON clips (uploaded, upload_next)
    """

# record/archive.py ARCHIVE_MIGRATIONS[0]
_ARCHIVE = """
    CREATE TABLE cloud_archive (
        activity_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        event_time REAL NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('downloaded', 'rejected')),
        note TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL
    )
    """

# events/log.py _SCHEMA
_EVENTS = """
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
"""

# Components in the order Bridge.start met them: the store, the S3 uploader, the archive.
_COMPONENTS = {"clips": _CLIPS, "s3": _S3, "cloud_archive": _ARCHIVE}


def _old_database(path: Path) -> sqlite3.Connection:
    """What record/db.py's Database.__init__ did."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    return conn


def _old_migrate(conn: sqlite3.Connection, component: str, script: str) -> None:
    """What record/db.py's Database.migrate did for a component's one step."""
    conn.execute("BEGIN IMMEDIATE")
    for part in script.split(";"):
        if part.strip():
            conn.execute(part)
    conn.execute(
        "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
        " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
        (component, 1),
    )
    conn.execute("COMMIT")


def _old_event_log(path: Path) -> None:
    """What events/log.py's EventLog._open_sync did."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(_EVENTS)
    conn.close()


def make_legacy_db(path: Path, *, components: tuple[str, ...], events: bool) -> None:
    """Build ``path`` as the old code did, with ``components`` (of clips, s3, cloud_archive)
    migrated and, if ``events``, the event log's tables; then one or two rows in each table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if events:
        _old_event_log(path)  # the event log opened first: it needs no clips table
    if components:
        conn = _old_database(path)
        for name in components:
            _old_migrate(conn, name, _COMPONENTS[name])
        conn.close()
    with sqlite3.connect(path) as conn:
        if "clips" in components:
            conn.executemany(
                "INSERT INTO clips (device_id, device, event, start, \"end\", duration, size,"
                " source, activity_id, path, thumbnail, state, uploaded, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    ("d1", "front-door", "doorbell", 1000.0, 1010.0, 10.0, 70, "live", "a1",
                     "front-door/2026-05-01/000000_doorbell.mp4",
                     "front-door/2026-05-01/000000_doorbell.jpg", "done", "no", ""),
                    ("d1", "front-door", "motion", 2000.0, None, 0.0, 0, "cloud", "a2",
                     "front-door/2026-05-01/000100_motion.mp4", None, "failed", "no", "broke"),
                ],
            )  # fmt: skip
        if "s3" in components:
            conn.execute(
                "UPDATE clips SET uploaded = 'done', s3_key = 'p/x.mp4', s3_size = 70, local = 0"
                " WHERE activity_id = 'a1'"
            )
        if "cloud_archive" in components:
            conn.executemany(
                "INSERT INTO cloud_archive (activity_id, device_id, event_time, outcome, note, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [("a2", "d1", 2000.0, "downloaded", "", 2100.0),
                 ("a3", "d1", 3000.0, "rejected", "not an MP4", 3100.0)],
            )  # fmt: skip
        if events:
            conn.executemany(
                "INSERT INTO events (id, device_id, device, type, time, source, sources,"
                " activity_id, known_device, payload, logged) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [("e1", "d1", "front-door", "doorbell", 1000.0, "udp", '["udp"]', None, 1,
                  "{}", 1000.5),
                 ("e2", "d1", "front-door", "motion", 2000.0, "poll", '["poll", "udp"]', "a2",
                  1, '{"k": 1}', 2000.5)],
            )  # fmt: skip
            conn.execute(
                "INSERT INTO event_results (event_id, action, ok, detail, time)"
                " VALUES ('e2', 'record', 1, 'clip 2', 2001.0)"
            )
    conn.close()
