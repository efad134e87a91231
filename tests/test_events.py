"""Doorbell events through their public surfaces: the webhook, UDP port, poller, bus, log and API."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.events import Event, EventBus, EventLog, EventOptions, EventService
from bridge.redact import Secret
from bridge.routes import events as event_routes
from bridge.sim.cloud import SimCloud
from bridge.skybell import Device, SkyBellClient
from bridge.skybell.directory import DeviceDirectory
from bridge.skybell.events import make_event
from bridge.skybell.poller import ActivityPoller
from bridge.skybell.triggers import (
    WEBHOOK_PATH,
    add_webhook_triggers,
    list_triggers,
    remove_triggers,
)
from bridge.skybell.udp import BUTTON_PACKET, MOTION_PACKET, encode_packet, parse_packet

from .conftest import ClientFactory, FakeClock

FRONT = "0579ce92-72a5-4b1f-8191-e360876705c3"
BACK = "be0e3ef1-cf12-4350-bdc2-ce5266bdb838"
SEED_DEVICE = "751e37fa-2d43-4c98-9f6e-73db52f7f741"  # on nobody's account here
SECRET = "hook-secret-8f3a91"
HEADER = "X-Skybell-Bridge-Secret"

# The webhook payloads from SkyBell's documentation, device ids swapped for the sim's.
SEED_PAYLOADS: dict[str, dict[str, Any]] = {
    "doorbell": {
        "event": "doorbell",
        "date_time": 1706025131324,
        "device_id": FRONT,
        "name": "Front Door",
        "preview": "/9j/4AAQSkZJRg==",
        "activity_id": "36709519-97bc-42c6-b398-166dbfb5a3ae",
    },
    "lstream": {
        "event": "lstream",
        "date_time": "2024-01-23T15:39:21.192Z",
        "device_id": FRONT,
        "name": "SkyGuardian",
        "detail": {"state": "lstream", "device": FRONT},
    },
    "telemetry": {
        "event": "telemetry",
        "date_time": "2023-11-28T22:02:27.586Z",
        "device_id": FRONT,
        "name": "Front Door",
        "detail": {
            "gateway": "192.168.2.1",
            "signal_level": "-18",
            "wifi_bit_rate": "VHT2MCS5/VHT2MCS8 20MHz LGI",
            "link_quality": "88/100",
            "wifi_noise": "-100",
            "network_frequency": "2.432",
            "boot_time": 1704750069,
            "uptime": 1276,
            "timestamp": 1704751347283,
            "ip_address": "192.168.2.204",
            "ip_address_public": "163.250.165.212",
            "ip_subnet": "255.255.255.0",
        },
    },
    "availability": {
        "event": "availability",
        "date_time": "2024-01-08T21:41:46.958Z",
        "device_id": FRONT,
        "name": "Front Door",
        "detail": {"state": "connected"},
    },
    "vready": {
        "event": "vready",
        "date_time": "2024-01-31T17:34:37.846Z",
        "device_id": BACK,
        "name": "Back Garden",
        "detail": {
            "activity_id": "99facb31-0c35-4518-afe9-3e3cf29571d6",
            "size": 644483,
            "device_id": BACK,
        },
    },
    "ota": {
        "event": "ota",
        "date_time": "2024-01-08T22:23:37.401Z",
        "device_id": FRONT,
        "name": "Front Door",
        "detail": {"status": "SUCCEEDED", "version": "1.3.8"},
    },
    "devicedeleted": {
        "event": "devicedeleted",
        "date_time": "2024-01-27T15:39:21.192Z",
        "device_id": FRONT,
        "detail": {"state": "devicedeleted", "device": FRONT},
    },
}


def sim_devices(sim: SimCloud) -> list[Device]:
    return [Device.from_api(d.as_api(sim.now_ms())) for d in sim.devices.values()]


async def drain(queue: Any, timeout: float = 0.5) -> list[Event]:
    """Every event queued now or arriving within ``timeout`` of the last one."""
    got: list[Event] = []
    while True:
        try:
            async with asyncio.timeout(timeout):
                item = await queue.get()
        except TimeoutError:
            return got
        if item is None:
            return got
        got.append(item[1])


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


class Rig:
    """An app with the event routes on 127.0.0.1, its service, and a queue of what it published."""

    def __init__(self, service: EventService, http: TestClient) -> None:
        self.service = service
        self.http = http
        self.seen = service.bus.queue("test")

    async def hook(
        self, payload: Any, *, secret: str | None = SECRET, method: str = "POST", **kw: Any
    ) -> aiohttp.ClientResponse:
        headers = {HEADER: secret} if secret is not None else {}
        if isinstance(payload, bytes):
            kw["data"] = payload
        elif payload is not None:
            kw["json"] = payload
        return await self.http.request(method, WEBHOOK_PATH, headers=headers, **kw)

    async def logged(self, **query: Any) -> dict[str, Any]:
        resp = await self.http.get("/api/events", params=query)
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(
    sim: SimCloud, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> RigFactory:
    async def factory(client: SkyBellClient | None = None, **options: Any) -> Rig:
        opts: dict[str, Any] = {"webhook_secret": Secret(SECRET), "poll_enabled": False}
        opts.update(options)
        service = EventService(
            client, sim_devices(sim), EventOptions(**opts), log_path=tmp_path / "index.sqlite3"
        )
        app = web.Application()
        event_routes.setup(app, service, keepalive=0.2)
        return Rig(service, await aiohttp_client(app))

    return factory


# -- webhook -----------------------------------------------------------------------------------


async def test_seed_payloads_become_events(make_rig: RigFactory) -> None:
    rig = await make_rig()
    for kind, payload in SEED_PAYLOADS.items():
        resp = await rig.hook(payload)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["type"] == kind
        assert body["known_device"] is True
    events = {e.type: e for e in await drain(rig.seen)}
    assert set(events) == set(SEED_PAYLOADS)
    press = events["doorbell"]
    assert press.device == "front-door"
    assert press.source == "webhook"
    assert press.time == datetime(2024, 1, 23, 15, 52, 11, 324000, tzinfo=UTC)
    assert press.activity_id == "36709519-97bc-42c6-b398-166dbfb5a3ae"
    assert press.preview is not None
    assert press.preview.startswith(b"\xff\xd8")
    assert "preview" not in press.payload
    ready = events["vready"]
    assert ready.device == "back-garden"
    assert ready.activity_id == "99facb31-0c35-4518-afe9-3e3cf29571d6"
    assert events["availability"].payload["detail"] == {"state": "connected"}
    assert events["telemetry"].time == datetime(2023, 11, 28, 22, 2, 27, 586000, tzinfo=UTC)

    async def all_logged() -> bool:
        return (await rig.logged())["total"] == len(SEED_PAYLOADS)

    await wait_until(all_logged)
    row = (await rig.logged(type="doorbell"))["events"][0]
    assert row["activity_id"] == press.activity_id
    assert row["time"] == "2024-01-23T15:52:11.324000Z"
    assert row["results"] == []


async def test_repeated_webhook_is_one_event(make_rig: RigFactory) -> None:
    rig = await make_rig()
    first = await (await rig.hook(SEED_PAYLOADS["doorbell"])).json()
    again = await (await rig.hook(SEED_PAYLOADS["doorbell"])).json()
    assert first["duplicate"] is False
    assert again["duplicate"] is True
    assert again["event_id"] == first["event_id"]
    assert len(await drain(rig.seen)) == 1


async def test_unknown_device_and_event_name_are_accepted(make_rig: RigFactory) -> None:
    rig = await make_rig()
    stranger = {**SEED_PAYLOADS["doorbell"], "device_id": SEED_DEVICE}
    resp = await rig.hook(stranger)
    assert resp.status == 202
    body = await resp.json()
    assert body["known_device"] is False
    # Its name says "Front Door", but it must not pose as our front door.
    assert body["device"] == SEED_DEVICE
    resp = await rig.hook({**SEED_PAYLOADS["ota"], "event": "sound"})
    assert resp.status == 200
    events = await drain(rig.seen)
    assert [e.type for e in events] == ["doorbell", "unknown"]
    assert events[1].payload["event"] == "sound"


async def test_secret_is_checked_first(make_rig: RigFactory) -> None:
    rig = await make_rig()
    resp = await rig.hook(SEED_PAYLOADS["doorbell"], secret=None)
    assert resp.status == 401
    assert HEADER in (await resp.json())["error"]
    resp = await rig.hook(SEED_PAYLOADS["doorbell"], secret="hook-secret-wrong")
    assert resp.status == 403
    resp = await rig.hook(b"{broken", secret="")
    assert resp.status == 403  # refused before the body is even read
    assert await drain(rig.seen, 0.1) == []
    assert (await rig.hook(SEED_PAYLOADS["doorbell"])).status == 200


async def test_no_secret_configured_means_no_webhook(make_rig: RigFactory) -> None:
    rig = await make_rig(webhook_secret=None)
    resp = await rig.hook(SEED_PAYLOADS["doorbell"])
    assert resp.status == 403
    assert "webhook_secret" in (await resp.json())["error"]


async def test_oversized_bodies_are_refused(make_rig: RigFactory) -> None:
    rig = await make_rig(webhook_max_bytes=4096)
    big = {**SEED_PAYLOADS["doorbell"], "preview": "A" * 8000}
    resp = await rig.hook(big)
    assert resp.status == 413
    assert (await resp.json())["limit"] == 4096

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000  # no Content-Length: refused while reading

    resp = await rig.hook(None, data=chunks())
    assert resp.status == 413
    ok = await rig.hook({**SEED_PAYLOADS["doorbell"], "preview": "A" * 1000})
    assert ok.status == 200


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "over"),
        (b"[" * 20_000 + b"]" * 20_000, "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"doorbell"', "JSON object"),
        (json.dumps({"device_id": FRONT}).encode(), "'event'"),
        (json.dumps({"event": 5, "device_id": FRONT}).encode(), "'event'"),
        (json.dumps({"event": "doorbell"}).encode(), "'device_id'"),
        (json.dumps({"event": "doorbell", "device_id": ["x"]}).encode(), "'device_id'"),
        (
            json.dumps({"event": "motion", "device_id": FRONT, "date_time": "soon"}).encode(),
            "date_time",
        ),
        (
            json.dumps({"event": "motion", "device_id": FRONT, "date_time": True}).encode(),
            "date_time",
        ),
        (json.dumps({"event": "ota", "device_id": FRONT, "detail": "x"}).encode(), "'detail'"),
        (
            json.dumps({"event": "doorbell", "device_id": FRONT, "activity_id": 7}).encode(),
            "activity_id",
        ),
        (
            json.dumps(
                {"event": "vready", "device_id": FRONT, "detail": {"activity_id": {}}}
            ).encode(),
            "detail.activity_id",
        ),
        (json.dumps({"event": "doorbell", "device_id": FRONT, "name": 3}).encode(), "'name'"),
    ],
)
async def test_malformed_payloads_are_400(
    make_rig: RigFactory, body: bytes, complaint: str
) -> None:
    rig = await make_rig(webhook_max_bytes=65536)
    resp = await rig.hook(body)
    assert resp.status in (400, 413)
    assert complaint in (await resp.json())["error"]
    assert (resp.status == 413) == (complaint == "over")
    # The app keeps serving.
    assert (
        await rig.hook(SEED_PAYLOADS["ota"])
    ).status == 200
    assert [e.type for e in await drain(rig.seen, 0.2)] == ["ota"]


async def test_get_webhooks(make_rig: RigFactory) -> None:
    rig = await make_rig()
    resp = await rig.hook(None, method="GET", params={"event": "motion", "device_id": BACK})
    assert resp.status == 200
    resp = await rig.hook(None, method="GET")
    assert resp.status == 202  # a ping names no device
    resp = await rig.hook(None, method="GET", params={"event": "doorbell"})
    assert resp.status == 400
    resp = await rig.hook(None, method="GET", secret="hook-secret-wrong")
    assert resp.status == 403
    motion, ping = await drain(rig.seen)
    assert (motion.type, motion.device, motion.payload["method"]) == (
        "motion",
        "back-garden",
        "GET",
    )
    assert (ping.type, ping.device_id, ping.payload["ping"]) == ("unknown", "", True)
