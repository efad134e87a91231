"""``/api/frame.jpeg`` and ``/api/stream.mjpeg`` (go2rtc's paths) over the lazy decoder."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator

from aiohttp import web

from bridge.media.buffers import StreamEnded
from bridge.mjpeg import Fallback, FrameSpec, MjpegOptions, MjpegService, SnapshotUnavailable
from bridge.routes.common import error, stream_from_query
from bridge.skybell import SkyBellClient

__all__ = ["MJPEG", "SOURCE_HEADER", "cloud_fallback", "setup"]

_LOGGER = logging.getLogger(__name__)

MJPEG = web.AppKey("mjpeg", MjpegService)
SOURCE_HEADER = "X-Snapshot-Source"  # live, cache or cloud

_BOUNDARY = "frame"
# How often a viewer with no new frame checks that its client is still there: aiohttp does not
# cancel a handler when the client goes, and a stalled stream gives no write to fail.
_ALIVE_CHECK = 1.0
_NO_STORE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


def cloud_fallback(client: SkyBellClient) -> Fallback:
    """The SkyBell cloud's snapshot of a device, as the snapshot fallback."""

    async def fetch(device_id: str) -> bytes:
        return (await client.snapshot(device_id)).jpeg

    return fetch


def _query_number(request: web.Request, *names: str) -> float | None:
    for name in names:
        raw = request.query.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise error(web.HTTPBadRequest, f"{name} must be a positive number, not {raw!r}")
        return value
    return None


def _spec(request: web.Request, service: MjpegService) -> FrameSpec:
    """The request's ``fps``, ``width``/``w`` and ``height``/``h``, clamped; junk is a 400."""
    fps = _query_number(request, "fps")
    width = _query_number(request, "width", "w")
    height = _query_number(request, "height", "h")
    # Sizes are whole pixels; the clamp below keeps them within the configured cap anyway.
    return service.spec(
        fps,
        None if width is None else max(1, round(min(width, 1e6))),
        None if height is None else max(1, round(min(height, 1e6))),
    )


async def _frame_jpeg(request: web.Request) -> web.Response:
    stream = stream_from_query(request)
    service = request.app[MJPEG]
    spec = _spec(request, service)
    try:
        snap = await service.snapshot(stream, spec)
    except SnapshotUnavailable as err:
        status = web.HTTPBadGateway if err.cloud_tried else web.HTTPServiceUnavailable
        raise error(status, f"no picture of {stream.name}: {err}", stream=stream.name) from None
    return web.Response(
        body=snap.jpeg,
        content_type="image/jpeg",
        headers={SOURCE_HEADER: snap.source, **_NO_STORE},
    )


def _part(jpeg: bytes) -> bytes:
    head = (
        f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    ).encode()
    return b"".join((head, jpeg, b"\r\n"))


async def _stream_mjpeg(request: web.Request) -> web.StreamResponse:
    stream = stream_from_query(request)
    service = request.app[MJPEG]
    spec = _spec(request, service)
    wait = service.options.snapshot_timeout
    try:
        viewer = service.watch(stream, spec)
    except StreamEnded:
        raise error(web.HTTPServiceUnavailable, "shutting down", stream=stream.name) from None
    with viewer:
        try:
            jpeg = await viewer.next(wait)
        except StreamEnded:
            jpeg = None
        if jpeg is None:
            # Headers are not sent until there is a picture, so a dead stream is a clear error
            # rather than an empty multipart response that players wait on forever.
            raise error(
                web.HTTPServiceUnavailable,
                f"no picture from {stream.name} within {wait:g} s",
                stream=stream.name,
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}",
                **_NO_STORE,
            }
        )
        await response.prepare(request)
        try:
            while jpeg is not None or _client_alive(request):
                if jpeg is not None:
                    await response.write(_part(jpeg))
                jpeg = await viewer.next(_ALIVE_CHECK)
        except StreamEnded:
            pass  # the stream or the service stopped: end the response
        except ConnectionError:
            _LOGGER.debug("MJPEG viewer of %s went away", stream.name)
    return response


def _client_alive(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


def setup(app: web.Application, options: MjpegOptions, fallback: Fallback | None = None) -> None:
    """Add the decoders' context (``MJPEG``) and the snapshot and MJPEG routes; ``fallback``
    supplies a picture when live fails."""

    async def service_context(app: web.Application) -> AsyncIterator[None]:
        service = app[MJPEG] = MjpegService(options, fallback)
        try:
            yield
        finally:
            await service.close()

    async def end_viewers(app: web.Application) -> None:
        # On shutdown, before aiohttp waits for handlers: MJPEG responses never end on their
        # own. Closing twice is safe; the context closes it again at the end.
        await app[MJPEG].close()

    app.cleanup_ctx.append(service_context)
    app.on_shutdown.append(end_viewers)
    app.router.add_get("/api/frame.jpeg", _frame_jpeg)
    # No HEAD: it would start a viewer whose response never ends and never carries a body.
    app.router.add_get("/api/stream.mjpeg", _stream_mjpeg, allow_head=False)
