"""The SwitchBot client against the simulated SwitchBot service on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bridge.automation import (
    BudgetExhausted,
    CallBudget,
    CommandNotSupported,
    DeviceNotFound,
    DeviceOffline,
    DeviceTypeError,
    HubOffline,
    SwitchBotAuthError,
    SwitchBotClient,
    SwitchBotError,
    SwitchBotSystemError,
    SwitchBotUnavailable,
    find_scene,
    find_switchbot_device,
    sign,
    signed_headers,
)
from bridge.redact import Secret
from bridge.sim.switchbot import DEFAULT_SECRET, DEFAULT_TOKEN, SimSwitchBot

from .conftest import FakeClock

BOT = "F1D2C3B4A596"
PLUG = "6055F9A1B2C3"
BULB = "84F70312AB6C"
HUB = "E4B0C1D2A3F4"
IR_LIGHT = "02-202604121530-48813025"
PORCH_ON = "T02-202604121530-11112222"

MakeSwitchBot = Callable[..., SwitchBotClient]


@pytest.fixture
def bot_sim(clock: FakeClock) -> SimSwitchBot:
    return SimSwitchBot(clock=clock)


@pytest.fixture
async def bot_server(
    bot_sim: SimSwitchBot, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    return await aiohttp_server(bot_sim.app())


@pytest.fixture
def make_switchbot(
    bot_server: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> MakeSwitchBot:
    def factory(**kwargs: Any) -> SwitchBotClient:
        kwargs.setdefault("base_url", str(bot_server.make_url("/")))
        kwargs.setdefault("token", Secret(DEFAULT_TOKEN))
        kwargs.setdefault("secret", Secret(DEFAULT_SECRET))
        kwargs.setdefault("clock", clock)
        # Tiny backoff: tests check how many tries happen, not how long they wait.
        kwargs.setdefault("backoff", 0.01)
        kwargs.setdefault("backoff_cap", 0.05)
        return SwitchBotClient(session, **kwargs)

    return factory


@pytest.fixture
def switchbot(make_switchbot: MakeSwitchBot) -> SwitchBotClient:
    return make_switchbot()


# -- signature -------------------------------------------------------------------------------


def test_signature_with_fixed_inputs() -> None:
    token = "e4b69b773e0c8ffb0123456789abcdef" * 3
    secret = "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6"
    t, nonce = 1661927531000, "4fa5c1e2-6b7d-4e8f-9a0b-1c2d3e4f5a6b"
    # The seed's Python 3 sample, step by step: HMAC-SHA256 keyed with the secret over
    # token + t + nonce, then base64 (the hard-coded value was cross-checked with openssl).
    digest = hmac.new(bytes(secret, "utf-8"), bytes(f"{token}{t}{nonce}", "utf-8"), hashlib.sha256)
    expected = str(base64.b64encode(digest.digest()), "utf-8")
    assert sign(token, secret, t, nonce) == expected
    assert sign(token, secret, t, nonce) == "pGc5uNnQok/WpBnJbpvCslB/ta2Z9vVEKAG532VfRcY="
    headers = signed_headers(token, secret, t, nonce)
    assert headers == {
        "Authorization": token,
        "sign": expected,
        "t": "1661927531000",
        "nonce": nonce,
        "Content-Type": "application/json; charset=utf8",
    }


async def test_replayed_request_refused(
    bot_server: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    headers = signed_headers(DEFAULT_TOKEN, DEFAULT_SECRET, int(clock() * 1000), "nonce-1")
    url = bot_server.make_url("/v1.1/scenes")
    async with session.get(url, headers=headers) as first:
        assert first.status == 200
    async with session.get(url, headers=headers) as again:
        assert again.status == 401
        assert await again.json() == {"message": "Unauthorized"}


# -- reading ---------------------------------------------------------------------------------


async def test_devices_physical_and_infrared(switchbot: SwitchBotClient) -> None:
    devices = await switchbot.devices()
    by_id = {d.id: d for d in devices}
    assert by_id[BOT].name == "Porch Light Bot"
    assert by_id[BOT].type == "Bot"
    assert by_id[BOT].hub_id == HUB
    assert by_id[HUB].hub_id is None
    assert not by_id[PLUG].remote
    assert by_id[IR_LIGHT].remote
    assert by_id[IR_LIGHT].type == "Light"
    found = find_switchbot_device(devices, "porch light bot")
    assert found is not None
    assert found.id == BOT
    assert find_switchbot_device(devices, "nothing") is None


async def test_scenes(switchbot: SwitchBotClient) -> None:
    scenes = await switchbot.scenes()
    assert [s.name for s in scenes] == ["Porch light on", "All off"]
    found = find_scene(scenes, PORCH_ON)
    assert found is not None
    assert found.name == "Porch light on"


async def test_status(switchbot: SwitchBotClient) -> None:
    status = await switchbot.status(BOT)
    assert status.device_id == BOT
    assert status.device_type == "Bot"
    assert status.hub_id == HUB
    assert status.power == "off"
    assert status.battery == 92
    with pytest.raises(DeviceTypeError) as info:
        await switchbot.status(IR_LIGHT)
    assert info.value.status_code == 151


# -- acting ----------------------------------------------------------------------------------


async def test_execute_scene_recorded(bot_sim: SimSwitchBot, switchbot: SwitchBotClient) -> None:
    before = time.monotonic()
    await switchbot.execute_scene(PORCH_ON)
    (ran,) = await bot_sim.wait_executed(1)
    assert (ran.kind, ran.target_id, ran.name) == ("scene", PORCH_ON, "Porch light on")
    assert before <= ran.received_at <= time.monotonic()
    assert (await switchbot.status(BOT)).power == "on"  # the scene drove the Bot


async def test_command_with_parameter(bot_sim: SimSwitchBot, switchbot: SwitchBotClient) -> None:
    await switchbot.command(BULB, "setBrightness", 40)
    await switchbot.command(BULB, "setColor", "255:120:0")
    first, second = await bot_sim.wait_executed(2)
    assert (first.command, first.parameter, first.command_type) == ("setBrightness", 40, "command")
    assert second.parameter == "255:120:0"
    status = await switchbot.status(BULB)
    assert status.values["brightness"] == 40
    assert status.values["color"] == "255:120:0"
    await switchbot.command(PLUG, "turnOn")
    assert (await switchbot.status(PLUG)).power == "on"


async def test_command_errors_are_typed(bot_sim: SimSwitchBot, switchbot: SwitchBotClient) -> None:
    with pytest.raises(DeviceNotFound, match="152"):
        await switchbot.command("000000000BAD", "turnOn")
    with pytest.raises(CommandNotSupported, match="160"):
        await switchbot.command(BOT, "setBrightness", 10)
    with pytest.raises(CommandNotSupported):
        await switchbot.command(IR_LIGHT, "Fancy Button", command_type="customize")
    with pytest.raises(SwitchBotSystemError, match="190"):
        await switchbot.command(BULB, "setBrightness", 0)
    assert bot_sim.calls_to(f"/{BULB}/commands") == 1  # 190 is not retried
    assert bot_sim.executed == []


async def test_device_offline_reported_once(
    bot_sim: SimSwitchBot, switchbot: SwitchBotClient
) -> None:
    bot_sim.faults.offline.add(BOT)
    with pytest.raises(DeviceOffline) as info:
        await switchbot.command(BOT, "turnOn")
    assert info.value.status_code == 161
    assert not info.value.transient
    assert bot_sim.calls_to(f"/{BOT}/commands") == 1


async def test_hub_offline_only_hits_its_devices(
    bot_sim: SimSwitchBot, switchbot: SwitchBotClient
) -> None:
    bot_sim.faults.hubs_offline.add(HUB)
    with pytest.raises(HubOffline, match="171"):
        await switchbot.command(BOT, "turnOn")
    with pytest.raises(HubOffline):
        await switchbot.command(IR_LIGHT, "turnOn")
    await switchbot.command(PLUG, "turnOn")  # on Wi-Fi, no hub in the way
    assert bot_sim.calls_to("/commands") == 3


# -- auth ------------------------------------------------------------------------------------


async def test_bad_secret_is_auth_error_without_retry(
    bot_sim: SimSwitchBot, make_switchbot: MakeSwitchBot
) -> None:
    client = make_switchbot(secret=Secret("not-the-right-secret"))
    with pytest.raises(SwitchBotAuthError) as info:
        await client.scenes()
    assert info.value.http_status == 401
    assert not info.value.transient
    assert bot_sim.calls_to("/scenes") == 1


async def test_clock_skew_refused(
    bot_sim: SimSwitchBot, make_switchbot: MakeSwitchBot, clock: FakeClock
) -> None:
    client = make_switchbot(clock=lambda: clock() + 600)  # ten minutes fast
    with pytest.raises(SwitchBotAuthError, match="clock"):
        await client.devices()


async def test_account_daily_limit_is_401(
    bot_sim: SimSwitchBot, switchbot: SwitchBotClient
) -> None:
    bot_sim.faults.daily_limit = 2
    await switchbot.scenes()
    await switchbot.scenes()
    with pytest.raises(SwitchBotAuthError, match="10,000 calls"):
        await switchbot.scenes()


# -- transient failures ----------------------------------------------------------------------


async def test_server_error_burst_retried(
    bot_sim: SimSwitchBot, switchbot: SwitchBotClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.automation")
    bot_sim.faults.server_errors = 2
    await switchbot.execute_scene(PORCH_ON)
    assert bot_sim.calls_to("/execute") == 3
    assert len(bot_sim.executed) == 1
    assert switchbot.usage().used == 3  # every try spends budget
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum(" back after " in m for m in messages) == 1


async def test_server_error_gives_up_after_attempts(
    bot_sim: SimSwitchBot, make_switchbot: MakeSwitchBot
) -> None:
    bot_sim.faults.server_errors = 10
    client = make_switchbot(attempts=3)
    with pytest.raises(SwitchBotUnavailable, match="HTTP 500") as info:
        await client.scenes()
    assert info.value.transient
    assert bot_sim.calls_to("/scenes") == 3


async def test_rate_limit_retried(bot_sim: SimSwitchBot, switchbot: SwitchBotClient) -> None:
    bot_sim.faults.rate_limited = 1
    assert len(await switchbot.scenes()) == 2
    assert bot_sim.calls_to("/scenes") == 2


async def test_timeout_and_refused_connection_are_transient(
    bot_sim: SimSwitchBot, make_switchbot: MakeSwitchBot
) -> None:
    bot_sim.faults.delay = 0.5
    with pytest.raises(SwitchBotUnavailable, match="in time"):
        await make_switchbot(timeout=0.1, attempts=1).scenes()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = make_switchbot(base_url=f"http://127.0.0.1:{port}", attempts=2)
    with pytest.raises(SwitchBotUnavailable, match="cannot reach"):
        await closed.scenes()
    assert closed.usage().used == 2


# -- budget ----------------------------------------------------------------------------------


async def test_budget_warns_then_refuses_without_calling(
    bot_sim: SimSwitchBot,
    make_switchbot: MakeSwitchBot,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.automation")
    path = tmp_path / "state" / "switchbot-budget.json"
    client = make_switchbot(budget=CallBudget(5, path=path, clock=clock))
    for _ in range(3):
        await client.scenes()
    assert not caplog.records
    await client.scenes()  # 4 of 5 is 80 %
    await client.scenes()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "4 of 5" in warnings[0].getMessage()
    with pytest.raises(BudgetExhausted, match="5/5"):
        await client.scenes()
    assert bot_sim.calls_to("/scenes") == 5  # the refused call never left the bridge

    # A restart keeps the count: the file says five calls today.
    restarted = make_switchbot(budget=CallBudget(5, path=path, clock=clock))
    usage = restarted.usage()
    assert (usage.used, usage.limit, usage.remaining) == (5, 5, 0)
    assert usage.resets_at == datetime(2026, 5, 29, tzinfo=UTC)
    assert usage.as_dict()["resets_at"] == "2026-05-29T00:00:00+00:00"
    with pytest.raises(BudgetExhausted):
        await restarted.execute_scene(PORCH_ON)

    clock.now = usage.resets_at.timestamp() + 1  # just past UTC midnight
    await restarted.execute_scene(PORCH_ON)
    assert restarted.usage().used == 1
    assert bot_sim.calls_to("/execute") == 1


def test_unreadable_budget_file_starts_from_zero(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "budget.json"
    path.write_text("{not json")
    budget = CallBudget(10, path=path, clock=clock)
    assert budget.usage().used == 0
    budget.take()
    assert budget.usage().used == 1


# -- secrets ---------------------------------------------------------------------------------


async def test_token_and_secret_never_logged(
    bot_sim: SimSwitchBot,
    make_switchbot: MakeSwitchBot,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_switchbot(budget=CallBudget(7, clock=clock))
    errors: list[SwitchBotError] = []
    await client.devices()
    await client.command(BULB, "setBrightness", 50)
    bot_sim.faults.server_errors = 1
    await client.execute_scene(PORCH_ON)
    bot_sim.faults.offline.add(BOT)
    for call in (
        client.command(BOT, "turnOn"),
        make_switchbot(secret=Secret("wrong-secret-value")).scenes(),
        client.scenes(),
        client.scenes(),
        client.scenes(),
    ):
        try:
            await call
        except SwitchBotError as err:
            errors.append(err)
    assert {type(e) for e in errors} == {DeviceOffline, SwitchBotAuthError, BudgetExhausted}
    assert caplog.records
    text = caplog.text + "".join(str(e) for e in errors) + repr(client.__dict__)
    assert DEFAULT_TOKEN not in text
    assert DEFAULT_SECRET not in text
    assert "wrong-secret-value" not in text


# -- webhooks --------------------------------------------------------------------------------


async def test_webhook_round_trip(bot_sim: SimSwitchBot, switchbot: SwitchBotClient) -> None:
    url = "http://127.0.0.1:8123/api/switchbot/events"
    await switchbot.setup_webhook(url)
    assert await switchbot.webhook_urls() == [url]
    (hook,) = await switchbot.webhook_details([url])
    assert (hook.url, hook.device_list, hook.enabled) == (url, "ALL", True)
    assert hook.created_at is not None
    await switchbot.update_webhook(url, enable=False)
    (hook,) = await switchbot.webhook_details([url])
    assert not hook.enabled
    await switchbot.delete_webhook(url)
    assert await switchbot.webhook_urls() == []
    with pytest.raises(SwitchBotSystemError):
        await switchbot.delete_webhook(url)
    assert bot_sim.webhooks == {}


async def test_sim_control_over_http(
    bot_server: TestServer, session: aiohttp.ClientSession, switchbot: SwitchBotClient
) -> None:
    async with session.post(bot_server.make_url("/_sim/faults"), json={"offline": [BOT]}) as resp:
        assert (await resp.json())["offline"] == [BOT]
    with pytest.raises(DeviceOffline):
        await switchbot.command(BOT, "turnOn")
    await switchbot.command(PLUG, "toggle")
    async with session.get(bot_server.make_url("/_sim/executed")) as resp:
        (ran,) = await resp.json()
    assert (ran["target_id"], ran["command"]) == (PLUG, "toggle")
