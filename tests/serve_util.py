"""A whole ``Bridge`` against the simulator on port 0, and small HTTP helpers, for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.automation import SwitchBotClient
from bridge.config import load_settings
from bridge.redact import Secret
from bridge.service import Bridge
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY
from bridge.sim.switchbot import DEFAULT_SECRET as SWITCHBOT_SECRET
from bridge.sim.switchbot import DEFAULT_TOKEN as SWITCHBOT_TOKEN
from bridge.sim.world import SWITCHBOT_PREFIX, SimWorld
from bridge.skybell import SkyBellClient

FRONT = "0579ce92-72a5-4b1f-8191-e360876705c3"

BridgeFactory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def world() -> AsyncIterator[SimWorld]:
    world = SimWorld()
    await world.start()
    for device in world.cloud.devices.values():
        device.settings["image_quality"] = 0  # 480p keeps the suite light on 2 cores
    yield world
    await world.close()


@pytest.fixture
async def make_bridge(world: SimWorld, tmp_path: Path) -> AsyncIterator[BridgeFactory]:
    made: list[Bridge] = []
    async with aiohttp.ClientSession() as http:

        async def factory(config: str | None = None, **env: str) -> Bridge:
            base = {
                "SKYBELL_BRIDGE_SERVER_PORT": "0",
                "SKYBELL_BRIDGE_SERVER_RTSP_PORT": "0",
                "SKYBELL_BRIDGE_STREAMS_IDLE_TIMEOUT": "2",
                "SKYBELL_BRIDGE_STORAGE_CLIPS_DIR": str(tmp_path / "clips"),
                "SKYBELL_BRIDGE_RECORD_MIN_FREE_MB": "0",
            }
            path = None
            if config is not None:
                path = tmp_path / f"bridge{len(made)}.toml"
                path.write_text(config)
            settings = load_settings(path, {**base, **env})
            client = SkyBellClient(
                http, base_url=world.base_url + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
            )
            switchbot = SwitchBotClient(
                http,
                token=Secret(SWITCHBOT_TOKEN),
                secret=Secret(SWITCHBOT_SECRET),
                base_url=world.base_url + SWITCHBOT_PREFIX,
            )
            bridge = Bridge(settings, client, http, switchbot)
            made.append(bridge)
            await bridge.start()
            return bridge

        yield factory
        for bridge in made:
            await bridge.close()
            await bridge.close()  # idempotent


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def get_json(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` byte for byte to 127.0.0.1:``port``; (status, body) of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
