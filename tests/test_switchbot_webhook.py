"""SwitchBot events into the bridge: the webhook registered with the CLI against the simulated
SwitchBot, the simulator's sensors posting to it (``sim switchbot EVENT``), the events in the log
and the live feed, and rules they fire (a motion sensor warms the doorbell's stream before the
press, an unlock ends a clip). Wrong tokens and malformed bodies are refused without harm."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.automation.switchbot_events import (
    SWITCHBOT_EVENT_TYPES,
    WEBHOOK_PREFIX,
    parse_switchbot_event,
)
from bridge.errors import ConfigError
from bridge.service import Bridge
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY
from bridge.sim.switchbot import DEFAULT_SECRET, DEFAULT_TOKEN
from bridge.sim.switchbot_events import SIM_EVENTS, webhook_body
from bridge.sim.world import SWITCHBOT_PREFIX, SimWorld
from bridge.skybell.payloads import PayloadError

from .serve_util import BridgeFactory, basic, get_json
from .web_util import browser_fixture, new_page, shot  # noqa: F401 - browser_fixture is a fixture

TOKEN = "t0ken-for-tests-0123456789abcdef"
ENV_KEEP = ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")

WARM_ON_MOTION = """
[[rules]]
name = "path sensor warms the porch"
on = ["switchbot.motion"]
switchbot_devices = ["Path Sensor"]
devices = ["front-door"]
do = [{ warm = 60 }]

[[rules]]
name = "unlock ends the clip"
on = ["switchbot.lock.unlocked"]
devices = ["front-door"]
do = [{ stop_recording = true }]
"""


# -- the parser ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "deviceType": st.sampled_from(["WoPresence", "WoContact", "WoLock", "WoKeypad", "X"])
        | json_values,
        "deviceMac": st.sampled_from(["c0:1d:4e:5f:60:71", "", "  "]) | json_values,
        "detectionState": st.sampled_from(["DETECTED", "NOT_DETECTED"]) | json_values,
        "openState": st.sampled_from(["open", "close", "timeOutNotClose"]) | json_values,
        "lockState": st.sampled_from(["LOCKED", "UNLOCKED", "JAMMED"]) | json_values,
        "eventName": st.sampled_from(["createKey", "deleteKey"]) | json_values,
        "timeOfSample": st.integers() | json_values,
    },
)
bodies = json_values | st.fixed_dictionaries(
    {"context": contexts | json_values},
    optional={"eventType": st.just("changeReport") | json_values},
)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_any_json_is_an_event_or_a_one_line_error(body: Any) -> None:
    try:
        event = parse_switchbot_event(body)
    except PayloadError as err:
        message = str(err)
        assert message
        assert "\n" not in message
        assert len(message) < 200
        return
    assert event.type in SWITCHBOT_EVENT_TYPES
    assert event.source == "switchbot"
    assert not event.known_device
    json.dumps(event.as_dict())  # the log and the feed can carry it


@pytest.mark.parametrize("name", list(SIM_EVENTS))
def test_every_simulated_event_parses(name: str) -> None:
    event = parse_switchbot_event(webhook_body(name, "C01D4E5F6071"), {"C01D4E5F6071": "Path"})
    assert event.device_id == "C01D4E5F6071"
    assert event.payload["name"] == "Path"
    expected = {
        "motion": "switchbot.motion",
        "open": "switchbot.contact.open",
        "close": "switchbot.contact.close",
        "unlocked": "switchbot.lock.unlocked",
        "locked": "switchbot.lock.locked",
        "keypad": "switchbot.keypad.create_key",
    }
    if name in expected:
        assert event.type == expected[name]


# -- end to end ------------------------------------------------------------------------------


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The CLI in a subprocess, without blocking the loop the simulator and bridge run on."""
    base = {k: v for k, v in os.environ.items() if k in ENV_KEEP}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def cli_env(world: SimWorld, token: str | None = TOKEN) -> dict[str, str]:
    env = {
        "SKYBELL_BRIDGE_SKYBELL_API_KEY": DEFAULT_API_KEY,
        "SKYBELL_BRIDGE_SKYBELL_API_URL": world.base_url + API_PREFIX,
        "SKYBELL_BRIDGE_SWITCHBOT_TOKEN": DEFAULT_TOKEN,
        "SKYBELL_BRIDGE_SWITCHBOT_SECRET": DEFAULT_SECRET,
        "SKYBELL_BRIDGE_SWITCHBOT_API_URL": world.base_url + SWITCHBOT_PREFIX,
    }
    if token is not None:
        env["SKYBELL_BRIDGE_SWITCHBOT_WEBHOOK_TOKEN"] = token
    return env


async def stream_state(bridge: Bridge, name: str = "front-door") -> dict[str, Any]:
    _, body = await get_json(bridge.http_url + f"api/streams?src={name}")
    assert isinstance(body, dict)
    return body


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"no {what} within {timeout:g} s"
        await asyncio.sleep(0.2)


async def events_of(bridge: Bridge, kind: str) -> list[dict[str, Any]]:
    _, body = await get_json(bridge.http_url + f"api/events?type={kind}")
    return list(body["events"])


@pytest.mark.slow
async def test_motion_warms_the_stream_before_the_press_for_real_preroll(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge(
        WARM_ON_MOTION,
        SKYBELL_BRIDGE_SWITCHBOT_WEBHOOK_TOKEN=TOKEN,
        SKYBELL_BRIDGE_EVENTS_POLL_INTERVAL="1",  # how the bridge hears of the press
        SKYBELL_BRIDGE_RECORD_POSTROLL="2",
    )
    public = bridge.http_url.rstrip("/")
    code, out, err = await cli("switchbot", "webhook", "add", "--url", public, env=cli_env(world))
    assert code == 0, err
    assert list(world.switchbot.webhooks) == [public + WEBHOOK_PREFIX + TOKEN]
    assert TOKEN not in out  # configured already: the secret is not printed again
    code, out, _ = await cli("switchbot", "webhook", "list", env=cli_env(world))
    assert code == 0
    assert "yes" in out
    assert TOKEN not in out

    assert (await stream_state(bridge))["state"] == "idle"
    async with (
        aiohttp.ClientSession() as http,
        http.get(bridge.http_url + "api/events/stream") as feed,
    ):
        code, out, err = await cli("sim", "switchbot", "motion", "--url", world.base_url)
        assert code == 0, err + out
        assert ": 200" in out
        seen = None
        async for raw in feed.content:
            line = raw.decode().strip()
            if line.startswith("event:") and line != "event: switchbot.motion":
                continue
            if line.startswith("data:"):
                seen = json.loads(line[5:])
                break
    assert seen is not None
    assert seen["type"] == "switchbot.motion"
    assert seen["payload"]["name"] == "Path Sensor"

    [event] = await events_of(bridge, "switchbot.motion")
    assert event["source"] == "switchbot"
    assert event["payload"]["detectionState"] == "DETECTED"

    async def live() -> bool:
        return (await stream_state(bridge))["state"] == "live"

    # Live before anyone pressed: the motion sensor woke it.
    await wait_for(live, 30, "live stream after the motion event")
    assert world.cloud.live_sessions.get(next(iter(world.cloud.devices))) == 1
    _, body = await get_json(bridge.http_url + "api/events?type=switchbot.motion")
    results = body["events"][0]["results"]
    assert [r["ok"] for r in results] == [True], results
    assert "front-door kept live" in results[0]["detail"]

    await asyncio.sleep(5)  # the buffer fills while the visitor walks up the path
    await world.press("Front Door")

    async def clip() -> dict[str, Any] | None:
        _, body = await get_json(bridge.http_url + "api/clips?device=front-door")
        done = [c for c in body["clips"] if c["state"] == "done"]
        return done[0] if done else None

    recorded = await wait_for(clip, 60, "clip of the press")
    assert recorded["preroll"] >= 2.0, recorded


@pytest.mark.slow
async def test_an_unlock_ends_the_running_clip(make_bridge: BridgeFactory, world: SimWorld) -> None:
    bridge = await make_bridge(
        WARM_ON_MOTION,
        SKYBELL_BRIDGE_SWITCHBOT_WEBHOOK_TOKEN=TOKEN,
        SKYBELL_BRIDGE_EVENTS_POLL_INTERVAL="1",
        SKYBELL_BRIDGE_RECORD_POSTROLL="60",
    )
    world.switchbot.webhooks.clear()
    code, _, err = await cli(
        "switchbot", "webhook", "add", "--url", bridge.http_url, env=cli_env(world)
    )
    assert code == 0, err
    await world.press("Front Door")

    async def recording() -> bool:
        _, body = await get_json(bridge.http_url + "api/record")
        return any(r["device"] == "front-door" and r["seconds"] > 1 for r in body["recording"])

    await wait_for(recording, 40, "clip being recorded")
    deliveries = await world.switchbot.send_event("unlocked")
    assert [status for _, status in deliveries] == [200]

    async def ended() -> dict[str, Any] | None:
        _, body = await get_json(bridge.http_url + "api/clips?device=front-door")
        done = [c for c in body["clips"] if c["state"] == "done"]
        return done[0] if done else None

    clip = await wait_for(ended, 20, "clip ended by the unlock")
    assert clip["duration"] < 40  # the 60 s post-roll was cut short
    [event] = await events_of(bridge, "switchbot.lock.unlocked")
    assert "clip ended" in event["results"][0]["detail"]


async def test_wrong_token_is_a_plain_404_and_malformed_is_a_400(
    make_bridge: BridgeFactory,
) -> None:
    bridge = await make_bridge(
        None,
        SKYBELL_BRIDGE_SWITCHBOT_WEBHOOK_TOKEN=TOKEN,
        SKYBELL_BRIDGE_EVENTS_POLL_ENABLED="false",
        SKYBELL_BRIDGE_SERVER_USERNAME="admin",
        SKYBELL_BRIDGE_SERVER_PASSWORD="pass-word-1",
    )
    base = bridge.http_url.rstrip("/")
    good = base + WEBHOOK_PREFIX + TOKEN
    body = webhook_body("open", "C01D4E5F6072")
    async with aiohttp.ClientSession() as http:
        for wrong in ("x" * len(TOKEN), TOKEN[:-1], TOKEN + "0", "short"):
            async with http.post(base + WEBHOOK_PREFIX + wrong, json=body) as resp:
                # The router's own 404 for a path that does not exist: nothing to learn from,
                # password or not (a 401 would say "right place, wrong credential").
                assert (resp.status, await resp.read()) == (404, b"404: Not Found")
        for bad, why in (
            (b"not json", "not JSON"),
            (b"[]", "JSON object"),
            (b'{"context": {"deviceType": "WoLock", "deviceMac": "aa"}}', "lockState"),
            (b'{"context": {"deviceMac": "aa"}}', "deviceType"),
            (b"{" * 100000, "over"),
        ):
            async with http.post(good, data=bad) as resp:
                assert resp.status == 400, bad[:40]
                message = (await resp.json())["error"]
                assert why in message
                assert "\n" not in message
        # No password needed for the right token (SwitchBot cannot send one) ...
        async with http.post(good, json=body) as resp:
            assert resp.status == 200
            answer = await resp.json()
        assert answer["type"] == "switchbot.contact.open"
        # ... and the bridge still serves everything else, behind its password.
        async with http.get(base + "/api/events?type=switchbot.contact.open") as resp:
            assert resp.status == 401
        status, events = await get_json(
            base + "/api/events?type=switchbot.contact.open", headers=basic("admin", "pass-word-1")
        )
    assert status == 200
    assert events["events"][0]["id"] == answer["event_id"]


async def test_no_token_configured_means_the_receiver_is_off(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge(None, SKYBELL_BRIDGE_EVENTS_POLL_ENABLED="false")
    async with (
        aiohttp.ClientSession() as http,
        http.post(bridge.http_url + "api/switchbot/webhook/" + TOKEN, json={}) as resp,
    ):
        assert resp.status == 404
    # `add` without a token makes one, registers it and says what to put in the config.
    code, out, err = await cli(
        "switchbot", "webhook", "add", "--url", "https://home.example", env=cli_env(world, None)
    )
    assert code == 0, err
    [url] = world.switchbot.webhooks
    token = url.rsplit("/", 1)[1]
    assert url == "https://home.example" + WEBHOOK_PREFIX + token
    assert len(token) >= 32
    assert f'webhook_token = "{token}"' in out
    code, out, _ = await cli("switchbot", "webhook", "remove", env=cli_env(world, None))
    assert code == 0
    assert "removed" in out
    assert token not in out
    assert world.switchbot.webhooks == {}


def test_rules_name_the_doorbell_for_switchbot_events() -> None:
    from bridge.automation.rules import parse_rules

    with pytest.raises(ConfigError) as err:
        parse_rules([{"on": ["switchbot.motion"], "do": [{"warm": 30}]}])
    assert err.value.key == "rules[0].devices"
    with pytest.raises(ConfigError) as err:
        parse_rules([{"on": ["doorbell"], "switchbot_devices": ["x"], "do": [{"warm": 3}]}])
    assert err.value.key == "rules[0].switchbot_devices"
    with pytest.raises(ConfigError) as err:
        parse_rules([{"on": ["switchbot.nope"], "do": [{"chime": "udp"}]}])
    assert err.value.key == "rules[0].on[0]"
    # A chime needs no doorbell.
    [rule] = parse_rules([{"on": ["switchbot.contact.open"], "do": [{"chime": "udp"}]}])
    assert rule.on_switchbot


@pytest.mark.slow
async def test_the_page_lists_switchbot_events_live(
    make_bridge: BridgeFactory, world: SimWorld, browser: Any
) -> None:
    bridge = await make_bridge(
        WARM_ON_MOTION,
        SKYBELL_BRIDGE_SWITCHBOT_WEBHOOK_TOKEN=TOKEN,
        SKYBELL_BRIDGE_EVENTS_POLL_ENABLED="false",
    )
    url = bridge.http_url.rstrip("/") + WEBHOOK_PREFIX + TOKEN
    world.switchbot.webhooks[url] = {"url": url, "enable": True}
    page, watch = await new_page(browser)
    await page.goto(bridge.http_url + "#/events")
    await page.wait_for_selector("#feed-state[data-state=open]")
    await world.switchbot.send_event("motion")
    item = page.locator('#event-list li[class~="ev-switchbot.motion"]').first
    await item.wait_for(timeout=5000)
    text = await item.text_content() or ""
    assert "Motion sensor" in text
    assert "Path Sensor" in text  # the device's own name, not its MAC
    assert "via switchbot" in text
    # The rule's result (the doorbell kept live) arrives a moment later, as for a press.
    result = item.locator(".results li.ok")
    await result.wait_for(timeout=10000)
    assert "front-door kept live" in (await result.text_content() or "")
    assert await page.locator("#banner").is_hidden()  # not a ring at the door
    await shot(page, "events-switchbot")
    assert watch.errors == []


async def test_bad_urls_and_tokens_stop_with_one_line(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    code, _, err = await cli(
        "switchbot", "webhook", "add", "--url", "ftp://home.example", env=cli_env(world)
    )
    assert code == 2
    assert "--url" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = await cli(
        "switchbot", "webhook", "add", "--url", "https://h.example", env=cli_env(world, "a/b")
    )
    assert code == 2
    assert "switchbot.webhook_token" in err
    assert "a/b" not in err  # the token is a secret: never echoed
    with pytest.raises(ConfigError) as refused:
        await make_bridge(None, SKYBELL_BRIDGE_SWITCHBOT_WEBHOOK_TOKEN="too-short")
    assert refused.value.key == "switchbot.webhook_token"
