"""Clips API: list and filter, metadata, video (with HTTP Range for seeking), thumbnail, delete,
and manual recording (``POST /api/record?src=``); and the contexts of what serves them: the clip
store, the recorder and the optional S3 uploader.

Clips are addressed by their index id only (``[0-9]+`` in the route), never by a path from the
request, so no URL can name a file outside the clips folder; the store resolves and checks the
indexed path again before anything is opened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from aiohttp import web

from bridge.record import (
    ClipBusy,
    ClipStore,
    PathOutsideStore,
    Recorder,
    RecordError,
    RecordOptions,
    S3Options,
    StorageFull,
)
from bridge.record.active import RecordingDict
from bridge.record.index import Clip, ClipDict
from bridge.record.s3 import S3Uploader
from bridge.routes.common import HUB, error, int_query, path_id, stream_from_query

__all__ = ["RECORDER", "STORE", "UPLOADER", "ClipEntry", "ClipList", "RecordingList", "setup"]

_LOGGER = logging.getLogger(__name__)

STORE = web.AppKey("clip_store", ClipStore)
RECORDER = web.AppKey("recorder", Recorder)
UPLOADER = web.AppKey("s3_uploader", S3Uploader)

_FILTERS = ("device", "event", "source", "state", "cursor")


_MAX_OFFSET = 10**9
_MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: later times cannot be shown as dates


def _time_param(request: web.Request, name: str) -> float | None:
    """A Unix time or an ISO-8601 date/time from the query."""
    value = request.query.get(name)
    if value is None or value == "":
        return None
    when: float | None
    try:
        when = float(value)
    except ValueError:
        try:
            # A naive time is local; timestamp() of year 1 or 9999 can overflow (OSError).
            when = datetime.fromisoformat(value).timestamp()
        except (ValueError, OverflowError, OSError):
            when = None
    if when is None or not -_MAX_TIME <= when <= _MAX_TIME:  # also NaN and inf
        raise error(web.HTTPBadRequest, f"{name} must be a Unix time or an ISO date")
    return when


class ClipEntry(ClipDict):
    """A clip in ``GET /api/clips`` and ``GET /api/clips/{id}``: the index row and its URLs."""

    video_url: str
    thumbnail_url: str | None  # None: no thumbnail was made


class ClipList(TypedDict):
    """The body of ``GET /api/clips``: a page, newest first."""

    clips: list[ClipEntry]
    next_cursor: str | None  # pass back as ?cursor= for the next page; None: the last page


class RecordingList(TypedDict):
    """The body of ``GET /api/record``: the clips being recorded now."""

    recording: list[RecordingDict]


def _describe(clip: Clip) -> ClipEntry:
    base = f"/api/clips/{clip.id}"
    return {
        **clip.as_dict(),
        "video_url": base + "/video",
        "thumbnail_url": base + "/thumbnail" if clip.thumbnail else None,
    }


async def _list(request: web.Request) -> web.Response:
    filters: dict[str, Any] = {k: request.query[k] for k in _FILTERS if request.query.get(k)}
    filters["since"] = _time_param(request, "since")
    filters["until"] = _time_param(request, "until")
    # A limit past the cap is clamped rather than refused, as before; absurd ones are a 400.
    filters["limit"] = min(int_query(request, "limit", 50, 0, _MAX_OFFSET), 1000) or 1
    filters["offset"] = int_query(request, "offset", 0, 0, _MAX_OFFSET)
    try:
        page = await request.app[STORE].query(**filters)
    except RecordError as err:  # a cursor that is not one of ours
        raise error(web.HTTPBadRequest, str(err)) from None
    body: ClipList = {"clips": [_describe(c) for c in page.clips], "next_cursor": page.next_cursor}
    return web.json_response(body)


async def _clip(request: web.Request) -> Clip:
    clip_id = path_id(request)
    clip = await request.app[STORE].get(clip_id)
    if clip is None:
        raise error(web.HTTPNotFound, f"no clip {clip_id}")
    return clip


async def _metadata(request: web.Request) -> web.Response:
    return web.json_response(_describe(await _clip(request)))


async def _video(request: web.Request) -> web.FileResponse:
    clip = await _clip(request)
    try:
        path = request.app[STORE].file_of(clip)
    except PathOutsideStore:
        _LOGGER.warning("clip %d has a path outside the clips folder; refusing it", clip.id)
        raise error(web.HTTPNotFound, f"clip {clip.id} has no file") from None
    if not path.is_file():
        await _redirect_to_s3(request, clip)
        raise error(web.HTTPNotFound, f"clip {clip.id} has no file (deleted or uploaded)")
    # FileResponse answers Range requests (206) and HEAD, which browsers need to seek.
    return web.FileResponse(path, headers={"Content-Type": "video/mp4"})


async def _thumbnail(request: web.Request) -> web.FileResponse:
    clip = await _clip(request)
    try:
        path = request.app[STORE].thumbnail_of(clip)
    except PathOutsideStore:
        path = None
    if path is None or not path.is_file():
        await _redirect_to_s3(request, clip, thumbnail=True)
        raise error(web.HTTPNotFound, f"clip {clip.id} has no thumbnail")
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})


async def _redirect_to_s3(request: web.Request, clip: Clip, *, thumbnail: bool = False) -> None:
    """A clip kept only in S3 is served from there, through a short-lived presigned URL."""
    uploader = request.app.get(UPLOADER)
    if uploader is None:
        return
    url = await uploader.presigned_url(clip.id, thumbnail=thumbnail)
    if url is not None:
        # 307 keeps the method and lets the browser's Range requests go straight to S3.
        raise web.HTTPTemporaryRedirect(url)


async def _delete(request: web.Request) -> web.Response:
    clip_id = path_id(request)
    try:
        clip = await request.app[STORE].delete(clip_id)
    except ClipBusy:
        raise error(web.HTTPConflict, f"clip {clip_id} is still being recorded") from None
    if clip is None:
        raise error(web.HTTPNotFound, f"no clip {clip_id}")
    return web.json_response({"deleted": clip_id})


async def _record(request: web.Request) -> web.Response:
    """Start (default) or stop a manual clip: ``POST /api/record?src=NAME[&action=stop]``."""
    stream = stream_from_query(request)
    recorder = request.app[RECORDER]
    action = request.query.get("action", "start")
    if action == "stop":
        clip = await recorder.stop(stream)
        return web.json_response({"stopped": clip is not None, "clip": clip and _describe(clip)})
    if action != "start":
        raise error(web.HTTPBadRequest, "action must be start or stop")
    try:
        job = await recorder.start_manual(stream)
    except StorageFull as err:
        raise error(web.HTTPInsufficientStorage, str(err)) from None
    return web.json_response({"recording": job.as_dict()}, status=202)


async def _recording(request: web.Request) -> web.Response:
    body: RecordingList = {"recording": [j.as_dict() for j in request.app[RECORDER].active()]}
    return web.json_response(body)


def setup(
    app: web.Application,
    options: RecordOptions,
    s3: S3Options | None = None,
    *,
    clips_dir: Path,
) -> None:
    """The clip store, recorder and (if enabled) S3 uploader contexts, and the clips API.

    Clips only in S3 redirect there. The recorder records the hub's streams, so this comes
    after ``bridge.routes.streams``.
    """

    async def store_context(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE] = await asyncio.to_thread(ClipStore, clips_dir)
        try:
            yield
        finally:
            await asyncio.to_thread(store.close)

    async def recorder_context(app: web.Application) -> AsyncIterator[None]:
        hub = app[HUB]
        recorder = app[RECORDER] = Recorder(hub, app[STORE], options)
        for stream in hub.streams:
            # Presses (and rules' record actions) are recorded with the device's pre-roll, so
            # while its stream is live the hub keeps keyframes coming (streams.keyframe_interval).
            preroll = options.for_device(stream.device_id, stream.name).preroll
            stream.wants_preroll = preroll > 0
        try:
            recovered = await recorder.start()
            if recovered:
                _LOGGER.info("recovered %d clip(s) left by an earlier run", len(recovered))
            yield
        finally:
            await recorder.close()  # clips being recorded are finished

    async def uploader_context(app: web.Application) -> AsyncIterator[None]:
        assert s3 is not None
        uploader = app[UPLOADER] = S3Uploader(app[STORE], s3)
        try:
            await uploader.start()
            yield
        finally:
            await uploader.close()

    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(recorder_context)
    if s3 is not None and s3.enabled:
        app.cleanup_ctx.append(uploader_context)
    app.router.add_get("/api/clips", _list)
    app.router.add_get(r"/api/clips/{id:[0-9]+}", _metadata)
    app.router.add_delete(r"/api/clips/{id:[0-9]+}", _delete)
    app.router.add_get(r"/api/clips/{id:[0-9]+}/video", _video)
    app.router.add_get(r"/api/clips/{id:[0-9]+}/thumbnail", _thumbnail)
    app.router.add_post("/api/record", _record)
    app.router.add_get("/api/record", _recording)
