"""The bridge's aiohttp application: an ordered list of each output's ``setup(app, ...)``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.config import Settings
from bridge.media.hub import Hub, Stream
from bridge.mjpeg import MjpegOptions
from bridge.routes import hls, mjpeg, streams, webrtc
from bridge.routes.auth import basic_auth_middleware
from bridge.routes.common import HUB
from bridge.skybell import Device, SkyBellClient

__all__ = ["CLIENT", "DEVICES", "SETTINGS", "build_app"]

SETTINGS = web.AppKey("settings", Settings)
CLIENT = web.AppKey("client", SkyBellClient)
DEVICES = web.AppKey("devices", list[Device])

# Paths that carry their own credential and must stay reachable without the UI password.
_OPEN_PATHS = ("/api/health",)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "streams": len(request.app[HUB].streams)})


def build_app(
    settings: Settings, client: SkyBellClient, hub: Hub, devices: list[Device]
) -> web.Application:
    """Assemble the HTTP API and outputs for the account's doorbells."""
    srv = settings.server
    middlewares: list[Middleware] = []
    if srv.password is not None:
        middlewares.append(
            basic_auth_middleware(srv.username, srv.password.reveal(), open_paths=_OPEN_PATHS)
        )
    app = web.Application(middlewares=middlewares)
    app[SETTINGS] = settings
    app[CLIENT] = client
    app[DEVICES] = devices
    app[HUB] = hub
    by_id = {d.id: d for d in devices}

    def device_info(stream: Stream) -> dict[str, Any]:
        device = by_id.get(stream.device_id)
        if device is None:
            return {}
        return {
            "device": device.name,
            "online": device.online,
            "battery": device.battery,
            "mjpeg": app[mjpeg.MJPEG].stats().get(stream.name, {}),
            **webrtc.stream_stats(app, stream),
        }

    app[streams.STREAM_INFO] = device_info
    app.router.add_get("/api/health", _health)
    streams.setup(app)
    mj = settings.mjpeg
    mjpeg.setup(
        app,
        MjpegOptions(mj.fps, mj.width, mj.quality, mj.snapshot_max_age, mj.snapshot_timeout),
        mjpeg.cloud_fallback(client),
    )
    webrtc.setup(app, max_sessions_per_stream=settings.webrtc.max_sessions)
    hls_opts = settings.hls
    hls.setup(
        app,
        idle_timeout=hls_opts.idle_timeout,
        segment_target=hls_opts.segment_target,
        part_target=hls_opts.part_target,
        window=hls_opts.window,
    )
    return app
