"""``/api/streams``: every doorbell stream with its state, viewers and codecs (go2rtc's path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from bridge.media.hub import Stream
from bridge.routes.common import HUB, find_stream

__all__ = ["STREAM_INFO", "setup"]

# Extra per-stream facts (device name, online state, per-output viewer counts) that the app
# knows and the hub does not; returns a dict merged into the stream's entry.
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


def setup(app: web.Application) -> None:
    """Add ``GET /api/streams``."""
    app.router.add_get("/api/streams", _streams)
