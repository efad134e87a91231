"""Optional upload of finished clips (and their thumbnails) to S3 or an S3-compatible store.

The queue lives in the clip index (``bridge.db`` makes its columns), so it survives restarts:
``uploaded`` is ``no`` (not queued), ``pending`` (queued; ``upload_attempts``, ``upload_error``
and ``upload_next`` say how it went), ``done`` (``s3_key`` names the object) or ``failed`` (the
local file vanished before it could be sent: nothing left to try). A failing endpoint never
drops a clip: it stays ``pending`` and is retried with capped exponential backoff, and at once
after a restart.

Keys are ``<prefix>/<device>/<YYYY-MM-DD>/<file>``: the clip's place in the folder under the
prefix. With ``delete_local_after_upload`` the mp4 and jpg are deleted once both are up; the row
stays with ``local = 0`` and ``size = 0`` (``size`` counts disk bytes, which retention and the
usage figures add up), and ``s3_size`` keeps the object's size. A clip that lives only in S3 is
served by redirecting to ``presigned_url()``.

boto3 blocks, so every call runs in a thread. Credentials come from boto3's default chain
(environment, shared files, instance roles); neither they nor presigned URLs are ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints
import botocore.config
import botocore.exceptions
from boto3.exceptions import Boto3Error  # type: ignore[import-untyped]

from bridge.record.errors import RecordError
from bridge.record.options import S3Options
from bridge.record.store import ClipStore
from bridge.redact import redact

__all__ = ["S3Location", "S3Options", "S3Uploader"]

_LOGGER = logging.getLogger(__name__)

_CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg"}


@dataclass(frozen=True)
class S3Location:
    """Where a clip's copy in S3 is, and whether the local files are still there."""

    bucket: str
    key: str
    thumbnail_key: str | None
    size: int
    local: bool


@dataclass(frozen=True)
class _Job:
    id: int
    path: str
    thumbnail: str | None
    size: int
    attempts: int


class S3Uploader:
    """Uploads finished clips in the background, one at a time, resuming after restarts."""

    def __init__(
        self,
        store: ClipStore,
        options: S3Options,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not options.bucket:
            raise ValueError("bucket must be set")
        self.store = store
        self.options = options
        self._clock = clock
        self._client: Any = None  # boto3's S3 client, made in a thread by start()
        self._wake = asyncio.Event()
        self._wanted: set[int] = set()  # enqueue()d ids not yet marked pending
        self._drainers: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._current: asyncio.Future[None] | None = None  # the upload running in a thread
        self._next_scan = 0.0
        self._failing = False
        self._closed = False

    # -- public API ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Make the S3 client and start the upload task; pending uploads are due at once."""
        if self._task is not None or self._closed:
            return
        self._client = await asyncio.to_thread(self._make_client)
        await asyncio.to_thread(
            self.store.db.execute,
            "UPDATE clips SET upload_next = 0 WHERE uploaded = 'pending'",
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="s3 uploader")

    def enqueue(self, clip_id: int) -> None:
        """Queue a finished clip (again, if it failed)."""
        self._wanted.add(clip_id)
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every upload that is due has been tried (for tests and shutdown)."""
        if self._task is None or self._task.done():
            raise RecordError("the S3 uploader is not running")
        self._next_scan = 0.0
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drainers.append(waiter)
        self._wake.set()
        await asyncio.wait([waiter, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            raise RecordError("the S3 uploader stopped")

    def location(self, clip_id: int) -> S3Location | None:
        """Where the clip's S3 copy is, None if it has none (blocking: SQLite)."""
        rows = self.store.db.query(
            "SELECT s3_key, s3_thumbnail_key, s3_size, local FROM clips"
            " WHERE id = ? AND uploaded = 'done' AND s3_key IS NOT NULL",
            (clip_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return S3Location(
            self.options.bucket,
            row["s3_key"],
            row["s3_thumbnail_key"],
            int(row["s3_size"]),
            bool(row["local"]),
        )

    async def presigned_url(
        self, clip_id: int, *, thumbnail: bool = False, expires: float = 300.0
    ) -> str | None:
        """A short-lived GET URL for the clip (or its thumbnail) in S3; None if not uploaded.

        The URL is a credential: hand it to the client, never to a log."""
        if self._client is None:
            raise RecordError("the S3 uploader is not started")
        where = await asyncio.to_thread(self.location, clip_id)
        key = None if where is None else where.thumbnail_key if thumbnail else where.key
        if key is None:
            return None
        params = {"Bucket": self.options.bucket, "Key": key}
        url: str = await asyncio.to_thread(
            self._client.generate_presigned_url, "get_object", Params=params, ExpiresIn=int(expires)
        )
        return url

    async def counts(self) -> dict[str, int]:
        """Clips per upload state (``no``, ``pending``, ``done``, ``failed``)."""
        rows = await asyncio.to_thread(
            self.store.db.query, "SELECT uploaded, COUNT(*) FROM clips GROUP BY uploaded"
        )
        counts = dict.fromkeys(("no", "pending", "done", "failed"), 0)
        counts.update({str(r[0]): int(r[1]) for r in rows})
        return counts

    async def close(self, timeout: float = 10.0) -> None:
        """Stop uploading; an upload under way gets ``timeout`` seconds to finish (a cut one
        is simply sent again next time). Safe to call twice."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        current, self._current = self._current, None
        if current is not None and not current.done():
            done, _ = await asyncio.wait([current], timeout=timeout)
            if not done:
                _LOGGER.warning("an S3 upload is still running at shutdown")
        for waiter in self._drainers:
            waiter.cancel()
        self._drainers.clear()

    # -- the worker ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            drainers, self._drainers = self._drainers, []
            wanted, self._wanted = self._wanted, set()  # swapped here: enqueue() adds from the loop
            try:
                job = await asyncio.to_thread(self._next_job, wanted)
            except Exception:
                _LOGGER.exception("S3 upload queue unreadable")
                job = None
            if job is None:
                for waiter in drainers:
                    if not waiter.done():
                        waiter.set_result(None)
                await self._sleep()
                continue
            self._drainers[:0] = drainers  # still busy: they wait for the next pass
            # The thread cannot be cancelled; close() waits for it before the store closes.
            self._current = asyncio.ensure_future(asyncio.to_thread(self._upload, job))
            try:
                await asyncio.shield(self._current)
            except Exception:
                _LOGGER.exception("S3 upload of clip %d failed unexpectedly", job.id)
                with contextlib.suppress(Exception):  # e.g. the database is gone too
                    await asyncio.to_thread(self._retry_later, job, "unexpected error")

    async def _sleep(self) -> None:
        """Until woken (enqueue, drain) or until the next pending upload or scan is due."""
        wake_at = self._next_scan if self.options.upload_existing else float("inf")
        try:
            rows = await asyncio.to_thread(
                self.store.db.query,
                "SELECT MIN(upload_next) FROM clips WHERE uploaded = 'pending'",
            )
        except Exception:
            _LOGGER.exception("S3 upload queue unreadable")
            rows = []
        now = self._clock()
        if rows and rows[0][0] is not None:
            wake_at = min(wake_at, float(rows[0][0]))
        else:
            wake_at = min(wake_at, now + 60.0)  # unreadable or empty: look again now and then
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the cancel from close().
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.01, min(wake_at - now, 3600.0))):
                await self._wake.wait()
        self._wake.clear()

    def _next_job(self, wanted: set[int]) -> _Job | None:
        """Queue what was asked for (and, now and then, every new finished clip), then pick
        the oldest pending upload that is due."""
        db = self.store.db
        for clip_id in wanted:
            db.execute(
                "UPDATE clips SET uploaded = 'pending', upload_next = 0, upload_error = ''"
                " WHERE id = ? AND state = 'done' AND uploaded IN ('no', 'failed')",
                (clip_id,),
            )
        now = self._clock()
        if self.options.upload_existing and now >= self._next_scan:
            self._next_scan = now + self.options.scan_interval
            db.execute(
                "UPDATE clips SET uploaded = 'pending', upload_next = 0"
                " WHERE state = 'done' AND uploaded = 'no'"
            )
        rows = db.query(
            "SELECT id, path, thumbnail, size, upload_attempts FROM clips"
            " WHERE uploaded = 'pending' AND state = 'done' AND upload_next <= ?"
            " ORDER BY start, id LIMIT 1",
            (now,),
        )
        if not rows:
            return None
        r = rows[0]
        return _Job(r["id"], r["path"], r["thumbnail"], int(r["size"]), int(r["upload_attempts"]))

    # -- one upload (blocking, in a thread) ----------------------------------------------------

    def _make_client(self) -> Any:
        opts = self.options
        config = botocore.config.Config(
            connect_timeout=opts.connect_timeout,
            read_timeout=opts.read_timeout,
            # botocore's own retries cover a blip; our backoff covers an outage.
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": opts.addressing_style},
            signature_version="s3v4",  # presigned URLs too (botocore may pick SigV2 for them)
        )
        session = boto3.session.Session(region_name=opts.region or None)
        return session.client("s3", endpoint_url=opts.endpoint_url or None, config=config)

    def _upload(self, job: _Job) -> None:
        try:
            video = self.store.resolve(job.path)
            thumb = self.store.resolve(job.thumbnail) if job.thumbnail else None
        except RecordError as err:
            self._give_up(job, str(err))
            return
        if not video.is_file():
            self._give_up(job, "the local file is gone")
            return
        key = self.options.key_for(job.path)
        thumb_key = None
        try:
            self._put(video, key)
            if thumb is not None and thumb.is_file():
                thumb_key = self.options.key_for(job.thumbnail or "")
                self._put(thumb, thumb_key)
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            Boto3Error,
        ) as err:
            self._retry_later(job, _describe(err))
            return
        except OSError as err:  # the file went away mid-upload (retention, a user's delete)
            if not video.exists():
                self._give_up(job, "the local file is gone")
            else:
                self._retry_later(job, f"cannot read the clip: {err.strerror or err}")
            return
        changed = self.store.db.execute(
            "UPDATE clips SET uploaded = 'done', s3_key = ?, s3_thumbnail_key = ?, s3_size = ?,"
            " upload_error = '', upload_attempts = upload_attempts + 1 WHERE id = ?",
            (key, thumb_key, job.size, job.id),
        )
        if self._failing:
            _LOGGER.info("S3 uploads back")
            self._failing = False
        _LOGGER.info("uploaded clip %s to s3://%s/%s", job.path, self.options.bucket, key)
        if changed and self.options.delete_local:
            self._delete_local(job, video, thumb)

    def _put(self, path: Path, key: str) -> None:
        extra = {"ContentType": _CONTENT_TYPES.get(path.suffix, "application/octet-stream")}
        self._client.upload_file(str(path), self.options.bucket, key, ExtraArgs=extra)

    def _delete_local(self, job: _Job, video: Path, thumb: Path | None) -> None:
        if self.store.is_active(job.id):
            return  # never the case for a finished clip; cheap to be sure
        for path in (video, thumb):
            if path is not None:
                path.unlink(missing_ok=True)
        # size counts local bytes: retention and usage must not count what left the disk.
        self.store.db.execute("UPDATE clips SET local = 0, size = 0 WHERE id = ?", (job.id,))
        _LOGGER.info("clip %s now lives only in S3", job.path)

    def _retry_later(self, job: _Job, reason: str) -> None:
        attempts = job.attempts + 1
        delay = min(self.options.max_backoff, self.options.backoff * 2 ** (attempts - 1))
        self.store.db.execute(
            "UPDATE clips SET upload_attempts = ?, upload_error = ?, upload_next = ?"
            " WHERE id = ? AND uploaded = 'pending'",
            (attempts, reason, self._clock() + delay, job.id),
        )
        # Once per outage at warning level; each retry after that only at debug.
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        _LOGGER.log(
            level, "S3 upload of %s failed (%s); retrying in %.0f s", job.path, reason, delay
        )

    def _give_up(self, job: _Job, reason: str) -> None:
        self.store.db.execute(
            "UPDATE clips SET uploaded = 'failed', upload_error = ?,"
            " upload_attempts = upload_attempts + 1 WHERE id = ?",
            (reason, job.id),
        )
        _LOGGER.warning("S3 upload of %s abandoned: %s", job.path, reason)


def _describe(err: Exception) -> str:
    """A short, credential-free reason: the S3 error code when there is one."""
    if isinstance(err, botocore.exceptions.ClientError):
        error = err.response.get("Error", {})
        return redact(f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip(": "))
    cause = err.__cause__ or err.__context__
    if isinstance(err, Boto3Error) and isinstance(cause, botocore.exceptions.ClientError):
        return _describe(cause)
    return redact(f"{type(err).__name__}: {err}")
