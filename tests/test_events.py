"""Doorbell events through their public surfaces: the webhook, UDP port, poller, bus, log and API."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
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
from bridge.skybell.payloads import make_event
from bridge.skybell.poller import ActivityPoller
from bridge.skybell.triggers import (
    WEBHOOK_PATH,
    add_webhook_triggers,
    list_triggers,
    remove_triggers,
)
from bridge.skybell.udp import BUTTON_PACKET, MOTION_PACKET, encode_packet, parse_packet

from .conftest import ClientFactory, FakeClock
from .legacy_db import make_legacy_db

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


async def drain(queue: Any, timeout: float = 0.3) -> list[Event]:
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
        while not await check():  # noqa: ASYNC110 - the state belongs to the code under test
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
        app = web.Application()
        event_routes.setup(
            app,
            EventOptions(**opts),
            client,
            devices=sim_devices(sim),
            log_path=tmp_path / "index.sqlite3",
            keepalive=0.2,
        )
        http = await aiohttp_client(app)  # the app's start makes and starts the service
        return Rig(app[event_routes.EVENTS], http)

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
        (
            b'{"event": "motion", "device_id": "%s", "date_time": 1e30}' % FRONT.encode(),
            "date_time",
        ),
        (b'{"event": "motion", "device_id": "%s", "date_time": NaN}' % FRONT.encode(), "date_time"),
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
    assert (await rig.hook(SEED_PAYLOADS["ota"])).status == 200
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


# -- bus ---------------------------------------------------------------------------------------


def front(sim: SimCloud) -> Device:
    return next(d for d in sim_devices(sim) if d.id == FRONT)


def press(device: Device, source: str, at: datetime, activity: str | None = None) -> Event:
    return make_event(device, "doorbell", source, when=at, activity_id=activity)


async def test_bus_merges_one_press_from_three_sources(sim: SimCloud) -> None:
    bus = EventBus(window=5.0)
    news: list[Event] = []
    updates: list[Event] = []

    async def on_new(e: Event) -> None:
        news.append(e)

    async def on_update(e: Event) -> None:
        updates.append(e)

    bus.subscribe("plain", on_new)
    bus.subscribe("updates", on_new, on_update=on_update)
    door, t0 = front(sim), datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    udp = bus.publish(press(door, "udp", t0))
    hook = bus.publish(press(door, "webhook", t0 - timedelta(seconds=1.5), "act-1"))
    # Polling sees the activity much later and with the cloud's time: merged by activity id.
    poll = bus.publish(press(door, "poll", t0 + timedelta(seconds=40), "act-1"))
    again = bus.publish(press(door, "udp", t0 + timedelta(seconds=2)))
    assert udp.new
    assert (hook.new, hook.changed) == (False, True)
    assert (poll.new, poll.changed) == (False, True)
    assert (again.new, again.changed) == (False, False)
    kept = poll.event
    assert kept.id == udp.event.id
    assert kept.activity_id == "act-1"
    assert kept.sources == ("udp", "webhook", "poll")
    await bus.close()
    assert [e.id for e in news] == [kept.id, kept.id]  # once per subscriber
    assert [e.sources for e in updates] == [("udp", "webhook"), ("udp", "webhook", "poll")]
    assert bus.stats()["duplicates"] == 3


async def test_bus_keeps_distinct_events_apart(sim: SimCloud) -> None:
    bus = EventBus(window=5.0)
    door, t0 = front(sim), datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    back = next(d for d in sim_devices(sim) if d.id == BACK)
    assert bus.publish(press(door, "webhook", t0, "act-1")).new
    assert bus.publish(press(door, "webhook", t0 + timedelta(seconds=1), "act-2")).new
    assert bus.publish(press(door, "udp", t0 + timedelta(seconds=10))).new
    assert bus.publish(press(back, "udp", t0)).new
    assert bus.publish(make_event(door, "motion", "udp", when=t0)).new
    # Non-press events merge only when they are the same report.
    offline = make_event(door, "availability", "webhook", when=t0, payload={"state": "off"})
    online = make_event(door, "availability", "webhook", when=t0 + timedelta(seconds=1))
    assert bus.publish(offline).new
    assert bus.publish(online).new
    assert not bus.publish(offline).new
    assert bus.stats()["new"] == 7
    await bus.close()


async def test_slow_or_failing_subscribers_do_not_block_others(sim: SimCloud) -> None:
    bus = EventBus(window=0.0)
    got: list[Event] = []
    forever = asyncio.Event()

    async def record(e: Event) -> None:
        got.append(e)

    async def stuck(e: Event) -> None:
        await forever.wait()

    async def broken(e: Event) -> None:
        raise RuntimeError("rule exploded")

    bus.subscribe("stuck", stuck, max_queue=2)
    bus.subscribe("broken", broken)
    bus.subscribe("record", record)
    reader = bus.queue("never-read", max_queue=3)
    door, t0 = front(sim), datetime(2026, 5, 1, tzinfo=UTC)
    for n in range(6):
        bus.publish(press(door, "udp", t0 + timedelta(minutes=n)))
    await wait_until(lambda: _ready(len(got) == 6))
    stats = {s["name"]: s for s in bus.stats()["subscribers"]}
    assert stats["broken"]["failures"] == 6
    assert stats["stuck"]["dropped"] == 4  # published in one go: two queued, four dropped
    assert stats["never-read"]["dropped"] == 3
    await bus.close(grace=0.1)
    assert await reader.get() is not None  # what was queued is still readable ...
    assert [await reader.get() for _ in range(2)][-1] is not None
    assert await reader.get() is None  # ... then the end


async def _ready(value: bool) -> bool:
    return value


# -- event log ---------------------------------------------------------------------------------


async def test_log_queries_results_and_retention(sim: SimCloud, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 5, 10, tzinfo=UTC).timestamp())
    # The file is shared with the clip index: its table and rows (as an older bridge wrote
    # them, two clips) are already there.
    make_legacy_db(tmp_path / "sub" / "index.sqlite3", components=("clips",), events=False)
    log = EventLog(tmp_path / "sub" / "index.sqlite3", max_age=3 * 86400, max_rows=8, clock=clock)
    await log.open()
    await log.open()  # idempotent
    door = front(sim)
    back = next(d for d in sim_devices(sim) if d.id == BACK)
    start = datetime(2026, 5, 9, tzinfo=UTC)
    for n in range(6):
        await log.add(
            make_event(door if n % 2 else back, "doorbell", "udp", when=start + timedelta(hours=n))
        )
    motion = make_event(door, "motion", "webhook", when=start + timedelta(hours=7))
    await log.add(motion)
    await log.add_result(motion.id, "switchbot:porch-light", True, "turned on")
    await log.add_result(motion.id, "record", False, "stream offline")
    page = await log.query(device="front-door")
    assert page.total == 4
    assert page.events[0]["id"] == motion.id
    assert [r["action"] for r in page.events[0]["results"]] == ["switchbot:porch-light", "record"]
    assert page.events[0]["results"][1]["ok"] is False
    assert (await log.query(device=BACK)).total == 3
    assert (await log.query(type="motion")).total == 1
    assert (await log.query(since=start + timedelta(hours=4))).total == 3
    assert (await log.query(until=start + timedelta(hours=1))).total == 1
    first, second = await log.query(limit=4), await log.query(limit=4, offset=4)
    assert first.as_dict()["next_offset"] == 4
    assert second.as_dict()["next_offset"] is None
    assert len({e["id"] for e in first.events + second.events}) == 7
    assert (await log.get(motion.id) or {})["results"][0]["detail"] == "turned on"
    # Retention: by row count, then by age.
    for n in range(3):
        await log.add(make_event(back, "motion", "poll", when=start + timedelta(hours=8 + n)))
    assert await log.prune() == 2
    assert (await log.query()).total == 8
    clock.advance(2 * 86400 + 7.5 * 3600)  # the cut-off is now 07:30 on the first day
    assert await log.prune() == 5
    await log.close()
    await log.close()  # idempotent
    # Our own tables, beside whatever else the file holds, and the file is in WAL mode.
    reopened = EventLog(tmp_path / "sub" / "index.sqlite3", clock=clock)
    await reopened.open()
    assert (await reopened.query()).total == 3
    await reopened.close()
    with sqlite3.connect(tmp_path / "sub" / "index.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM clips").fetchone()[0] == 2


# -- UDP ---------------------------------------------------------------------------------------


def send_from(source_ip: str, port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_ip, 0))
        sock.sendto(data, ("127.0.0.1", port))


def test_seed_packets_parse() -> None:
    # The bytes exactly as SkyBell's documentation lists them.
    button = bytes.fromhex(
        "2d000000553246736447566b58313949327162665956"
        "6a457835356445304977543"
        "14d474a514f372b3130755973513d0a"
    )
    assert button == BUTTON_PACKET
    assert parse_packet(button) == "U2FsdGVkX19I2qbfYVjEx55dE0IwT1MGJQO7+10uYsQ="
    assert parse_packet(MOTION_PACKET) == "U2FsdGVkX19D5MkIkoMdNaaRL9ndCFYnMVKpi/ylBq8="
    assert parse_packet(button[:-1]) is None  # length no longer matches
    assert parse_packet(b"\x05\x00\x00\x00!!!!\n") is None  # not base64
    assert parse_packet(b"") is None


async def test_udp_packets_from_the_doorbells(make_rig: RigFactory) -> None:
    rig = await make_rig(udp_enabled=True, udp_host="127.0.0.1", udp_port=0)
    assert rig.service.udp is not None
    port = rig.service.udp.port
    send_from("127.0.0.21", port, BUTTON_PACKET)
    send_from("127.0.0.22", port, MOTION_PACKET)
    for junk in (b"", b"hello", BUTTON_PACKET[:-3], b"\xff" * 600, b"\x2d\x00\x00\x00" + b"?" * 45):
        send_from("127.0.0.21", port, junk)
    send_from("127.0.0.21", port, encode_packet("U2FsdGVkX1+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
    send_from("127.0.0.99", port, BUTTON_PACKET)  # no doorbell lives there
    events = await drain(rig.seen)
    assert [(e.type, e.device, e.source) for e in events] == [
        ("doorbell", "front-door", "udp"),
        ("motion", "back-garden", "udp"),
        ("unknown", "front-door", "udp"),
    ]
    assert events[0].payload == {"ip": "127.0.0.21"}
    assert events[2].payload["token"].startswith("U2FsdGVkX1+A")
    stats = (await (await rig.http.get("/api/events/stats")).json())["udp"]
    assert stats["junk"] == 5
    assert stats["unknown_sender"] == 1
    assert stats["events"] == 3


async def test_udp_tokens_can_be_overridden(make_rig: RigFactory) -> None:
    token = "U2FsdGVkX1+BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="
    rig = await make_rig(udp_enabled=True, udp_host="127.0.0.1", udp_port=0, udp_button_token=token)
    assert rig.service.udp is not None
    send_from("127.0.0.21", rig.service.udp.port, encode_packet(token))
    send_from("127.0.0.21", rig.service.udp.port, MOTION_PACKET)
    assert [e.type for e in await drain(rig.seen)] == ["doorbell", "motion"]


# -- activity polling --------------------------------------------------------------------------


async def test_poller_reports_each_new_press_once(
    sim: SimCloud, make_client: ClientFactory, clock: FakeClock
) -> None:
    bus = EventBus()
    seen = bus.queue("test")
    directory = DeviceDirectory(sim_devices(sim))
    poller = ActivityPoller(make_client(), directory, bus.publish, clock=clock)
    assert await poller.poll_once() == 0  # the seeded history is older than the poller
    door = sim.devices[FRONT]
    first = sim.add_activity(door, "doorbell")
    sim.add_activity(door, "lstream")  # not a press
    clock.advance(10)
    assert await poller.poll_once() == 1
    assert await poller.poll_once() == 0
    clock.advance(10)
    motion = sim.add_activity(sim.devices[BACK], "motion")
    # An activity that shows up late (after its upload) with an older time is still news.
    late = sim.add_activity(door, "doorbell", sim.now_ms() - 15_000)
    sim.activities.sort(key=lambda a: a["event_time"], reverse=True)
    assert await poller.poll_once() == 2
    events = await drain(seen, 0.1)
    assert [(e.activity_id, e.type, e.device, e.source) for e in events] == [
        (first["activity_id"], "doorbell", "front-door", "poll"),
        (late["activity_id"], "doorbell", "front-door", "poll"),
        (motion["activity_id"], "motion", "back-garden", "poll"),
    ]
    # Backfill reaches into the history on request.
    older = ActivityPoller(make_client(), directory, bus.publish, clock=clock, backfill=30 * 3600)
    # Per device, the seeded 30 h hold a doorbell and two motions; plus the three above.
    assert await older.poll_once() == 2 * 3 + 3
    await bus.close()


async def test_poller_backs_off_and_logs_once(
    sim: SimCloud, make_client: ClientFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.skybell.poller")
    delays: list[float] = []
    done = asyncio.Event()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 6:
            done.set()
        await asyncio.sleep(0)

    bus = EventBus()
    directory = DeviceDirectory(sim_devices(sim))
    poller = ActivityPoller(
        make_client(), directory, bus.publish, interval=10, max_backoff=60, clock=clock, sleep=sleep
    )
    sim.faults.server_errors = 4
    sim.add_activity(sim.devices[FRONT], "doorbell", sim.now_ms() + 1000)
    poller.start()
    await asyncio.wait_for(done.wait(), 10)
    await poller.close()
    await poller.close()
    assert delays == [20, 40, 60, 60, 10, 10]
    assert poller.published == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("back after 4" in m for m in messages) == 1
    await bus.close()


# -- HTTP: the log API and the live feed -------------------------------------------------------


async def test_events_api_filters_and_pages(make_rig: RigFactory) -> None:
    rig = await make_rig()
    for payload in SEED_PAYLOADS.values():
        assert (await rig.hook(payload)).status == 200

    async def all_logged() -> bool:
        return (await rig.logged())["total"] == len(SEED_PAYLOADS)

    await wait_until(all_logged)
    back = await rig.logged(device="back-garden")
    assert [e["type"] for e in back["events"]] == ["vready"]
    assert (await rig.logged(device=FRONT))["total"] == 6
    assert (await rig.logged(type="ota"))["events"][0]["payload"]["detail"]["version"] == "1.3.8"
    since = await rig.logged(since="2024-01-23T00:00:00Z")
    assert {e["type"] for e in since["events"]} == {
        "doorbell",
        "lstream",
        "vready",
        "devicedeleted",
    }
    assert (await rig.logged(since=1706025131324))["total"] == 3  # JS ms: the press and later
    page1 = await rig.logged(limit=3)
    page3 = await rig.logged(limit=3, offset=6)
    assert (page1["next_offset"], page3["next_offset"]) == (3, None)
    assert len(page3["events"]) == 1
    assert page1["events"][0]["type"] == "vready"  # newest first
    for bad in (
        {"type": "sneeze"},
        {"type": "doorbell,motion"},
        {"limit": "0"},
        {"limit": "x"},
        {"offset": "-1"},
        {"since": "someday"},
        {"until": "9" * 30},
    ):
        resp = await rig.http.get("/api/events", params=bad)
        assert resp.status == 400
        assert "error" in await resp.json()


async def test_sse_feed_delivers_events_and_cleans_up(make_rig: RigFactory) -> None:
    rig = await make_rig()

    def feeds() -> int:
        names = [s["name"] for s in rig.service.bus.stats()["subscribers"]]
        return sum(n.startswith("sse:") for n in names)

    resp = await rig.http.get("/api/events/stream", params={"type": "doorbell,motion"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert await resp.content.readuntil(b"\n\n") == b"retry: 3000\n: connected\n\n"
    assert feeds() == 1
    await rig.hook(SEED_PAYLOADS["ota"])  # filtered out
    await rig.hook(SEED_PAYLOADS["doorbell"])
    block = b""
    while not block.startswith(b"id:"):  # skip keep-alive comments
        block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    lines = block.decode().strip().split("\n")
    assert lines[1] == "event: doorbell"
    data = json.loads(lines[2].removeprefix("data: "))
    assert lines[0] == f"id: {data['id']}"
    assert (data["device"], data["activity_id"]) == (
        "front-door",
        SEED_PAYLOADS["doorbell"]["activity_id"],
    )
    assert data["sources"] == ["webhook"]
    resp.close()

    async def gone() -> bool:
        return feeds() == 0

    await wait_until(gone)  # noticed at the next keep-alive write


async def test_sse_feed_ends_when_the_app_stops(
    sim: SimCloud, aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    app = web.Application()
    event_routes.setup(
        app, EventOptions(poll_enabled=False), None, devices=sim_devices(sim), keepalive=30
    )
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        resp = await http.get(server.make_url("/api/events/stream"))
        await resp.content.readuntil(b"\n\n")
        await asyncio.wait_for(server.close(), 10)  # not held for aiohttp's 60 s grace
        assert await resp.content.read() in (b"", b": connected\n\n")
        resp.close()


# -- triggers ----------------------------------------------------------------------------------


async def test_triggers_add_list_remove(sim: SimCloud, make_client: ClientFactory) -> None:
    client = make_client()
    devices = sim_devices(sim)
    url = "http://127.0.0.1:1984" + WEBHOOK_PATH
    made = await add_webhook_triggers(client, devices, url, secret=Secret(SECRET))
    assert len(made) == 2
    stored = sim.triggers[made[0].id]
    assert stored["meta_config"]["header_name"] == HEADER
    assert stored["meta_config"]["header_value"] == SECRET
    assert stored["on_events"] == ["doorbell", "motion", "availability", "vready"]
    gets = await add_webhook_triggers(
        client, devices[:1], url, secret=Secret(SECRET), events=["doorbell", "motion"], method="get"
    )
    urls = sorted(sim.triggers[t.id]["meta_config"]["url"] for t in gets)
    assert urls == [
        f"{url}?event=doorbell&device_id={devices[0].id}",
        f"{url}?event=motion&device_id={devices[0].id}",
    ]
    listed = await list_triggers(client, devices)
    assert len(listed) == 4
    with pytest.raises(ValueError, match="no such trigger"):
        await remove_triggers(client, devices, trigger_ids=["nope"])
    with pytest.raises(ValueError, match="choose"):
        await remove_triggers(client, devices)
    with pytest.raises(ValueError, match="events"):
        await add_webhook_triggers(client, devices, url, secret=Secret(SECRET), events=["sneeze"])
    removed = await remove_triggers(client, devices, trigger_ids=[made[0].id])
    assert [t.id for t in removed] == [made[0].id]
    assert made[0].id not in sim.triggers
    removed = await remove_triggers(client, devices, all_webhooks=True)
    assert len(removed) == 3
    assert sim.triggers == {}
