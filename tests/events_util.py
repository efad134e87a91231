"""An event service wired to a running SimWorld by all three paths (webhook, UDP, polling)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.events import EventOptions, EventService
from bridge.redact import Secret
from bridge.routes import events as event_routes
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY
from bridge.sim.world import SimWorld
from bridge.skybell import SkyBellClient
from bridge.skybell.triggers import WEBHOOK_PATH, add_webhook_triggers

ClientFactory = Callable[..., Awaitable[TestClient]]


async def wire_events(
    world: SimWorld,
    http: aiohttp.ClientSession,
    log_path: Path,
    aiohttp_client: ClientFactory,
    secret: str,
) -> tuple[EventService, TestClient]:
    """Serve an EventService's routes, register its webhook with the simulated cloud and point
    the simulator's UDP presses at it; polls every 0.2 s."""
    client = SkyBellClient(
        http, base_url=world.base_url + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
    )
    devices = await client.devices()
    options = EventOptions(
        webhook_secret=Secret(secret),
        udp_enabled=True,
        udp_host="127.0.0.1",
        udp_port=0,
        poll_interval=0.2,
    )
    app = web.Application()
    event_routes.setup(app, options, client, devices=devices, log_path=log_path, keepalive=1.0)
    bridge = await aiohttp_client(app)  # the app's start makes and starts the service
    service = app[event_routes.EVENTS]
    await add_webhook_triggers(
        client, devices, str(bridge.make_url(WEBHOOK_PATH)), secret=Secret(secret)
    )
    assert service.udp is not None
    world.presser.udp_target = ("127.0.0.1", service.udp.port)
    return service, bridge
