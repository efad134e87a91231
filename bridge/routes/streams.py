"""The hub (one stream per doorbell on the account) and ``/api/streams`` (go2rtc's path).

``setup`` adds the routes and the hub's cleanup context: at start it lists the account's
doorbells and makes a stream for each (``HUB``, ``DEVICES``); at the end it ends every live call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

from bridge.media.aiortc_patch import parse_host_addresses
from bridge.media.hub import Connector, Hub, LiveCall, Stream
from bridge.media.live import open_live_call
from bridge.media.options import StreamOptions
from bridge.routes.common import DEVICES, HUB, error, find_stream, stream_from_query
from bridge.skybell import SkyBellClient

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


def _connector(
    client: SkyBellClient, http: aiohttp.ClientSession, device_id: str, options: StreamOptions
) -> Connector:
    async def connect() -> LiveCall:
        # The doorbell-side peer only: browser-facing ones follow webrtc.ice_host_addresses.
        hosts = parse_host_addresses(options.ice_host_addresses)
        return await open_live_call(client, http, device_id, ice_host_addresses=hosts)

    return connect


def setup(
    app: web.Application,
    options: StreamOptions,
    client: SkyBellClient,
    http: aiohttp.ClientSession,
) -> None:
    """The hub's context, ``GET /api/streams`` and ``POST /api/streams/warm?src=&seconds=``."""

    async def hub_context(app: web.Application) -> AsyncIterator[None]:
        devices = await client.devices()
        hub = app[HUB] = Hub(
            idle_timeout=options.idle_timeout,
            media_timeout=options.media_timeout,
            silence_timeout=options.silence_timeout,
            ring_seconds=options.buffer_seconds,
            ring_bytes=options.buffer_mb << 20,
            keyframe_interval=options.keyframe_interval,
        )
        app[DEVICES] = devices
        for device in devices:
            hub.add(device.id, device.slug, _connector(client, http, device.id, options))
        try:
            yield
        finally:
            await hub.close()  # every live call ends

    app.cleanup_ctx.append(hub_context)
    app.router.add_get("/api/streams", _streams)
    app.router.add_post("/api/streams/warm", _warm)
