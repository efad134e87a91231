"""Cloud archive: the SkyBell cloud's activity videos, downloaded into the clips folder.

``sync(since)`` walks the activity history, skips what the index already has (an activity the
recorder caught live carries the same ``activity_id``), and downloads the rest one at a time,
oldest first: a fresh presigned URL from the cloud, the body streamed into a hidden
``.cloud-<hash>.part`` file beside where the clip will live, then checked with PyAV, given a
thumbnail, renamed to ``<HHMMSS>_<event>.mp4`` and indexed with ``source='cloud'``.

A download that breaks resumes with ``Range`` from the part file's size (across restarts too:
the part file is named after the activity), with capped exponential backoff; an expired URL
(403) is simply asked for again. A body that is not an MP4 is rejected and remembered, so it
is not fetched on every sync; so is every activity downloaded once, so a clip that retention
or the user deleted does not come back. The ``cloud_archive`` table holds that memory (made
with the others by ``bridge.db``).

Presigned URLs carry credentials: they are never logged, and error text is redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp

from bridge.errors import CloudError
from bridge.record.errors import RecordError, StorageFull
from bridge.record.index import Clip
from bridge.record.mp4file import fsync_path, probe
from bridge.record.options import RecordOptions
from bridge.record.retention import Retention
from bridge.record.store import ClipStore, safe_name
from bridge.record.thumbnail import thumbnail_from_file
from bridge.redact import redact
from bridge.skybell.client import SkyBellClient
from bridge.skybell.models import Activity, slugify
from bridge.tasks import TaskSet

__all__ = [
    "ArchiveError",
    "ArchiveOptions",
    "CloudArchive",
    "Progress",
    "SyncReport",
    "VideoRejected",
]

_LOGGER = logging.getLogger(__name__)
_DAY = 86400.0
# Box types an MP4 can start with; anything else (an HTML error page, say) is not a video.
_MP4_FIRST_BOXES = frozenset(
    {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"uuid", b"moof"}
)

Progress = Callable[[int, int, int], None]
"""``progress(done, total, bytes)``: activities handled of those to fetch, bytes so far."""


class ArchiveError(RecordError):
    """A cloud video could not be downloaded; ``transient`` says whether a later try may work."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(redact(message))
        self.transient = transient


class VideoRejected(ArchiveError):
    """The body is not a playable MP4 (or is far too large); it is not indexed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class _UrlRefused(ArchiveError):
    """403/401 from the download URL: it expired (or was revoked); ask for a new one."""


@dataclass(frozen=True)
class ArchiveOptions:
    """How cloud videos are fetched; times are seconds."""

    event_types: frozenset[str] | None = None  # activity types to fetch; None: every type
    retries: int = 4  # further attempts per video after the first
    backoff: float = 1.0  # first retry delay, doubled each time
    max_backoff: float = 30.0
    connect_timeout: float = 15.0
    read_timeout: float = 30.0  # a body silent this long is a stall: resume it
    chunk_bytes: int = 256 * 1024  # bytes gathered before each write to the part file
    max_bytes: int = 1 << 30  # a doorbell clip is a few MB; refuse absurd bodies
    part_max_age: float = 2 * _DAY  # unfinished downloads untouched this long are deleted
    retry_rejected_after: float = _DAY  # a rejected body is tried again after this long
    vready_lookback: float = _DAY  # how far back ``download_activity`` looks for the id


@dataclass
class SyncReport:
    """What one sync did."""

    downloaded: int = 0
    skipped: int = 0  # already indexed or handled, too old for retention, or another type
    failed: int = 0
    bytes: int = 0
    clips: list[Clip] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "activity id: reason", redacted


class CloudArchive:
    """Downloads cloud activity videos into a ``ClipStore``, on demand or periodically."""

    def __init__(
        self,
        client: SkyBellClient,
        http: aiohttp.ClientSession,
        store: ClipStore,
        *,
        retention: Retention | None = None,
        options: ArchiveOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self.options = options or ArchiveOptions()
        # Shared with the recorder's, so cloud clips obey the same storage limits.
        self.retention = retention or Retention(store, RecordOptions())
        self._http = http
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.options.connect_timeout,
            sock_read=self.options.read_timeout,
        )
        self._names: dict[str, str] = {}  # device id -> stream name (slug)
        self._inflight: dict[str, asyncio.Future[Clip]] = {}
        self._tasks = TaskSet()  # vready downloads and the periodic sync
        self._periodic: asyncio.Task[None] | None = None
        self._closed = False

    # -- public API ----------------------------------------------------------------------------

    async def sync(
        self,
        since: datetime,
        device_ids: Iterable[str] | None = None,
        progress: Progress | None = None,
    ) -> SyncReport:
        """Download every activity video since ``since`` not yet in the index.

        Raises StorageFull (the sync stops; what was downloaded stays) and CloudError when the
        activity list cannot be read. Other per-video failures are counted in the report.
        """
        if since.tzinfo is None:
            since = since.astimezone(UTC)  # a naive time is local, as astimezone() reads it
        report = SyncReport()
        await self._refresh_names()
        await asyncio.to_thread(self._sweep_parts)
        activities = await self._list(since, device_ids)
        todo = []
        for activity in activities:
            if await self._wanted(activity):
                todo.append(activity)
            else:
                report.skipped += 1
        base = 0

        def on_bytes(done: int, received: int) -> None:
            if progress is not None:
                progress(done, len(todo), base + received)

        if progress is not None:
            progress(0, len(todo), 0)
        for n, activity in enumerate(todo):
            try:
                clip = await self._download(activity, functools.partial(on_bytes, n))
            except ArchiveError as err:
                report.failed += 1
                report.errors.append(f"{activity.id}: {err}")
                _LOGGER.warning("cloud video %s (%s): %s", activity.id, activity.event_type, err)
            else:
                report.downloaded += 1
                report.bytes += clip.size
                report.clips.append(clip)
            base = report.bytes
            on_bytes(n + 1, 0)
        if report.downloaded or report.failed:
            _LOGGER.info(
                "cloud archive: %d downloaded (%d bytes), %d skipped, %d failed",
                report.downloaded,
                report.bytes,
                report.skipped,
                report.failed,
            )
        return report

    async def download_activity(self, activity_id: str, device_id: str | None = None) -> Clip:
        """Download one activity's video (looked up in the recent history); returns its clip,
        or the clip already indexed for it. Raises ArchiveError, StorageFull, CloudError."""
        existing = await asyncio.to_thread(self.store.index.find, activity_id=activity_id)
        if existing is not None:
            return existing
        since = datetime.fromtimestamp(self._clock() - self.options.vready_lookback, UTC)
        filters: dict[str, Any] = {"start": since}
        if device_id:
            filters["device_id"] = device_id
        async for activity in self.client.iter_activities(**filters):
            if activity.id == activity_id:
                if activity.device_id not in self._names:
                    await self._refresh_names()
                return await self._download(activity, None)
        raise ArchiveError(f"activity {activity_id} is not in the recent history", transient=False)

    def on_vready(self, device_id: str, activity_id: str) -> asyncio.Task[Clip | None] | None:
        """The cloud says an activity's video is ready: fetch it in the background."""
        if self._closed:
            return None
        return self._tasks.spawn(
            self._vready(device_id, activity_id), f"archive vready {activity_id}"
        )

    def run_periodic(self, interval: float, *, lookback: float = _DAY) -> None:
        """Sync the last ``lookback`` seconds now and every ``interval`` seconds."""
        if self._closed or (self._periodic is not None and not self._periodic.done()):
            return
        self._periodic = self._tasks.spawn(
            self._periodic_loop(interval, lookback), "archive periodic"
        )

    async def close(self) -> None:
        """Stop background syncs and downloads (part files stay for a resume); safe twice."""
        self._closed = True
        await self._tasks.cancel_all()

    # -- background ----------------------------------------------------------------------------

    async def _vready(self, device_id: str, activity_id: str) -> Clip | None:
        try:
            return await self.download_activity(activity_id, device_id)
        except StorageFull as err:
            _LOGGER.error("cloud video %s not downloaded: %s", activity_id, err)
        except (RecordError, CloudError) as err:
            _LOGGER.warning("cloud video %s: %s", activity_id, redact(str(err)))
        except Exception:
            _LOGGER.exception("cloud video %s failed", activity_id)
        return None

    async def _periodic_loop(self, interval: float, lookback: float) -> None:
        failing = False
        while True:
            since = datetime.fromtimestamp(self._clock() - lookback, UTC)
            try:
                await self.sync(since)
            except (CloudError, RecordError) as err:
                # Once per outage, not every interval (a full disk is a RecordError too).
                if not failing:
                    _LOGGER.warning("cloud archive unavailable: %s", redact(str(err)))
                failing = True
            except Exception:
                _LOGGER.exception("cloud archive sync failed")
            else:
                if failing:
                    _LOGGER.info("cloud archive back")
                failing = False
            await asyncio.sleep(interval)

    # -- choosing ------------------------------------------------------------------------------

    async def _refresh_names(self) -> None:
        try:
            devices = await self.client.devices()
        except CloudError as err:
            _LOGGER.debug("device list unavailable, naming folders from activities: %s", err)
            return
        self._names.update({d.id: d.slug for d in devices})

    def _device(self, activity: Activity) -> str:
        """The folder name: the stream name the recorder uses for this doorbell."""
        name = self._names.get(activity.device_id)
        if name is None and activity.device_name:
            name = slugify(activity.device_name)
        return safe_name(name or activity.device_id, "device")

    async def _list(self, since: datetime, device_ids: Iterable[str] | None) -> list[Activity]:
        """Every activity since ``since``, oldest first, each once (pages can overlap while
        new activities push older ones down the list)."""
        found: dict[str, Activity] = {}
        for device_id in list(device_ids) if device_ids is not None else [None]:
            filters: dict[str, Any] = {"start": since}
            if device_id is not None:
                filters["device_id"] = device_id
            async for activity in self.client.iter_activities(**filters):
                if activity.event_time >= since:
                    found.setdefault(activity.id, activity)
        return sorted(found.values(), key=lambda a: (a.event_time, a.id))

    async def _wanted(self, activity: Activity) -> bool:
        types = self.options.event_types
        if types is not None and activity.event_type not in types:
            return False
        if activity.id in self._inflight:
            return False
        device = self._device(activity)
        days = self.retention.options.for_device(activity.device_id, device).max_age_days
        if days is not None and activity.event_time.timestamp() < self._clock() - days * _DAY:
            return False  # retention would delete it at once (and we would fetch it again)
        return not await asyncio.to_thread(self._known, activity.id)

    def _known(self, activity_id: str) -> bool:
        if self.store.index.find(activity_id=activity_id) is not None:
            return True
        rows = self.store.db.query(
            "SELECT 1 FROM cloud_archive WHERE activity_id = ?"
            " AND (outcome = 'downloaded' OR at > ?)",
            (activity_id, self._clock() - self.options.retry_rejected_after),
        )
        return bool(rows)

    def _remember(self, activity: Activity, outcome: str, note: str = "") -> None:
        self.store.db.execute(
            "INSERT INTO cloud_archive (activity_id, device_id, event_time, outcome, note, at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(activity_id) DO UPDATE SET"
            " outcome = excluded.outcome, note = excluded.note, at = excluded.at",
            (
                activity.id,
                activity.device_id,
                activity.event_time.timestamp(),
                outcome,
                note,
                self._clock(),
            ),
        )

    # -- one download --------------------------------------------------------------------------

    async def _download(self, activity: Activity, on_bytes: Callable[[int], None] | None) -> Clip:
        """Fetch, check and index one activity's video; concurrent calls share the work."""
        running = self._inflight.get(activity.id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Clip] = asyncio.get_running_loop().create_future()
        self._inflight[activity.id] = future
        try:
            clip = await self._fetch_and_install(activity, on_bytes)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: a lone caller must not leave it unobserved
            raise
        else:
            future.set_result(clip)
            return clip
        finally:
            del self._inflight[activity.id]

    async def _fetch_and_install(
        self, activity: Activity, on_bytes: Callable[[int], None] | None
    ) -> Clip:
        device = self._device(activity)
        start = activity.event_time.timestamp()
        folder = f"{device}/{time.strftime('%Y-%m-%d', time.localtime(start))}"
        key = hashlib.sha256(activity.id.encode()).hexdigest()[:20]
        part = self.store.resolve(f"{folder}/.cloud-{key}.part")
        await asyncio.to_thread(part.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self.retention.make_room, self.retention.options.reserve_bytes)
        try:
            await self._fetch(activity, part, on_bytes)
            clip = await asyncio.to_thread(self._install, activity, device, part)
        except VideoRejected as err:
            await asyncio.to_thread(self._reject, activity, part, str(err))
            raise
        _LOGGER.info(
            "cloud video %s: %s, %.1f s, %d bytes", activity.id, clip.path, clip.duration, clip.size
        )
        return clip

    def _reject(self, activity: Activity, part: Path, why: str) -> None:
        part.unlink(missing_ok=True)
        self._remember(activity, "rejected", why)

    async def _fetch(
        self, activity: Activity, part: Path, on_bytes: Callable[[int], None] | None
    ) -> None:
        """Stream the video into ``part``, resuming and retrying transient failures."""
        opts = self.options
        url: str | None = None
        attempt = 0
        while True:
            try:
                if url is None:
                    url = await self.client.activity_video_url(activity.id)
                await self._fetch_once(url, part, on_bytes)
                return
            except _UrlRefused as err:
                url, reason = None, str(err)
            except ArchiveError as err:
                if not err.transient:
                    raise
                reason = str(err)
            except CloudError as err:
                if not err.transient:
                    raise ArchiveError(f"no download URL: {err}", transient=False) from err
                reason = str(err)
            except TimeoutError:
                reason = "the download stalled"
            except aiohttp.ClientError as err:
                # Only the class and message: some aiohttp errors print the request URL.
                reason = f"{type(err).__name__}: {redact(str(err))}"
            attempt += 1
            if attempt > opts.retries:
                raise ArchiveError(f"gave up after {attempt} attempts: {reason}")
            delay = min(opts.max_backoff, opts.backoff * 2 ** (attempt - 1))
            _LOGGER.info(
                "cloud video %s: %s; retrying in %.1f s", activity.id, redact(reason), delay
            )
            await asyncio.sleep(delay)

    async def _fetch_once(
        self, url: str, part: Path, on_bytes: Callable[[int], None] | None
    ) -> None:
        offset = await asyncio.to_thread(_size_of, part)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self._http.get(url, headers=headers, timeout=self._timeout) as resp:
            status = resp.status
            if status == 416 and offset:
                total = _range_total(resp.headers.get("Content-Range", ""))
                if total == offset:
                    return  # the part file already holds it all (stopped before the check)
                await asyncio.to_thread(part.unlink)
                raise ArchiveError("the part file does not match the video; starting over")
            if status in (401, 403):
                raise _UrlRefused(f"HTTP {status} from the download URL")
            if status == 429 or status >= 500:
                raise ArchiveError(f"HTTP {status} from the download URL")
            if status not in (200, 206):
                raise ArchiveError(f"HTTP {status} from the download URL", transient=False)
            if status == 206 and _range_start(resp.headers.get("Content-Range", "")) != offset:
                offset = 0  # a range we did not ask for: take it from the top next time
                await asyncio.to_thread(part.unlink)
                raise ArchiveError("the server sent a different range")
            if status == 200:
                offset = 0  # the Range was ignored: this is the whole body
            length = resp.content_length
            if length is not None and offset + length > self.options.max_bytes:
                raise VideoRejected(f"the video is {offset + length} bytes, over the limit")
            if length is not None:
                await asyncio.to_thread(self.retention.make_room, length)
            if offset == 0 and resp.content_type in ("text/html", "application/json"):
                raise VideoRejected(f"got {resp.content_type}, not a video")
            await self._write_body(resp, part, offset, on_bytes)

    async def _write_body(
        self,
        resp: aiohttp.ClientResponse,
        part: Path,
        offset: int,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        """Append the body to the part file from ``offset``, flushing every chunk through a
        thread so a slow disk never stalls the event loop (and what arrived survives a break)."""
        f: IO[bytes] = await asyncio.to_thread(_open_at, part, offset)
        buffer = bytearray()
        written = offset
        try:
            async for chunk in resp.content.iter_chunked(self.options.chunk_bytes):
                buffer += chunk
                if written == 0 and len(buffer) >= 8 and bytes(buffer[4:8]) not in _MP4_FIRST_BOXES:
                    raise VideoRejected("the body does not start like an MP4")
                if written + len(buffer) > self.options.max_bytes:
                    raise VideoRejected("the video is over the size limit")
                if len(buffer) >= self.options.chunk_bytes:
                    await asyncio.to_thread(f.write, bytes(buffer))
                    written += len(buffer)
                    buffer.clear()
                    if on_bytes is not None:
                        on_bytes(written)
        finally:
            if buffer:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(f.write, bytes(buffer))
                written += len(buffer)
            await asyncio.to_thread(f.close)
        if on_bytes is not None:
            on_bytes(written)
        if written < 8:
            raise VideoRejected("the body is empty")

    def _install(self, activity: Activity, device: str, part: Path) -> Clip:
        """Check the downloaded file, thumbnail it, move it into place and index it."""
        try:
            info = probe(part)
        except RecordError as err:
            raise VideoRejected(f"not a playable MP4: {err}") from err
        if info.video_frames == 0 or info.duration <= 0:
            raise VideoRejected("the MP4 holds no video frames")
        start = activity.event_time.timestamp()
        rel = self.store.new_clip_path(device, start, activity.event_type or "activity")
        try:
            final = self.store.resolve(rel)
            thumb = final.with_suffix(".jpg")
            if not thumbnail_from_file(part, thumb):
                _LOGGER.warning("cloud video %s: no thumbnail", activity.id)
            fsync_path(part)
            os.replace(part, final)
            fsync_path(final.parent)
            clip = Clip(
                device_id=activity.device_id,
                device=device,
                event=activity.event_type or "activity",
                start=start,
                path=rel,
                end=start + info.duration,
                duration=info.duration,
                size=info.size,
                video_codec=info.video_codec,
                audio_codec=info.audio_codec,
                width=info.width,
                height=info.height,
                source="cloud",
                activity_id=activity.id,
                thumbnail=self.store.relative(thumb) if thumb.exists() else None,
            )
            try:
                added = self.store.index.add(clip)
            except RecordError:
                # The recorder linked this activity to a live clip meanwhile: keep that one.
                final.unlink(missing_ok=True)
                thumb.unlink(missing_ok=True)
                raise ArchiveError("already indexed meanwhile", transient=False) from None
            self._remember(activity, "downloaded")
            return added
        finally:
            self.store.release(rel)

    def _sweep_parts(self) -> None:
        """Delete unfinished downloads nobody resumed (their activity left the cloud)."""
        cutoff = time.time() - self.options.part_max_age
        for part in self.store.root.glob("*/*/.cloud-*.part"):
            with contextlib.suppress(OSError):
                if not part.is_symlink() and part.stat().st_mtime < cutoff:
                    part.unlink()
                    _LOGGER.info("deleted an abandoned download %s", self.store.relative(part))


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _open_at(path: Path, offset: int) -> IO[bytes]:
    """The part file opened for writing at ``offset`` (anything after it is dropped)."""
    f = path.open("r+b" if offset else "wb")
    f.truncate(offset)
    f.seek(offset)
    return f


def _range_start(content_range: str) -> int | None:
    """``bytes 100-199/200`` -> 100."""
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _range_total(content_range: str) -> int | None:
    """``bytes */200`` or ``bytes 0-9/200`` -> 200."""
    try:
        return int(content_range.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None
