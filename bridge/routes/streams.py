"""``/api/streams``: every doorbell stream with its state, viewers and codecs (go2rtc's path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from bridge.media.hub import Stream
from bridge.routes.common import HUB, error, find_stream, stream_from_query

__all__ = ["STREAM_INFO", "setup"]

# Extra per-stream facts (device name, online state, per-output viewer counts) that the app
# knows and the hub does not; returns a dict merged into the stream's entry.
_MAX_WARM = 3600.0  # a forgotten warm-up must not hold a doorbell's session for days

STREAM_INFO: web.AppKey[Callable[[Stream], dict[str, Any]]] = web.AppKey("stream_info")


def _describe(app: web.Application, stream: Stream) -> dict[str, Any]:
    info = stream.stats()
    info.update(id=stream.device_id, name=stream.name)
    extra = app.get(STREAM_INFO)
    if extra is not None:
        info.update(extra(stream))
    # go2rtc clients (Home Assistant's integration, the WebRTC card) look for these two lists.
    info["producers"] = [{"url": f"skybell:{stream.device_id}", "state": stream.state}]
    info["consumers"] = [{"name": name, "count": n} for name, n in info["viewers"].items()]
    return info


async def _streams(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    src = request.query.get("src")
    if src is not None:
        stream = find_stream(hub, src)
        return web.json_response(_describe(request.app, stream))
    return web.json_response({s.name: _describe(request.app, s) for s in hub.streams})


async def _warm(request: web.Request) -> web.Response:
    """Keep a stream's live session running for ``seconds`` with or without viewers."""
    stream = stream_from_query(request)
    try:
        seconds = float(request.query.get("seconds", "60"))
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= _MAX_WARM:
        raise error(web.HTTPBadRequest, f"seconds must be a number from 1 to {_MAX_WARM:g}")
    stream.keep_warm(seconds)
    return web.json_response(_describe(request.app, stream))


def setup(app: web.Application) -> None:
    """Add ``GET /api/streams`` and ``POST /api/streams/warm?src=&seconds=``."""
    app.router.add_get("/api/streams", _streams)
    app.router.add_post("/api/streams/warm", _warm)
