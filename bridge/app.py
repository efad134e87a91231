"""The bridge's aiohttp application: an ordered list of each package's routes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.config import Settings
from bridge.skybell import Device, SkyBellClient

__all__ = ["DEVICES", "SETTINGS", "build_app"]

SETTINGS = web.AppKey("settings", Settings)
CLIENT = web.AppKey("client", SkyBellClient)
DEVICES = web.AppKey("devices", list[Device])


async def _streams(request: web.Request) -> web.Response:
    devices = request.app[DEVICES]
    body: dict[str, Any] = {
        d.slug: {"id": d.id, "name": d.name, "online": d.online, "state": "idle", "viewers": 0}
        for d in devices
    }
    return web.json_response(body)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "devices": len(request.app[DEVICES])})


def build_app(settings: Settings, client: SkyBellClient, devices: list[Device]) -> web.Application:
    """Assemble the HTTP API for the given account's devices."""
    app = web.Application()
    app[SETTINGS] = settings
    app[CLIENT] = client
    app[DEVICES] = devices
    app.add_routes([web.get("/api/streams", _streams), web.get("/api/health", _health)])
    return app
