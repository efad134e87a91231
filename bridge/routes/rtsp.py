"""The RTSP server's context: one more part of the app, though it serves no HTTP.

The context makes the server (it reads the hub's streams, ``HUB``, and shares the connection
and wrong-password limiters with HTTP) and closes it at the end. ``Bridge.start`` binds it after
the HTTP site, because RTSP announces itself: a busy HTTP port then stops the start before
anything claims to be listening. ONVIF backchannel audio goes to the talk service (``TALK``) as
the talk source ``rtsp``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bridge.config import ServerSettings
from bridge.routes.auth import AUTH_LIMITER
from bridge.routes.common import HUB, TALK
from bridge.routes.limits import LIMITER
from bridge.rtsp import RtspServer, TalkOpener, TalkSink

__all__ = ["RTSP", "setup"]

RTSP = web.AppKey("rtsp", RtspServer)


def setup(app: web.Application, server: ServerSettings) -> None:
    """Add the RTSP server's context (``RTSP``); comes after ``bridge.routes.streams``."""

    async def rtsp_context(app: web.Application) -> AsyncIterator[None]:
        password = server.password.reveal() if server.password is not None else None
        service = app.get(TALK)
        talk: TalkOpener | None = None
        if service is not None:

            async def talk(name: str) -> TalkSink:
                return await service.open(name, "rtsp")

        rtsp = app[RTSP] = RtspServer(
            app[HUB].get,
            host=server.rtsp_host,
            port=server.rtsp_port,
            username=server.username if password is not None else None,
            password=password,
            auth=server.rtsp_auth,
            audio=server.rtsp_audio,
            header_timeout=server.header_timeout,
            max_udp_sessions=server.rtsp_max_udp_sessions,
            limiter=app.get(LIMITER),
            auth_limiter=app[AUTH_LIMITER],
            talk=talk,
        )
        try:
            yield
        finally:
            await rtsp.close()

    app.cleanup_ctx.append(rtsp_context)
