"""The hub (one stream per doorbell on the account) and ``/api/streams`` (go2rtc's path).

``setup`` adds the routes and the hub's cleanup context: at start it lists the account's
doorbells and makes a stream for each (``HUB``, ``DEVICES``); at the end it ends every live call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypedDict

import aiohttp
from aiohttp import web

from bridge.media.aiortc_patch import parse_host_addresses
from bridge.media.hub import Connector, Hub, LiveCall, Stream, StreamStats
from bridge.media.live import open_live_call
from bridge.media.options import StreamOptions
from bridge.mjpeg import MjpegStats
from bridge.publish import PublishStats
from bridge.routes.common import DEVICES, HUB, error, find_stream, stream_from_query
from bridge.skybell import SkyBellClient
from bridge.webrtc import WebRtcStats

__all__ = [
    "STREAM_INFO",
    "Consumer",
    "Producer",
    "StreamEntry",
    "StreamExtras",
    "StreamsBody",
    "setup",
]

_MAX_WARM = 3600.0  # a forgotten warm-up must not hold a doorbell's session for days


# Optional keys are declared with total=False rather than NotRequired: with postponed
# annotations, Python 3.11's TypedDict cannot see NotRequired at run time, and
# tests/test_api_shapes.py checks bodies against __required_keys__ and __optional_keys__.
class StreamExtras(TypedDict, total=False):
    """Per-stream facts the app knows and the hub does not (see ``bridge.app``).

    The bridge always gives ``mjpeg`` and ``webrtc``, and the device's keys for a doorbell on
    the account (every stream is one); an app built without them leaves them out.
    """

    mjpeg: MjpegStats
    webrtc: WebRtcStats
    device: str  # the doorbell's name as the SkyBell app shows it
    online: bool
    battery: int | None  # percent; None for wired models
    publish: list[PublishStats]  # the stream's publish targets (bridge.publish)


class Producer(TypedDict):
    """go2rtc's producer entry: where the stream comes from."""

    url: str  # skybell:<device id>
    state: str


class Consumer(TypedDict):
    """go2rtc's consumer entry: one per kind of subscriber."""

    name: str
    count: int


class StreamEntry(StreamStats, StreamExtras):
    """One stream in ``GET /api/streams`` (and the whole body with ``?src=``)."""

    id: str  # the SkyBell device id
    name: str  # the stream name
    # go2rtc clients (Home Assistant's integration, the WebRTC card) look for these two lists.
    producers: list[Producer]
    consumers: list[Consumer]


# The body of GET /api/streams: stream name -> entry.
StreamsBody = dict[str, StreamEntry]

# Extra per-stream facts (device name, online state, per-output viewer counts) that the app
# knows and the hub does not, merged into the stream's entry.
STREAM_INFO: web.AppKey[Callable[[Stream], StreamExtras]] = web.AppKey("stream_info")


def _describe(app: web.Application, stream: Stream) -> StreamEntry:
    stats = stream.stats()
    extra = app.get(STREAM_INFO)
    extras: StreamExtras = extra(stream) if extra is not None else {}
    # Keys in this order (hub, ids, the app's, go2rtc's), as the entry has always had them.
    return {
        **stats,
        "id": stream.device_id,
        "name": stream.name,
        **extras,
        "producers": [{"url": f"skybell:{stream.device_id}", "state": stream.state}],
        "consumers": [{"name": name, "count": n} for name, n in stats["viewers"].items()],
    }


async def _streams(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    src = request.query.get("src")
    if src is not None:
        stream = find_stream(hub, src)
        return web.json_response(_describe(request.app, stream))
    body: StreamsBody = {s.name: _describe(request.app, s) for s in hub.streams}
    return web.json_response(body)


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
