"""The running bridge: one hub stream per doorbell, the HTTP app and the RTSP listener.

``serve`` is this plus a wait; tests start a ``Bridge`` on port 0 against the simulator and
talk to it only through its ports, as a user's tools would.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from bridge.app import build_app
from bridge.config import Settings
from bridge.media import aiortc_patch
from bridge.media.hub import Hub, Session
from bridge.media.live import open_live_session
from bridge.rtsp import RtspServer
from bridge.skybell import Device, SkyBellClient

__all__ = ["Bridge"]

_LOGGER = logging.getLogger(__name__)


class Bridge:
    """Everything ``skybell-bridge serve`` runs; ``start()`` then ``close()``."""

    def __init__(
        self, settings: Settings, client: SkyBellClient, http: aiohttp.ClientSession
    ) -> None:
        self.settings = settings
        self.client = client
        self.devices: list[Device] = []
        st = settings.streams
        self.hub = Hub(
            idle_timeout=st.idle_timeout,
            media_timeout=st.media_timeout,
            ring_seconds=st.buffer_seconds,
        )
        self.http_url = ""
        self.rtsp_url = ""
        self._http = http
        self._runner: web.AppRunner | None = None
        self._rtsp: RtspServer | None = None
        self._closed = False

    def _connector(self, device_id: str) -> Callable[[], Awaitable[Session]]:
        async def connect() -> Session:
            return await open_live_session(self.client, self._http, device_id)

        return connect

    async def start(self) -> None:
        """Find the doorbells, then open the HTTP and RTSP listeners."""
        hosts = [
            a.strip() for a in self.settings.streams.ice_host_addresses.split(",") if a.strip()
        ]
        if hosts:
            aiortc_patch.restrict_host_candidates(hosts)
        self.devices = await self.client.devices()
        for device in self.devices:
            self.hub.add(device.id, device.slug, self._connector(device.id))
        srv = self.settings.server
        password = srv.password.reveal() if srv.password is not None else None
        self._rtsp = RtspServer(
            self.hub.get,
            host=srv.rtsp_host,
            port=srv.rtsp_port,
            username=srv.username if password is not None else None,
            password=password,
            auth=srv.rtsp_auth,
            audio=srv.rtsp_audio,
        )
        await self._rtsp.start()
        app = build_app(self.settings, self.client, self.hub, self.devices)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, srv.host, srv.port).start()
        host, port = self._runner.addresses[0][:2]
        self.http_url = f"http://{_urlhost(host)}:{port}/"
        self.rtsp_url = f"rtsp://{_urlhost(self._rtsp.host)}:{self._rtsp.port}/"

    async def close(self) -> None:
        """Stop listening, end every live session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._rtsp is not None:
            await self._rtsp.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.hub.close()


def _urlhost(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
