"""A simulated press reaches the bridge three ways (UDP, webhook, polling) and is one event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bridge.events import Event, EventService
from bridge.sim.world import SimWorld

from .events_util import wire_events
from .test_events import drain, wait_until

SECRET = "hook-secret-5d21c7"


class Rig:
    def __init__(self, world: SimWorld, service: EventService, bridge: TestClient) -> None:
        self.world = world
        self.service = service
        self.bridge = bridge
        self.news = service.bus.queue("test")

    async def settled(self) -> None:
        """Wait until the kept event has been seen by all three paths."""

        async def check() -> bool:
            recent = self.service.bus.recent()
            return bool(recent) and len(recent[0].sources) == 3

        await wait_until(check, 10)

    async def logged(self) -> list[dict[str, Any]]:
        body = await (await self.bridge.get("/api/events")).json()
        events: list[dict[str, Any]] = body["events"]
        return events


@pytest.fixture
async def rig(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> AsyncIterator[Rig]:
    world = SimWorld()
    await world.start()
    async with aiohttp.ClientSession() as http:
        service, bridge = await wire_events(
            world, http, tmp_path / "index.sqlite3", aiohttp_client, SECRET
        )
        yield Rig(world, service, bridge)
        await bridge.close()
    await world.close()


def kept(rig: Rig) -> list[Event]:
    return rig.service.bus.recent()


async def test_one_press_is_one_event(rig: Rig) -> None:
    record = await rig.world.press("front-door")
    assert record.udp_error is None
    assert [w["status"] for w in record.webhooks] == [200]
    await rig.settled()
    (event,) = await drain(rig.news)
    assert event.type == "doorbell"
    assert event.device == "front-door"
    assert event.source == "udp"  # the broadcast is first, as at a real door
    merged = kept(rig)[0]
    assert merged.id == event.id
    assert set(merged.sources) == {"udp", "webhook", "poll"}
    assert merged.activity_id == record.activity_id
    assert event.received >= record.monotonic  # a benchmark's press-to-event latency
    stats = rig.service.bus.stats()
    assert (stats["new"], stats["duplicates"]) == (1, 2)

    async def row_merged() -> bool:
        rows = await rig.logged()
        return len(rows) == 1 and len(rows[0]["sources"]) == 3

    await wait_until(row_merged)
    (row,) = await rig.logged()
    assert row["id"] == event.id
    assert row["activity_id"] == record.activity_id


async def test_press_over_http_and_disabled_paths(rig: Rig) -> None:
    world = rig.world
    async with aiohttp.ClientSession() as http:
        url = world.base_url + "/_sim/press"
        resp = await http.post(url, params={"device": "Back Garden", "event": "motion"})
        assert resp.status == 200
        record = await resp.json()
        assert record["event"] == "motion"
        assert rig.service.udp is not None
        assert record["udp"] == f"127.0.0.1:{rig.service.udp.port}"
        for bad, status in (
            ({"device": "Attic"}, 404),
            ({"device": "Front Door", "event": "knock"}, 400),
        ):
            assert (await http.post(url, params=bad)).status == status
        bad_target = {"device": "Front Door", "udp": "192.0.2.1:5000"}
        assert (await http.post(url, params=bad_target)).status == 400
        presses = await (await http.get(world.base_url + "/_sim/presses")).json()
        assert [p["activity_id"] for p in presses] == [record["activity_id"]]
    await rig.settled()
    (event,) = await drain(rig.news)
    assert (event.type, event.device) == ("motion", "back-garden")
    # A trigger whose URL fails is counted towards SkyBell's 25-failure limit.
    for trigger in world.cloud.triggers.values():
        trigger["meta_config"]["url"] = str(rig.bridge.make_url("/nowhere"))
    record2 = await world.press("Front Door")
    assert [w["status"] for w in record2.webhooks] == [404]
    front = next(t for t in world.cloud.triggers.values() if t["device_id"] == record2.device_id)
    assert front["fail_count"] == 1
