"""Rules' doorbell actions on a running bridge against the simulator: a tone the simulated cloud
plays, an LED colour set then restored (after overlapping holds, and at shutdown), the chime's
UDP button packet on a loopback listener, and ``say`` heard by the simulated doorbell at 1 kHz.
A SwitchBot event fires each rule (the simulated SwitchBot posts it to the bridge), which also
shows ``devices`` naming the doorbell for an event that happened at none."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from bridge.automation.rules import parse_rules
from bridge.automation.switchbot_events import WEBHOOK_PREFIX
from bridge.errors import ConfigError
from bridge.service import Bridge
from bridge.sim.world import SimWorld
from bridge.skybell.udp import BUTTON_PACKET, parse_packet

from .serve_util import FRONT, BridgeFactory, get_json
from .talk_util import tone_file, wait_heard

TOKEN = "rule-actions-token-0123456789"
ORIGINAL = "#0000FF"


def rule(on: str, actions: str, name: str | None = None) -> str:
    return f"""
[[rules]]
name = "{name or on}"
on = ["{on}"]
devices = ["front-door"]
do = [{actions}]
"""


async def bridge_with(make_bridge: BridgeFactory, world: SimWorld, config: str) -> Bridge:
    bridge = await make_bridge(
        config,
        SKYBELL_BRIDGE_SWITCHBOT_WEBHOOK_TOKEN=TOKEN,
        SKYBELL_BRIDGE_EVENTS_POLL_ENABLED="false",
    )
    url = bridge.http_url.rstrip("/") + WEBHOOK_PREFIX + TOKEN
    world.switchbot.webhooks[url] = {"url": url, "enable": True}
    return bridge


async def fire(world: SimWorld, event: str) -> None:
    deliveries = await world.switchbot.send_event(event)
    assert [status for _, status in deliveries] == [200]


async def results(bridge: Bridge, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The action results stored with the newest ``kind`` event, once there are ``count``."""
    for _ in range(300):
        _, body = await get_json(bridge.http_url + f"api/events?type={kind}")
        if body["events"] and len(body["events"][0]["results"]) >= count:
            return list(body["events"][0]["results"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no results for {kind}")


def led(world: SimWorld) -> str:
    return str(world.cloud.devices[FRONT].settings.get("led_color", "")).upper()


async def wait_led(world: SimWorld, colour: str, timeout: float) -> None:
    for _ in range(int(timeout * 20)):
        if led(world) == colour:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"LED {led(world)}, not {colour}, after {timeout:g} s")


async def test_tone_is_played_by_the_cloud(make_bridge: BridgeFactory, world: SimWorld) -> None:
    bridge = await bridge_with(
        make_bridge, world, rule("switchbot.contact.open", '{ tone = "2.wav" }')
    )
    await fire(world, "open")
    [result] = await results(bridge, "switchbot.contact.open")
    assert result["ok"], result
    assert result["detail"] == "front-door played 2.wav"
    assert world.cloud.tones_played == [(FRONT, "2.wav")]


async def test_led_is_set_then_restored_after_overlapping_holds(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    world.cloud.devices[FRONT].settings["led_color"] = ORIGINAL
    config = rule("switchbot.contact.open", '{ led = "#FF0000", seconds = 1 }') + rule(
        "switchbot.contact.close", '{ led = "#ffff00", seconds = 2.5 }'
    )
    bridge = await bridge_with(make_bridge, world, config)
    await fire(world, "open")
    [first] = await results(bridge, "switchbot.contact.open")
    assert first["ok"], first
    assert first["detail"].endswith(f"then {ORIGINAL}")
    assert led(world) == "#FF0000"
    await fire(world, "close")
    [second] = await results(bridge, "switchbot.contact.close")
    assert second["ok"], second
    # The second hold restores the colour from before the first, not the first's red.
    assert second["detail"].endswith(f"then {ORIGINAL}")
    assert led(world) == "#FFFF00"
    await asyncio.sleep(1.2)  # the first hold's end: the later one still holds
    assert led(world) == "#FFFF00"
    await wait_led(world, ORIGINAL, 4)


async def test_a_held_led_is_restored_when_the_bridge_stops(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    world.cloud.devices[FRONT].settings["led_color"] = ORIGINAL
    bridge = await bridge_with(
        make_bridge, world, rule("switchbot.motion", '{ led = "#FF0000", seconds = 600 }')
    )
    await fire(world, "motion")
    await results(bridge, "switchbot.motion")
    assert led(world) == "#FF0000"
    await bridge.close()
    assert led(world) == ORIGINAL


async def test_chime_sends_the_button_packet(make_bridge: BridgeFactory, world: SimWorld) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        action = f'{{ chime = "udp", address = "127.0.0.1", port = {port} }}'
        bridge = await bridge_with(make_bridge, world, rule("switchbot.lock.unlocked", action))
        await fire(world, "unlocked")
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(listener, 1024), 10)
    finally:
        listener.close()
    assert data == BUTTON_PACKET
    assert parse_packet(data) is not None
    [result] = await results(bridge, "switchbot.lock.unlocked")
    assert result["ok"], result
    assert f"127.0.0.1:{port}" in result["detail"]


@pytest.mark.slow
async def test_say_is_heard_by_the_doorbell(
    make_bridge: BridgeFactory, world: SimWorld, tmp_path: Path
) -> None:
    (tmp_path / "msg.wav").write_bytes(tone_file(1000.0, 2.0))
    # Relative to the config file, which make_bridge writes into tmp_path.
    bridge = await bridge_with(
        make_bridge, world, rule("switchbot.keypad.create_key", '{ say = "msg.wav" }')
    )
    await fire(world, "keypad")
    report = await wait_heard(
        world.base_url,
        FRONT,
        lambda r: r.get("frequency_hz") and abs(r["frequency_hz"] - 1000) < 30,
        timeout=30,
    )
    assert report["frequency_hz"] is not None
    assert abs(report["frequency_hz"] - 1000) < 30, report
    assert report["level_dbfs"] > -30, report
    [result] = await results(bridge, "switchbot.keypad.create_key")
    assert result["ok"], result
    assert result["detail"].startswith("said msg.wav to front-door")


def test_bad_actions_are_config_errors_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wave file at all")
    cases = [
        ({"say": "missing.wav"}, "rules[0].do[0].say", "no audio file"),
        ({"say": "noise.wav"}, "rules[0].do[0].say", "not audio"),
        ({"tone": "7.wav"}, "rules[0].do[0].tone", "unknown tone"),
        ({"led": "red", "seconds": 5}, "rules[0].do[0].led", "#RRGGBB"),
        ({"led": "#FF0000"}, "rules[0].do[0].seconds", "seconds"),
        ({"led": "#FF0000", "seconds": 0}, "rules[0].do[0].seconds", "more than 0"),
        ({"chime": "bell"}, "rules[0].do[0].chime", "udp"),
        ({"chime": "udp", "address": "lan"}, "rules[0].do[0].address", "IPv4"),
        ({"chime": "udp", "port": 70000}, "rules[0].do[0].port", "port"),
        ({"stop_recording": False}, "rules[0].do[0].stop_recording", "true"),
    ]
    for action, key, words in cases:
        with pytest.raises(ConfigError) as err:
            parse_rules([{"on": ["doorbell"], "do": [action]}], base=tmp_path)
        assert err.value.key == key, action
        assert words in err.value.problem, (action, err.value.problem)
    [ok] = parse_rules(
        [{"on": ["doorbell"], "do": [{"say": "msg.wav"}]}],
        base=_with_wav(tmp_path),
    )
    assert ok.actions[0].label == "say msg.wav"


def _with_wav(folder: Path) -> Path:
    (folder / "msg.wav").write_bytes(tone_file(440.0, 0.5))
    return folder
