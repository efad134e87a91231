"""Automation rules: parsing, and the engine against the simulated doorbell and SwitchBot."""

from __future__ import annotations

import asyncio
import itertools
import logging
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.automation import CallBudget, SwitchBotClient
from bridge.automation.engine import RuleEngine
from bridge.automation.rules import (
    CommandAction,
    RecordAction,
    SceneAction,
    TimeWindow,
    WarmAction,
    WebhookAction,
    parse_rules,
)
from bridge.automation.zones import PosixZone, parse_zone
from bridge.errors import ConfigError
from bridge.events import Event, EventOptions, EventService
from bridge.redact import Secret
from bridge.sim.cloud import default_devices
from bridge.sim.switchbot import DEFAULT_SECRET, DEFAULT_TOKEN, SimScene, SimSwitchBot
from bridge.sim.world import SimWorld
from bridge.skybell import Device
from bridge.skybell.payloads import make_event

from .conftest import FakeClock
from .events_util import wire_events
from .test_events import wait_until

PLUG = "6055F9A1B2C3"
PORCH_ON = "T02-202604121530-11112222"
HOOK_SECRET = "hook-secret-2b7e94"
# 2026-01-15: winter, so London is on UTC and the doorbells (EST5EDT) five hours behind.
JAN15 = datetime(2026, 1, 15, tzinfo=UTC)

EXAMPLE = """
[[rules]]
name = "porch light at night"
on = ["doorbell"]
devices = ["front-door"]
when = { after = "18:00", before = "07:00", timezone = "Europe/London" }
cooldown = 60
do = [
  { scene = "Porch light on" },
  { device = "Porch Plug", command = "turnOn", parameter = "default" },
  { record = true },
  { warm = 120 },
  { webhook = "http://127.0.0.1:8123/api/webhook/x", method = "POST" },
]

[[rules]]
on = "motion"
when = { after = 22:30:00 }
do = [{ device = "Hallway Bulb", command = "setBrightness", parameter = 40 }]
"""


def at(hours: float) -> float:
    """A wall-clock time on JAN15, ``hours`` after midnight UTC."""
    return (JAN15 + timedelta(hours=hours)).timestamp()


def sky_devices() -> list[Device]:
    """The simulated account's doorbells, as the SkyBell client would list them."""
    now_ms = int(JAN15.timestamp() * 1000)
    return [Device.from_api(d.as_api(now_ms)) for d in default_devices()]


_activity = itertools.count(1)


def press(device: Device | None, kind: str = "doorbell") -> Event:
    """A press as a source would publish it; each one is a separate activity."""
    return make_event(
        device, kind, "api", device_id="stranger", activity_id=f"act-{next(_activity)}"
    )


# -- parsing ---------------------------------------------------------------------------------------


def test_example_config_parses() -> None:
    rules = parse_rules(tomllib.loads(EXAMPLE)["rules"])
    first, second = rules
    assert first.name == "porch light at night"
    assert first.on == frozenset({"doorbell"})
    assert first.devices == ("front-door",)
    assert first.when == TimeWindow(dtime(18), dtime(7), "Europe/London")
    assert first.cooldown == 60
    assert first.actions == (
        SceneAction("Porch light on"),
        CommandAction("Porch Plug", "turnOn", "default"),
        RecordAction(),
        WarmAction(120),
        WebhookAction("http://127.0.0.1:8123/api/webhook/x", "POST"),
    )
    assert first.needs_switchbot
    # The label that reaches logs and results leaves the (secret) path out.
    assert first.actions[4].label == "webhook POST http://127.0.0.1:8123"
    assert second.name == "rule 2"
    assert second.on == frozenset({"motion"})
    assert second.devices == ()
    assert second.when == TimeWindow(dtime(22, 30), None, None)
    assert second.actions == (CommandAction("Hallway Bulb", "setBrightness", 40),)
    assert parse_rules(None) == parse_rules([]) == []


def ok_rule(**changes: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "r", "on": ["doorbell"], "do": [{"scene": "Porch light on"}]}
    rule.update(changes)
    return rule


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"name": "rules"}, "rules"),
        (["doorbell"], "rules[0]"),
        ([ok_rule(colour="red")], "rules[0].colour"),
        ([{"do": [{"record": True}]}], "rules[0].on"),
        ([ok_rule(on=[])], "rules[0].on"),
        ([ok_rule(on=["doorbell", "knock"])], "rules[0].on[1]"),
        ([ok_rule(on=5)], "rules[0].on"),
        ([ok_rule(name="")], "rules[0].name"),
        ([ok_rule(devices=["front-door", 3])], "rules[0].devices[1]"),
        ([ok_rule(cooldown=-1)], "rules[0].cooldown"),
        ([ok_rule(cooldown=True)], "rules[0].cooldown"),
        ([ok_rule(enabled="yes")], "rules[0].enabled"),
        ([ok_rule(do=[])], "rules[0].do"),
        ([ok_rule(do={"scene": "x"})], "rules[0].do"),
        ([ok_rule(do=[{"record": True}, "scene"])], "rules[0].do[1]"),
        ([ok_rule(do=[{"record": True}, {"scene": ""}])], "rules[0].do[1].scene"),
        ([ok_rule(do=[{"scene": "a", "record": True}])], "rules[0].do[0]"),
        ([ok_rule(do=[{"colour": "red"}])], "rules[0].do[0]"),
        ([ok_rule(do=[{"scene": "a", "delay": 2}])], "rules[0].do[0].delay"),
        ([ok_rule(do=[{"device": "Porch Plug"}])], "rules[0].do[0].command"),
        (
            [ok_rule(do=[{"device": "P", "command": "on", "parameter": True}])],
            "rules[0].do[0].parameter",
        ),
        (
            [ok_rule(do=[{"device": "P", "command": "x", "command_type": "ir"}])],
            "rules[0].do[0].command_type",
        ),
        ([ok_rule(do=[{"record": False}])], "rules[0].do[0].record"),
        ([ok_rule(do=[{"warm": 0}])], "rules[0].do[0].warm"),
        ([ok_rule(do=[{"warm": "120"}])], "rules[0].do[0].warm"),
        ([ok_rule(do=[{"warm": 86400}])], "rules[0].do[0].warm"),
        ([ok_rule(do=[{"webhook": "ftp://127.0.0.1/secret-path"}])], "rules[0].do[0].webhook"),
        ([ok_rule(do=[{"webhook": "http:///secret-path"}])], "rules[0].do[0].webhook"),
        ([ok_rule(do=[{"webhook": "http://h/x", "method": "PUT"}])], "rules[0].do[0].method"),
        ([ok_rule(do=[{"webhook": "http://h/x", "headers": {"A": 1}}])], "rules[0].do[0].headers"),
        ([ok_rule(when={})], "rules[0].when"),
        ([ok_rule(when="night")], "rules[0].when"),
        ([ok_rule(when={"after": "25:00"})], "rules[0].when.after"),
        ([ok_rule(when={"after": "7pm"})], "rules[0].when.after"),
        ([ok_rule(when={"before": "07:5"})], "rules[0].when.before"),
        ([ok_rule(when={"after": "07:00", "before": "07:00"})], "rules[0].when.before"),
        ([ok_rule(when={"after": "07:00", "days": "mon"})], "rules[0].when.days"),
        ([ok_rule(when={"after": "07:00", "timezone": "Europe/Lundon"})], "rules[0].when.timezone"),
        ([ok_rule(), ok_rule()], "rules[1].name"),
    ],
)
def test_bad_rules_name_the_key(raw: Any, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules(raw)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert "\n" not in str(caught.value)
    assert "secret-path" not in str(caught.value)


def test_window_contains() -> None:
    day = TimeWindow(dtime(9), dtime(17))
    assert [day.contains(dtime(h)) for h in (8, 9, 16, 17)] == [False, True, True, False]
    night = TimeWindow(dtime(18), dtime(7))  # crosses midnight
    assert [night.contains(dtime(h)) for h in (17, 18, 23, 0, 6, 7, 12)] == [
        False, True, True, True, True, False, False,
    ]  # fmt: skip
    assert TimeWindow(after=dtime(22)).contains(dtime(23, 59))
    assert not TimeWindow(after=dtime(22)).contains(dtime(0, 30))
    assert TimeWindow(before=dtime(6)).contains(dtime(0, 30))
    assert not TimeWindow(before=dtime(6)).contains(dtime(6))


@pytest.mark.parametrize(
    ("posix", "iana"),
    [
        ("EST5EDT,M3.2.0,M11.1.0", "America/New_York"),  # SkyBell's default
        ("GMT0BST,M3.5.0/1,M10.5.0", "Europe/London"),
        ("AEST-10AEDT,M10.1.0,M4.1.0/3", "Australia/Sydney"),  # summer spans New Year
        ("<+0530>-5:30", "Asia/Kolkata"),
    ],
)
def test_posix_zone_matches_tz_database(posix: str, iana: str) -> None:
    zone, reference = parse_zone(posix), ZoneInfo(iana)
    assert isinstance(zone, PosixZone)
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    while moment.year < 2027:  # every half hour through two years, transitions included
        assert moment.astimezone(zone).replace(tzinfo=None) == moment.astimezone(reference).replace(
            tzinfo=None
        ), moment
        moment += timedelta(minutes=30)
    assert parse_zone("Europe/London") == ZoneInfo("Europe/London")
    with pytest.raises(ValueError, match="POSIX"):
        parse_zone("Mars/Olympus_Mons")


# -- the engine against the simulated SwitchBot ----------------------------------------------------


@dataclass
class Rig:
    service: EventService
    engine: RuleEngine
    bot: SimSwitchBot
    switchbot: SwitchBotClient | None
    doorbells: dict[str, Device]

    async def fire(self, event: Event) -> None:
        """Publish and wait until the engine has decided and every started action ended."""
        self.service.publish(event)

        async def taken() -> bool:
            subs = self.service.bus.stats()["subscribers"]
            return all(s["queued"] == 0 for s in subs if s["name"] == "rules")

        # The engine's bus callback never awaits, so an empty queue means it has run.
        await wait_until(taken)
        await self.engine.wait_idle()

    async def results(self, event: Event) -> list[dict[str, Any]]:
        """The event's action results, once the event log has its row."""
        assert self.service.log is not None
        log = self.service.log

        async def logged() -> bool:
            return await log.get(event.id) is not None

        await wait_until(logged)
        row = await log.get(event.id)
        assert row is not None
        results: list[dict[str, Any]] = row["results"]
        return results


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(
    tmp_path: Path,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    session: aiohttp.ClientSession,
) -> AsyncIterator[MakeRig]:
    made: list[Rig] = []

    async def factory(
        rules: list[dict[str, Any]],
        *,
        switchbot: bool = True,
        budget: CallBudget | None = None,
        **engine_kw: Any,
    ) -> Rig:
        bot = SimSwitchBot()
        server = await aiohttp_server(bot.app())
        client = None
        if switchbot:
            client = SwitchBotClient(
                session,
                token=Secret(DEFAULT_TOKEN),
                secret=Secret(DEFAULT_SECRET),
                base_url=str(server.make_url("/")),
                budget=budget,
                backoff=0.01,
                backoff_cap=0.05,
            )
        devices = sky_devices()
        options = EventOptions(poll_enabled=False, dedup_window=0.2)
        service = EventService(None, devices, options, log_path=tmp_path / f"{len(made)}.sqlite3")
        await service.start()
        engine_kw.setdefault("record", None)
        engine_kw.setdefault("warm", None)
        engine = RuleEngine(
            parse_rules(rules),
            switchbot=client,
            http=session,
            log=service.log,
            devices=service.directory,
            **engine_kw,
        )
        await engine.start()
        engine.attach(service.bus)
        rig = Rig(service, engine, bot, client, {d.slug: d for d in devices})
        made.append(rig)
        return rig

    yield factory
    for rig in made:
        await rig.engine.close()
        await rig.engine.close()  # twice is fine
        await rig.service.close()


async def test_window_with_injected_clock(make_rig: MakeRig) -> None:
    clock = FakeClock(at(12))
    rig = await make_rig(
        [
            {
                "name": "night, London",
                "on": "doorbell",
                "when": {"after": "18:00", "before": "07:00", "timezone": "Europe/London"},
                "do": [{"scene": "Porch light on"}],
            },
            {
                # No zone: the doorbell's own (SkyBell's POSIX string, US Eastern here).
                "name": "evening at the door",
                "on": "doorbell",
                "when": {"after": "18:00", "before": "23:00"},
                "do": [{"scene": "All off"}],
            },
        ],
        clock=clock,
    )
    front = rig.doorbells["front-door"]
    for hour, expected in [
        (12, []),  # noon in London, 07:00 at the door
        (20, ["Porch light on"]),  # 20:00 London, 15:00 at the door
        (3, ["All off", "Porch light on"]),  # past midnight in London, 22:00 at the door
        (23.5, ["All off", "Porch light on"]),  # 23:30 London, 18:30 at the door
        (7, []),  # 07:00 London: the window has closed; 02:00 at the door
    ]:
        clock.now = at(hour)
        before = len(rig.bot.executed)
        await rig.fire(press(front))
        assert sorted(e.name for e in rig.bot.executed[before:]) == expected, hour
    stats = {r["name"]: r for r in rig.engine.stats()["rules"]}
    assert stats["night, London"]["fired"] == 3
    assert stats["night, London"]["skipped"] == {"window": 2, "cooldown": 0}
    assert stats["evening at the door"]["fired"] == 2
    assert stats["evening at the door"]["last_fired"] == "2026-01-15T23:30:00Z"


async def test_cooldown_per_doorbell(make_rig: MakeRig) -> None:
    clock = FakeClock(at(12))
    rule = {"name": "ring", "on": ["doorbell"], "cooldown": 60, "do": [{"scene": PORCH_ON}]}
    rig = await make_rig([rule], clock=clock)
    front, back = rig.doorbells["front-door"], rig.doorbells["back-garden"]
    await rig.fire(press(front))
    assert len(rig.bot.executed) == 1
    clock.advance(30)
    await rig.fire(press(front))  # within the cooldown: nothing
    await rig.fire(press(back))  # another doorbell has its own cooldown
    assert len(rig.bot.executed) == 2
    clock.advance(31)
    await rig.fire(press(front))
    assert len(rig.bot.executed) == 3
    (stats,) = rig.engine.stats()["rules"]
    assert (stats["fired"], stats["skipped"]["cooldown"]) == (3, 1)


async def test_only_matching_events_and_doorbells(make_rig: MakeRig) -> None:
    rig = await make_rig(
        [{"name": "front", "on": ["doorbell"], "devices": ["Front Door"], "do": [{"scene": "All off"}]},
         {"name": "any", "on": ["motion"], "do": [{"scene": "All off"}]}]
    )  # fmt: skip
    await rig.fire(press(rig.doorbells["back-garden"]))  # the wrong doorbell
    await rig.fire(press(rig.doorbells["front-door"], "motion"))
    await rig.fire(press(None, "motion"))  # not on the account: "all doorbells" excludes it
    await rig.fire(press(rig.doorbells["front-door"], "lstream"))
    assert [r["fired"] for r in rig.engine.stats()["rules"]] == [0, 1]


async def test_offline_device_reported_and_not_retried_forever(make_rig: MakeRig) -> None:
    rig = await make_rig(
        [{"name": "porch", "on": ["doorbell"], "do": [
            {"device": "Porch Plug", "command": "turnOn"},
            {"scene": "Porch light on"},
        ]}],
        offline_retries=1,
        retry_delay=0.05,
    )  # fmt: skip
    rig.bot.faults.offline = {PLUG}
    event = press(rig.doorbells["front-door"])
    await rig.fire(event)
    assert [(e.kind, e.name) for e in rig.bot.executed] == [("scene", "Porch light on")]
    assert rig.bot.calls_to(f"/devices/{PLUG}/commands") == 2  # one try and one late retry
    results = {r["action"]: r for r in await rig.results(event)}
    assert results["porch: Porch Plug turnOn"]["ok"] is False
    assert results["porch: Porch Plug turnOn"]["detail"] == (
        "SwitchBot 161: device offline (2 attempts)"
    )
    assert results["porch: scene Porch light on"] == {
        **results["porch: scene Porch light on"],
        "ok": True,
        "detail": "scene Porch light on executed",
    }
    await asyncio.sleep(0.3)  # nothing keeps retrying in the background
    assert rig.bot.calls_to(f"/devices/{PLUG}/commands") == 2
    rig.bot.faults.offline = set()
    await rig.fire(press(rig.doorbells["front-door"]))
    assert rig.bot.devices[PLUG].state["power"] == "on"
    assert rig.bot.calls_to(f"/devices/{PLUG}/commands") == 3


async def test_budget_exhausted_reported_without_a_call(make_rig: MakeRig) -> None:
    budget = CallBudget(limit=1)  # spent by the scene listing at start
    rig = await make_rig(
        [{"name": "b", "on": "doorbell", "do": [{"scene": "All off"}]}], budget=budget
    )
    event = press(rig.doorbells["front-door"])
    await rig.fire(event)
    (result,) = await rig.results(event)
    assert result["ok"] is False
    assert "budget used up" in result["detail"]
    assert rig.bot.calls_to("/execute") == 0
    assert rig.engine.stats()["switchbot"]["remaining"] == 0


async def test_switchbot_not_configured(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bridge.automation")
    rules = [{"name": "lights", "on": "doorbell", "do": [{"scene": "All off"}, {"record": True}]}]
    rig = await make_rig(rules, switchbot=False)
    assert "rule 'lights' uses SwitchBot, which is not configured" in caplog.text
    assert "rule 'lights' records, but recording is not available" in caplog.text
    event = press(rig.doorbells["front-door"])
    await rig.fire(event)
    details = sorted((r["action"], r["ok"], r["detail"]) for r in await rig.results(event))
    assert details == [
        ("lights: record", False, "recording is not available"),
        ("lights: scene All off", False, "SwitchBot is not configured"),
    ]
    assert rig.engine.stats()["switchbot"] is None


async def test_unknown_scene_warned_then_found_on_refresh(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bridge.automation")
    rules = [{"name": "garage", "on": "doorbell", "do": [{"scene": "Garage lights"}]},
             {"name": "front", "on": "doorbell", "devices": ["front-dor"], "do": [{"scene": "All off"}]}]  # fmt: skip
    rig = await make_rig(rules, refresh_interval=0)
    assert "rule 'garage': no SwitchBot scene 'Garage lights' on the account" in caplog.text
    assert "rule 'front' names doorbell 'front-dor', which is not on the account" in caplog.text
    event = press(rig.doorbells["front-door"])
    await rig.fire(event)
    (result,) = await rig.results(event)
    assert result["detail"] == "no SwitchBot scene named 'Garage lights' on the account"
    # Made in the app afterwards: the next miss lists the scenes again and finds it.
    rig.bot.scenes["T02-garage"] = SimScene("T02-garage", "Garage lights")
    await rig.fire(press(rig.doorbells["front-door"]))
    assert [e.target_id for e in rig.bot.executed] == ["T02-garage"]
    listed = rig.bot.calls_to("/scenes")
    await rig.fire(press(rig.doorbells["front-door"]))  # now cached: no listing
    assert rig.bot.calls_to("/scenes") == listed


async def test_record_warm_and_webhook_actions(
    make_rig: MakeRig, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    got: list[tuple[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        if request.method == "POST":
            got.append(("POST", await request.json()))
        else:
            got.append(("GET", dict(request.query)))
        got.append(("auth", request.headers.get("Authorization")))
        return web.Response(status=int(request.match_info["status"]))

    app = web.Application()
    app.router.add_route("*", "/api/webhook/{status}", hook)
    server = await aiohttp_server(app)
    recorded: list[Event] = []
    warmed: list[tuple[str, float]] = []

    async def record(event: Event) -> str:
        recorded.append(event)
        return "clip 7 started"

    async def warm(event: Event, seconds: float) -> str:
        warmed.append((event.device, seconds))
        return f"{event.device} kept warm {seconds:g} s"

    url = str(server.make_url("/api/webhook"))
    rig = await make_rig(
        [{"name": "all", "on": "doorbell", "do": [
            {"record": True},
            {"warm": 90},
            {"webhook": f"{url}/200", "headers": {"Authorization": "Bearer ha-token-91c"}},
            {"webhook": f"{url}/204", "method": "get"},
            {"webhook": f"{url}/500"},
        ]}],
        record=record,
        warm=warm,
    )  # fmt: skip
    event = press(rig.doorbells["front-door"])
    await rig.fire(event)
    assert recorded == [event]
    assert warmed == [("front-door", 90.0)]
    posts = [body for method, body in got if method == "POST"]
    assert len(posts) == 2
    assert posts[0]["id"] == event.id
    assert (posts[0]["type"], posts[0]["device"], posts[0]["rule"]) == (
        "doorbell",
        "front-door",
        "all",
    )
    assert posts[0]["device_id"] == event.device_id
    (query,) = [body for method, body in got if method == "GET"]
    assert (query["event"], query["device"], query["id"]) == ("doorbell", "front-door", event.id)
    assert ("auth", "Bearer ha-token-91c") in got
    host = f"http://{server.host}:{server.port}"
    results = sorted((r["action"], r["ok"], r["detail"]) for r in await rig.results(event))
    assert results == sorted([
        ("all: record", True, "clip 7 started"),
        ("all: warm 90 s", True, "front-door kept warm 90 s"),
        (f"all: webhook POST {host}", True, "HTTP 200"),
        (f"all: webhook GET {host}", True, "HTTP 204"),
        (f"all: webhook POST {host}", False, "HTTP 500"),
    ])  # fmt: skip


async def test_slow_or_broken_action_does_not_hold_others(
    make_rig: MakeRig, session: aiohttp.ClientSession
) -> None:
    started = asyncio.Event()

    async def stuck(event: Event, seconds: float) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async def broken(event: Event) -> str:
        raise RuntimeError("recorder bug")

    rig = await make_rig(
        [
            {
                "name": "mixed",
                "on": "doorbell",
                "do": [{"scene": "All off"}, {"record": True}, {"warm": 5}],
            }
        ],
        record=broken,
        warm=stuck,
        action_timeout=0.3,
    )
    rig.bot.faults.delay = 1.0  # the scene request outlives the action timeout
    event = press(rig.doorbells["front-door"])
    await rig.fire(event)
    results = {r["action"]: (r["ok"], r["detail"]) for r in await rig.results(event)}
    assert results == {
        "mixed: scene All off": (False, "no result within 0.3 s"),
        "mixed: record": (False, "RuntimeError: recorder bug"),
        "mixed: warm 5 s": (False, "no result within 0.3 s"),
    }
    # close() cancels what is still running after its grace period.
    rig.bot.faults.delay = 0.0
    started.clear()
    rules = parse_rules([{"on": "doorbell", "do": [{"warm": 5}]}])
    engine = RuleEngine(rules, switchbot=None, record=None, warm=stuck, http=session, log=None)
    await engine.handle(press(rig.doorbells["front-door"]))
    await started.wait()
    assert engine.stats()["running"] == 1
    await engine.close(grace=0.05)
    assert engine.stats()["running"] == 0
    await engine.handle(press(rig.doorbells["front-door"]))  # closed: ignored
    assert engine.stats()["running"] == 0


# -- end to end: a simulated press by webhook, UDP and polling ---------------------------------------


@pytest.fixture
async def world_rig(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    session: aiohttp.ClientSession,
) -> AsyncIterator[tuple[SimWorld, EventService, RuleEngine, SimSwitchBot, TestClient]]:
    world = SimWorld()
    await world.start()
    bot = SimSwitchBot()
    bot_server = await aiohttp_server(bot.app())
    service, bridge = await wire_events(
        world, session, tmp_path / "index.sqlite3", aiohttp_client, HOOK_SECRET
    )
    switchbot = SwitchBotClient(
        session,
        token=Secret(DEFAULT_TOKEN),
        secret=Secret(DEFAULT_SECRET),
        base_url=str(bot_server.make_url("/")),
    )
    rules = parse_rules(
        [{"name": "porch", "on": ["doorbell"], "devices": ["front-door"],
          "do": [{"scene": "Porch light on"}]}]
    )  # fmt: skip
    engine = RuleEngine(
        rules, switchbot=switchbot, record=None, warm=None, http=session, log=service.log
    )
    await engine.start()
    engine.attach(service.bus)
    yield world, service, engine, bot, bridge
    await engine.close()
    await bridge.close()
    await world.close()


async def test_press_by_three_paths_runs_the_scene_once(
    world_rig: tuple[SimWorld, EventService, RuleEngine, SimSwitchBot, TestClient],
) -> None:
    world, service, engine, bot, bridge = world_rig
    record = await world.press("Front Door")
    assert record.udp_error is None
    assert [w["status"] for w in record.webhooks] == [200]
    (ran,) = await bot.wait_executed(1, timeout=10)
    assert ran.name == "Porch light on"
    assert ran.received_at > record.monotonic

    async def three_sources() -> bool:
        recent = service.bus.recent()
        return bool(recent) and len(recent[0].sources) == 3

    await wait_until(three_sources, 10)
    await asyncio.sleep(3 * service.options.poll_interval)  # longer than a poll, for stragglers
    await engine.wait_idle()
    assert len(bot.executed) == 1
    assert bot.calls_to("/execute") == 1

    async def result_logged() -> bool:
        rows = (await (await bridge.get("/api/events")).json())["events"]
        return bool(rows) and bool(rows[0]["results"])

    await wait_until(result_logged)
    (row,) = (await (await bridge.get("/api/events")).json())["events"]
    assert row["results"] == [
        {**row["results"][0], "action": "porch: scene Porch light on", "ok": True,
         "detail": "scene Porch light on executed"}
    ]  # fmt: skip
    # Motion at the front door and a press at the back match no rule.
    await world.press("Back Garden")
    await world.press("Front Door", "motion")
    await asyncio.sleep(3 * service.options.poll_interval)
    await engine.wait_idle()
    assert len(bot.executed) == 1
