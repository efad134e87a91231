"""The bridge's aiohttp application: an ordered list of each part's ``setup(app, ...)``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.authlimit import AuthLimiter, parse_proxies
from bridge.automation.engine import RuleEngine
from bridge.config import ServerSettings, Settings
from bridge.errors import ConfigError
from bridge.events import EventService
from bridge.limits import ConnectionLimiter
from bridge.media.aiortc_patch import parse_host_addresses
from bridge.media.hub import Hub, Stream
from bridge.mjpeg import MjpegOptions
from bridge.preflight import open_without_password
from bridge.record import ClipStore, Recorder
from bridge.record.s3 import S3Uploader
from bridge.routes import clips, events, hls, mjpeg, streams, webrtc
from bridge.routes import web as web_page
from bridge.routes.auth import AUTH_LIMITER, basic_auth_middleware
from bridge.routes.common import HUB
from bridge.routes.limits import limits_middleware
from bridge.routes.origin import HostPolicy, guard_middleware
from bridge.skybell import Device, SkyBellClient

__all__ = ["PARTS", "Parts", "build_app", "build_auth_limiter"]


@dataclass
class Parts:
    """Everything the routes serve from; the service builds and owns them."""

    settings: Settings
    client: SkyBellClient
    hub: Hub
    devices: list[Device]
    events: EventService
    store: ClipStore
    recorder: Recorder
    rules: RuleEngine
    uploader: S3Uploader | None = None
    rtsp_port: int = 0  # the port RTSP really listens on (the setting may say 0)
    limiter: ConnectionLimiter | None = None  # connection caps shared with RTSP
    auth_limiter: AuthLimiter | None = None  # wrong-password counts shared with RTSP


PARTS = web.AppKey("parts", Parts)

# Paths that carry their own credential (or none is needed) and stay open without the password:
# SkyBell cannot send Basic auth, so its webhook is guarded by the shared-secret header instead.
_OPEN_PATHS = ("/api/health", events.WEBHOOK_PATH)


def build_auth_limiter(srv: ServerSettings) -> AuthLimiter:
    """The one wrong-password limiter for HTTP and RTSP, believing only the configured proxies."""
    try:
        return AuthLimiter(trusted_proxies=parse_proxies(srv.trusted_proxies))
    except ValueError as err:
        raise ConfigError("server.trusted_proxies", str(err)) from None


async def _health(request: web.Request) -> web.Response:
    # The task count shows a leak of background work from outside (the soak watches it).
    tasks = len(asyncio.all_tasks())
    return web.json_response({"ok": True, "streams": len(request.app[HUB].streams), "tasks": tasks})


async def _automation(request: web.Request) -> web.Response:
    """Rules (fired, skipped, last results) and the SwitchBot call budget."""
    return web.json_response(request.app[PARTS].rules.stats())


def build_app(parts: Parts) -> web.Application:
    """Assemble the HTTP API and outputs for the account's doorbells."""
    settings = parts.settings
    srv = settings.server
    middlewares: list[Middleware] = []
    if parts.limiter is not None:
        # First, so a request counts as proof of life even when it is then refused.
        middlewares.append(limits_middleware(parts.limiter))
    # Host and Origin are checked with or without a password (DNS rebinding, cross-site
    # writes); the open paths carry their own credential or tell nothing (see routes.origin).
    policy = HostPolicy((srv.host, srv.rtsp_host), srv.allowed_hosts)
    middlewares.append(guard_middleware(policy, exempt=_OPEN_PATHS))
    if srv.password is not None:
        middlewares.append(
            basic_auth_middleware(srv.username, srv.password.reveal(), open_paths=_OPEN_PATHS)
        )
    app = web.Application(middlewares=middlewares)
    app[PARTS] = parts
    app[AUTH_LIMITER] = parts.auth_limiter or build_auth_limiter(srv)
    app[HUB] = parts.hub
    by_id = {d.id: d for d in parts.devices}

    def stream_info(stream: Stream) -> dict[str, Any]:
        device = by_id.get(stream.device_id)
        info: dict[str, Any] = {"mjpeg": app[mjpeg.MJPEG].stats().get(stream.name, {})}
        info.update(webrtc.stream_stats(app, stream))
        if device is not None:
            info.update(device=device.name, online=device.online, battery=device.battery)
        return info

    app[streams.STREAM_INFO] = stream_info
    app.router.add_get("/api/health", _health)
    app.router.add_get("/api/automation", _automation)
    streams.setup(app)
    mj = settings.mjpeg
    mjpeg.setup(
        app,
        MjpegOptions(mj.fps, mj.width, mj.quality, mj.snapshot_max_age, mj.snapshot_timeout),
        mjpeg.cloud_fallback(parts.client),
    )
    webrtc.setup(
        app,
        max_sessions_per_stream=settings.webrtc.max_sessions,
        ice_host_addresses=parse_host_addresses(settings.webrtc.ice_host_addresses),
    )
    h = settings.hls
    hls.setup(
        app,
        idle_timeout=h.idle_timeout,
        segment_target=h.segment_target,
        part_target=h.part_target,
        window=h.window,
    )
    clips.setup(app, parts.store, parts.recorder, parts.uploader)
    events.setup(app, parts.events, manage=False)
    web_page.setup(
        app,
        # Read per request: RTSP binds after the app is built (and may ask for port 0).
        rtsp_port=lambda: parts.rtsp_port or srv.rtsp_port,
        rtsp_host=srv.rtsp_host,
        username=srv.username,
        password=srv.password.reveal() if srv.password is not None else None,
        lan_without_password=bool(open_without_password(srv)),
    )
    return app
