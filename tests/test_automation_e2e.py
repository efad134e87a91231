"""The whole chain on a running bridge: a simulated press, seen by webhook, UDP and polling,
runs the rule's SwitchBot scene once, and the event with its action result reaches the API
and the live feed."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bridge.redact import Secret
from bridge.routes.common import DEVICES
from bridge.sim.world import SimWorld
from bridge.skybell.triggers import add_webhook_triggers, webhook_url

from .serve_util import BridgeFactory, get_json

pytestmark = pytest.mark.slow


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rule_now(scene: str) -> str:
    """A rule whose night window is moved to contain the present moment (UTC)."""
    now = datetime.now(UTC)
    after, before = (
        (now - timedelta(hours=1)).strftime("%H:%M"),
        (now + timedelta(hours=1)).strftime("%H:%M"),
    )
    return f"""
[[rules]]
name = "porch light at night"
on = ["doorbell"]
devices = ["front-door"]
when = {{ after = "{after}", before = "{before}", timezone = "UTC" }}
do = [{{ scene = "{scene}" }}]
"""


async def test_a_press_runs_the_scene_once_and_reaches_the_feed(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    udp_port = free_udp_port()
    bridge = await make_bridge(
        rule_now("Porch light on"),
        SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET="hook-secret",
        SKYBELL_BRIDGE_EVENTS_UDP_ENABLED="true",
        SKYBELL_BRIDGE_EVENTS_UDP_HOST="127.0.0.1",
        SKYBELL_BRIDGE_EVENTS_UDP_PORT=str(udp_port),
        SKYBELL_BRIDGE_EVENTS_POLL_INTERVAL="1",
        SKYBELL_BRIDGE_RECORD_RECORD_MOTION="false",
    )
    front = [d for d in bridge.app[DEVICES] if d.slug == "front-door"]
    await add_webhook_triggers(
        bridge.client, front, webhook_url(bridge.http_url), secret=Secret("hook-secret")
    )
    world.presser.udp_target = ("127.0.0.1", udp_port)

    async with (
        aiohttp.ClientSession() as http,
        http.get(bridge.http_url + "api/events/stream") as feed,
    ):
        press = await world.press("Front Door")
        assert press.webhooks
        assert press.udp
        await world.switchbot.wait_executed(1, 10)
        data = None
        async for raw in feed.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                data = json.loads(line[5:])
                if data.get("type") == "doorbell":
                    break
    assert data is not None
    assert data["device"] == "front-door"

    await asyncio.sleep(3)  # three poll intervals: polling sees the same press too
    assert [e.name for e in world.switchbot.executed] == ["Porch light on"]
    _, body = await get_json(bridge.http_url + "api/events?type=doorbell")
    events = body["events"]
    assert len(events) == 1
    assert set(events[0]["sources"]) >= {"webhook", "udp"}
    assert events[0]["activity_id"] == press.activity_id
    results = events[0]["results"]
    assert [r["ok"] for r in results] == [True]
    _, automation = await get_json(bridge.http_url + "api/automation")
    assert json.dumps(automation)  # serialisable status for the page


async def test_a_press_outside_the_window_does_nothing(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    now = datetime.now(UTC)
    config = (
        rule_now("Porch light on")
        .replace(
            (now - timedelta(hours=1)).strftime("%H:%M"),
            (now + timedelta(hours=2)).strftime("%H:%M"),
            1,
        )
        .replace(
            (now + timedelta(hours=1)).strftime("%H:%M"),
            (now + timedelta(hours=3)).strftime("%H:%M"),
            1,
        )
    )
    bridge = await make_bridge(config, SKYBELL_BRIDGE_EVENTS_POLL_INTERVAL="1")
    await world.press("Front Door")
    for _ in range(50):
        _, body = await get_json(bridge.http_url + "api/events?type=doorbell")
        if body["events"]:
            break
        await asyncio.sleep(0.1)
    assert body["events"]
    await asyncio.sleep(0.5)
    assert world.switchbot.executed == []
