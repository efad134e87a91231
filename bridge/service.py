"""The running bridge: the app of ``bridge.app`` started, and its HTTP and RTSP listeners.

``serve`` is this plus a wait; tests start a ``Bridge`` on port 0 against the simulator and
talk to it only through its ports, as a user's tools would. Every part (hub, recorder, events,
rules, outputs) is one of the app's cleanup contexts: ``start`` runs them in order and binds the
listeners, ``close`` is the runner's cleanup, which stops listening and closes them in reverse.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from bridge.app import build_app
from bridge.automation.switchbot import SwitchBotClient
from bridge.config import Settings
from bridge.media.hub import Hub
from bridge.preflight import bind_error, check_exposure
from bridge.routes.common import HUB
from bridge.routes.limits import LIMITER, LimitedSite
from bridge.routes.rtsp import RTSP
from bridge.skybell import SkyBellClient
from bridge.skybell.share import DeviceShare

__all__ = ["Bridge"]

_LOGGER = logging.getLogger(__name__)


class Bridge:
    """Everything ``skybell-bridge serve`` runs; ``start()`` then ``close()``."""

    def __init__(
        self,
        settings: Settings,
        client: SkyBellClient,
        http: aiohttp.ClientSession,
        switchbot: SwitchBotClient | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        if settings.skybell.devices and client.share is None:
            # Every part reads the doorbells from the client, so the share applies to all.
            client.share = DeviceShare(settings.skybell.devices)
        self.switchbot = switchbot
        # URLs a client on this machine can use; *_bound are the addresses really listened on.
        self.http_url = ""
        self.rtsp_url = ""
        self.http_bound: list[str] = []
        self.rtsp_bound: list[str] = []
        self._http = http
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._closed = False

    @property
    def app(self) -> web.Application:
        """The application; its typed keys hold every part (``HUB``, ``DEVICES``, ...)."""
        if self._app is None:
            raise RuntimeError("the bridge has not been started")
        return self._app

    @property
    def hub(self) -> Hub:
        """The hub: one stream per doorbell."""
        return self.app[HUB]

    @property
    def devices(self) -> list[str]:
        """The stream names being served."""
        hub = self._app.get(HUB) if self._app is not None else None
        return [s.name for s in hub.streams] if hub is not None else []

    async def start(self) -> None:
        """Find the doorbells, start every part in order, then open the listeners."""
        srv = self.settings.server
        check_exposure(srv)
        app = self._app = build_app(self.settings, self.client, self._http, self.switchbot)
        # aiohttp closes a connection that sends no whole request within its keep-alive timeout
        # (from the connect on): the slowloris guard, and idle keep-alive connections go too.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=srv.header_timeout
        )
        await self._runner.setup()  # the contexts, in bridge.app's order
        # HTTP binds first and RTSP (which announces itself) second, so a busy port or a bad
        # host stops the start before anything claims to be listening.
        try:
            await LimitedSite(self._runner, srv.host, srv.port, limiter=app[LIMITER]).start()
        except OSError as err:
            raise bind_error(err, "", srv.host, srv.port) from None
        rtsp = app[RTSP]
        try:
            await rtsp.start()
        except OSError as err:
            raise bind_error(err, "rtsp_", srv.rtsp_host, srv.rtsp_port) from None
        self.http_bound = [_hostport(a[0], a[1]) for a in self._runner.addresses]
        self.rtsp_bound = [_hostport(rtsp.host, rtsp.port)]
        host, port = self._runner.addresses[0][:2]
        self.http_url = f"http://{_urlhost(host)}:{port}/"
        self.rtsp_url = f"rtsp://{_urlhost(rtsp.host)}:{rtsp.port}/"

    async def close(self) -> None:
        """Stop listening, finish clips, end every live session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._runner is None:
            return
        try:
            # Listeners first, then the contexts in reverse (after a failed start, those that
            # started): each is closed even when another fails, and the failures raised after.
            await self._runner.cleanup()
        except Exception:
            _LOGGER.exception("error while shutting down")


def _urlhost(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
