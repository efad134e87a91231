"""The bridge's aiohttp application: an ordered list of each part's ``setup(app, ...)``.

Each setup adds its routes and a cleanup context (aiohttp's ``cleanup_ctx``: start the part,
yield, close it) that keeps the part under one typed ``web.AppKey``. ``runner.setup()`` starts
the contexts in the order listed here, each finding the parts made before it on the app;
``runner.cleanup()`` stops listening, lets requests finish, then closes them in reverse: the
outputs and RTSP first, then rules and events, then the recorder (clips being recorded are
finished), the clip store, and last the hub (every live call ends).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.authlimit import AuthLimiter, parse_proxies
from bridge.automation.switchbot import SwitchBotClient
from bridge.config import ServerSettings, Settings
from bridge.errors import ConfigError
from bridge.heap import heap_usage
from bridge.limits import ConnectionLimiter
from bridge.media.hub import Stream
from bridge.preflight import open_without_password
from bridge.routes import (
    archive,
    automation,
    clips,
    devices,
    events,
    hls,
    limits,
    metrics,
    mjpeg,
    mqtt,
    publish,
    rtsp,
    streams,
    talk,
    webrtc,
)
from bridge.routes import switchbot as switchbot_route
from bridge.routes import web as web_page
from bridge.routes.auth import AUTH_LIMITER, basic_auth_middleware
from bridge.routes.common import DEVICES, HUB
from bridge.routes.origin import HostPolicy, guard_middleware
from bridge.skybell import SkyBellClient

__all__ = ["INDEX_NAME", "build_app", "build_auth_limiter"]

INDEX_NAME = "index.sqlite3"  # clips and events share one database in the clips folder

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
    # The C heap tells a leak (in-use grows) from glibc fragmentation (free grows): issue 13.
    heap = heap_usage()
    c_heap = None if heap is None else {"in_use": heap.in_use, "free": heap.free}
    streams_n = len(request.app[HUB].streams)
    return web.json_response({"ok": True, "streams": streams_n, "tasks": tasks, "heap": c_heap})


def _stream_info(app: web.Application) -> Callable[[Stream], streams.StreamExtras]:
    """Per-stream facts the app knows and the hub does not: the device, MJPEG and WebRTC."""

    def info(stream: Stream) -> streams.StreamExtras:
        device = next((d for d in app[DEVICES] if d.id == stream.device_id), None)
        out: streams.StreamExtras = {"mjpeg": app[mjpeg.MJPEG].stats().get(stream.name, {})}
        webrtc_stats = webrtc.stream_stats(app, stream)
        if "webrtc" in webrtc_stats:
            out["webrtc"] = webrtc_stats["webrtc"]
        out["publish"] = publish.stream_publish_stats(app, stream.name)
        if device is not None:
            out["device"] = device.name
            out["online"] = device.online
            out["battery"] = device.battery
        return out

    return info


def _middlewares(
    srv: ServerSettings, limiter: ConnectionLimiter, open_paths: tuple[str, ...] = _OPEN_PATHS
) -> list[Middleware]:
    # The limits first, so a request counts as proof of life even when it is then refused.
    # Host and Origin are checked with or without a password (DNS rebinding, cross-site
    # writes); the open paths carry their own credential or tell nothing (see routes.origin).
    policy = HostPolicy((srv.host, srv.rtsp_host), srv.allowed_hosts)
    middlewares = [limits.limits_middleware(limiter), guard_middleware(policy, exempt=open_paths)]
    if srv.password is not None:
        # server.metrics_token lets Prometheus scrape /metrics without holding the password.
        token = srv.metrics_token
        middlewares.append(
            basic_auth_middleware(
                srv.username,
                srv.password.reveal(),
                open_paths=open_paths,
                bearer_tokens={metrics.METRICS_PATH: token.reveal()} if token else None,
            )
        )
    return middlewares


def build_app(
    settings: Settings,
    client: SkyBellClient,
    http: aiohttp.ClientSession,
    switchbot: SwitchBotClient | None = None,
) -> web.Application:
    """Assemble every part, the HTTP API and the outputs for the account's doorbells."""
    srv = settings.server
    # One limiter for both listeners: the descriptors they spend come from one budget.
    limiter = ConnectionLimiter(
        max_connections=srv.max_connections,
        max_per_client=srv.max_connections_per_client,
        exempt=[a for a in srv.trusted_proxies.split(",") if a.strip()],
    )
    # SwitchBot posts to the public name it was given and sends no password: its receiver's
    # path holds the random token that is its credential (bridge.routes.switchbot).
    token = settings.switchbot.webhook_token
    open_paths = _OPEN_PATHS + ((switchbot_route.webhook_path(token),) if token else ())
    app = web.Application(middlewares=_middlewares(srv, limiter, open_paths))
    app[AUTH_LIMITER] = build_auth_limiter(srv)  # one wrong-password count for HTTP and RTSP
    clips_dir = settings.storage.clips_dir

    streams.setup(app, settings.streams, client, http)
    # Right after the hub (it wakes streams): every talk source (rules, WebRTC, RTSP) finds it.
    talk.setup(app, settings.talk)
    # After the hub (it looks up each target's stream), so closed before the live calls end.
    publish.setup(app, settings.publish)
    devices.setup(app, client)
    s3 = settings.s3.for_instance(settings.bridge.instance)
    clips.setup(app, settings.record, s3, clips_dir=clips_dir)
    archive.setup(app, settings.archive, client, http)
    events.setup(app, settings.events, client, log_path=clips_dir / INDEX_NAME)
    automation.setup(
        app,
        settings.rules,
        switchbot=switchbot,
        http=http,
        archive=settings.archive.enabled,
        client=client,
        chime_port=settings.events.udp_port,
    )
    switchbot_route.setup(app, settings.switchbot.webhook_token)
    limits.setup(app, limiter)
    rtsp.setup(app, srv)
    hls.setup(app, settings.hls)
    mjpeg.setup(app, settings.mjpeg, mjpeg.cloud_fallback(client))
    webrtc.setup(app, settings.webrtc)
    # After every part it reads (and so closed first): MQTT only reports and commands them.
    mqtt.setup(app, settings.mqtt, client, srv, bridge_instance=settings.bridge.instance)
    metrics.setup(app)
    web_page.setup(
        app,
        # Read per request: RTSP binds after the app has started (and may ask for port 0).
        rtsp_port=lambda: app[rtsp.RTSP].port,
        rtsp_host=srv.rtsp_host,
        username=srv.username,
        password=srv.password.reveal() if srv.password is not None else None,
        lan_without_password=bool(open_without_password(srv)),
    )
    app[streams.STREAM_INFO] = _stream_info(app)
    app.router.add_get("/api/health", _health)
    return app
