"""MQTT against a real mosquitto: discovery, retained states, presses, commands, bad input.

Each test runs its own broker on a free loopback port (``tests/mqtt_util.py``) and a whole
bridge against the simulator, and looks only at what a subscriber on the broker sees (and at
the simulated cloud, for what the commands changed).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bridge.sim.picture import snapshot_jpeg
from bridge.sim.world import SimWorld
from bridge.skybell.triggers import DEFAULT_HEADER, WEBHOOK_PATH

from .mqtt_util import Broker, Watcher, needs_mosquitto, watching
from .serve_util import FRONT, BridgeFactory, get_json

pytestmark = needs_mosquitto

BACK = "be0e3ef1-cf12-4350-bdc2-ce5266bdb838"
PREFIX = "homeassistant"
NODE = "skybell-bridge"
# Every entity of a doorbell: component and key (the battery only where the model has one).
DOORBELL_ENTITIES = {
    ("event", "doorbell"),
    ("binary_sensor", "ding"),
    ("binary_sensor", "motion"),
    ("binary_sensor", "online"),
    ("camera", "snapshot"),
    ("button", "take_snapshot"),
    ("sensor", "wifi_signal"),
    ("sensor", "last_event"),
    ("sensor", "live_stream"),
    ("light", "led"),
    ("switch", "indoor_chime"),
    ("switch", "digital_chime"),
    ("switch", "outdoor_chime"),
    ("switch", "skybell_chime"),
    ("select", "chime_file"),
    ("select", "outdoor_chime_volume"),
    ("number", "brightness"),
    ("number", "motion_sensitivity"),
    ("switch", "motion_detection"),
    ("switch", "debug_motion_detect"),
    ("select", "image_quality"),
    ("select", "speaker_volume"),
    ("switch", "keep_live"),
    ("button", "reboot"),
}
RULE = """
[[rules]]
name = "Porch light"
on = ["doorbell"]
do = [{ record = true }]
"""


def config_topic(component: str, object_id: str, node: str = NODE) -> str:
    return f"{PREFIX}/{component}/{node}/{object_id}/config"


def expected_configs(*, rules: tuple[str, ...] = ()) -> set[str]:
    topics = {config_topic(c, f"{FRONT}_{k}") for c, k in DOORBELL_ENTITIES}
    topics |= {config_topic(c, f"{BACK}_{k}") for c, k in DOORBELL_ENTITIES}
    topics.add(config_topic("sensor", f"{BACK}_battery"))
    topics |= {config_topic("sensor", f"bridge_{k}") for k in ("streams_live", "clips_stored")}
    topics.add(config_topic("sensor", "bridge_switchbot_calls_left"))  # the test bridge has one
    topics |= {config_topic("switch", f"bridge_rule_{r}") for r in rules}
    return topics


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder)
    await broker.start()
    yield broker
    broker.stop()


def mqtt_env(broker: Broker, **extra: str) -> dict[str, str]:
    return {
        "SKYBELL_BRIDGE_MQTT_ENABLED": "true",
        "SKYBELL_BRIDGE_MQTT_URL": broker.url,
        "SKYBELL_BRIDGE_MQTT_DING_SECONDS": "1",
        "SKYBELL_BRIDGE_EVENTS_POLL_INTERVAL": "1",
        **extra,
    }


async def wait_announced(watcher: Watcher, topics: set[str]) -> None:
    await watcher.wait(lambda: topics <= {m.topic for m in watcher.messages}, 30)


async def retained(broker: Broker, topics: set[str]) -> dict[str, bytes]:
    """What a new subscriber gets at once: the broker's retained messages on ``topics``."""
    async with watching(broker) as fresh:
        await fresh.wait(lambda: topics <= {m.topic for m in fresh.messages}, 10)
        return {m.topic: m.payload for m in fresh.messages if m.retain and m.topic in topics}


async def test_every_entity_is_announced_with_its_retained_state(
    broker: Broker, make_bridge: BridgeFactory
) -> None:
    async with watching(broker) as watcher:
        bridge = await make_bridge(RULE, **mqtt_env(broker))
        configs = expected_configs(rules=("porch_light",))
        await wait_announced(watcher, configs)
        await watcher.wait_payload("skybell/bridge/status", b"online")
        announced = {m.topic for m in watcher.messages if m.topic.startswith(PREFIX + "/")}
        assert announced == configs
        async with aiohttp.ClientSession() as http, http.get(bridge.http_url + "metrics") as resp:
            assert "skybell_bridge_mqtt_connected 1.0" in await resp.text()

        # Home Assistant's birth message (it restarted) gets every config again.
        light = config_topic("light", f"{FRONT}_led")
        await watcher.publish(f"{PREFIX}/status", "online")
        await watcher.wait(lambda: len(watcher.on(light)) == 2)

        # Every state topic an entity reads has a retained value, for HA's start.
        state_topics: set[str] = set()
        for topic in configs:
            config = json.loads(watcher.last(topic).payload)  # type: ignore[union-attr]
            assert config["unique_id"].startswith(NODE + "_")
            assert config["default_entity_id"].startswith(topic.split("/")[1] + ".")
            assert config["availability_mode"] == "all"
            assert {"topic": "skybell/bridge/status"} in config["availability"]
            device = config["device"]
            assert device["identifiers"][0].startswith(NODE + "_")
            if device["identifiers"] != [f"{NODE}_bridge"]:
                assert device["manufacturer"] == "SkyBell"
                assert device["via_device"] == f"{NODE}_bridge"
                assert device["sw_version"] in ("1.4.12", "1.4.9")
            if config.get("state_topic") and not topic.endswith(
                ("_doorbell/config", "_last_event/config")
            ):
                state_topics.add(config["state_topic"])
        await watcher.wait(lambda: state_topics <= {m.topic for m in watcher.messages}, 30)

    state_topics |= {"skybell/bridge/status", "skybell/front-door/availability"}
    kept = await retained(broker, configs | state_topics)
    assert set(kept) == configs | state_topics
    assert kept["skybell/back-garden/battery"] == b"87"
    assert kept["skybell/front-door/availability"] == b"online"
    assert kept["skybell/front-door/online"] == b"ON"
    assert kept["skybell/front-door/wifi_signal"] == b"-38"
    assert kept["skybell/front-door/ding"] == b"OFF"
    assert kept["skybell/front-door/motion_detection"] == b"ON"
    assert kept["skybell/bridge/rule/porch_light"] == b"ON"
    assert json.loads(kept["skybell/front-door/led"])["state"] in ("ON", "OFF")
    event = json.loads(kept[config_topic("event", f"{FRONT}_doorbell")])
    assert event["device_class"] == "doorbell"
    assert event["event_types"] == ["press"]
    light = json.loads(kept[config_topic("light", f"{FRONT}_led")])
    assert light["schema"] == "json"
    assert light["supported_color_modes"] == ["rgb"]
    online = json.loads(kept[config_topic("binary_sensor", f"{FRONT}_online")])
    assert online["device_class"] == "connectivity"
    assert online["availability"] == [{"topic": "skybell/bridge/status"}]
    ding = json.loads(kept[config_topic("binary_sensor", f"{FRONT}_ding")])
    assert {"topic": "skybell/front-door/availability"} in ding["availability"]


@pytest.mark.slow
async def test_a_press_gives_the_event_a_ding_and_a_new_snapshot(
    broker: Broker, make_bridge: BridgeFactory, world: SimWorld
) -> None:
    async with watching(broker) as watcher:
        await make_bridge(**mqtt_env(broker))
        await watcher.wait_payload("skybell/front-door/ding", b"OFF")
        await world.press("Front Door")
        event = await watcher.wait(lambda: watcher.last("skybell/front-door/doorbell"))
        assert event.json()["event_type"] == "press"
        await watcher.wait_payload("skybell/front-door/ding", b"ON")
        await watcher.wait_payload("skybell/front-door/ding", b"OFF", timeout=10)
        snapshot = await watcher.wait(lambda: watcher.last("skybell/front-door/snapshot"), 30)
        assert snapshot.payload.startswith(b"\xff\xd8")
        last = await watcher.wait(lambda: watcher.last("skybell/front-door/last_event"))
        assert last.payload.decode().startswith("20")

        await world.press("Front Door", "motion")
        await watcher.wait_payload("skybell/front-door/motion", b"ON")
        await watcher.wait_payload("skybell/front-door/motion", b"OFF", timeout=10)
        dings = [m.payload for m in watcher.on("skybell/front-door/ding")]
        assert dings == [b"OFF", b"ON", b"OFF"]  # motion is not a ding
    # Events are never retained: a new subscriber does not hear the press again.
    async with watching(broker, "skybell/front-door/#") as fresh:
        await fresh.wait(lambda: fresh.last("skybell/front-door/snapshot"))
        await fresh.wait(lambda: fresh.last("skybell/front-door/last_event"))
        assert fresh.on("skybell/front-door/doorbell") == []


async def command(watcher: Watcher, key: str, payload: str, state: bytes) -> None:
    """Send a command to the front door's ``key`` and wait for the state it must come to."""
    await watcher.publish(f"skybell/front-door/{key}/set", payload)
    await watcher.wait_payload(f"skybell/front-door/{key}", state)


@pytest.mark.slow
async def test_each_control_changes_the_cloud_and_reports_its_state(
    broker: Broker, make_bridge: BridgeFactory, world: SimWorld
) -> None:
    cloud = world.cloud.devices[FRONT].settings
    async with watching(broker) as watcher:
        bridge = await make_bridge(RULE, **mqtt_env(broker))
        await watcher.wait_payload("skybell/front-door/motion_detection", b"ON")

        await watcher.publish(
            "skybell/front-door/led/set", '{"state":"ON","color":{"r":255,"g":0,"b":128}}'
        )
        led = await watcher.wait_for(
            "skybell/front-door/led",
            lambda m: m.json().get("color") == {"r": 255, "g": 0, "b": 128},
        )
        assert led.json()["state"] == "ON"
        assert cloud["led_color"] == "#FF0080"
        await watcher.publish("skybell/front-door/led/set", '{"state":"OFF"}')
        await watcher.wait_for("skybell/front-door/led", lambda m: m.json()["state"] == "OFF")
        assert cloud["led_color"] == "#000000"

        for chime in ("indoor_chime", "outdoor_chime", "skybell_chime"):
            await command(watcher, chime, "OFF", b"OFF")
            assert cloud[chime] is False
        await command(watcher, "digital_chime", "ON", b"ON")
        assert cloud["digital_chime"] is True
        await command(watcher, "chime_file", "home.wav", b"home.wav")
        assert cloud["chime_file"] == "home.wav"
        await command(watcher, "motion_sensitivity", "200", b"200")
        assert cloud["motion_sensitivity"] == 200
        await command(watcher, "motion_detection", "OFF", b"OFF")
        assert cloud["motion_detection"] is False
        await command(watcher, "image_quality", "480p", b"480p")
        assert cloud["image_quality"] == 0

        # Keep live holds the live session open; the picture button takes one from it.
        await command(watcher, "keep_live", "ON", b"ON")
        await watcher.wait_payload("skybell/front-door/live_stream", b"live", timeout=30)
        attributes = watcher.last("skybell/front-door/keep_live/attributes")
        assert attributes is not None
        assert attributes.json()["rtsp"] == bridge.rtsp_url + "front-door"
        assert set(attributes.json()) >= {"rtsp", "hls", "webrtc"}
        before = len(watcher.on("skybell/front-door/snapshot"))
        await watcher.publish("skybell/front-door/take_snapshot/set", "PRESS")
        await watcher.wait(lambda: len(watcher.on("skybell/front-door/snapshot")) > before, 30)
        await command(watcher, "keep_live", "OFF", b"OFF")

        await watcher.publish("skybell/front-door/reboot/set", "PRESS")
        await watcher.publish("skybell/bridge/rule/porch_light/set", "OFF")
        await watcher.wait_payload("skybell/bridge/rule/porch_light", b"OFF")
        _, automation = await get_json(bridge.http_url + "api/automation")
        assert [r["enabled"] for r in automation["rules"]] == [False]
        assert watcher.on("skybell/bridge/error") == []


async def test_malformed_commands_get_one_log_line_and_an_error_message(
    broker: Broker, make_bridge: BridgeFactory, world: SimWorld, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = world.cloud.devices[FRONT].settings
    before = dict(cloud)
    bad = [
        ("skybell/front-door/led/set", '{"state":"ON","color":"ultraviolet"}', "unknown colour"),
        ("skybell/front-door/motion_sensitivity/set", "5000", "out of range"),
        ("skybell/front-door/motion_detection/set", '{"state":"ON"}', "not JSON"),
        ("skybell/front-door/chime_file/set", "doorbell.mp3", "is not one of"),
        ("skybell/side-gate/led/set", '{"state":"ON"}', "unknown doorbell 'side-gate'"),
        ("skybell/front-door/self_destruct/set", "PRESS", "no such control"),
        ("skybell/bridge/rule/nope/set", "OFF", "no such control on the bridge"),
        ("skybell/front-door/indoor_chime/set", b"\xff\xfe\x00", "not UTF-8"),
    ]
    async with watching(broker) as watcher:
        # A retained command would run again on every reconnect: the bridge refuses it.
        await watcher.publish("skybell/front-door/reboot/set", "PRESS", retain=True)
        await make_bridge(**mqtt_env(broker))
        first = await watcher.wait(lambda: watcher.on("skybell/bridge/error"))
        assert "reboot: a retained command is not obeyed" in first[0].json()["error"]
        await watcher.wait_payload("skybell/front-door/motion_detection", b"ON")
        caplog.clear()
        for topic, payload, _ in bad:
            await watcher.publish(topic, payload)
        errors = await watcher.wait(
            lambda: (
                len(watcher.on("skybell/bridge/error")) == len(bad) + 1
                and watcher.on("skybell/bridge/error")[1:]
            )
        )
        for (topic, _, needle), seen in zip(bad, errors, strict=True):
            body = seen.json()
            assert body["topic"] == topic
            assert needle in body["error"]
            assert not seen.retain
        # The bridge goes on: a good command still works.
        await command(watcher, "indoor_chime", "OFF", b"OFF")
        # A doorbell that does not answer the cloud (HTTP 599) is said so, and nothing changes.
        world.cloud.faults.unreachable.add(FRONT)
        await watcher.publish("skybell/front-door/indoor_chime/set", "ON")
        errors = await watcher.wait(lambda: watcher.on("skybell/bridge/error")[len(bad) + 1 :])
        assert "indoor_chime: the doorbell did not answer" in errors[0].json()["error"]
        assert watcher.last("skybell/front-door/indoor_chime").payload == b"OFF"  # type: ignore[union-attr]
    assert {k: v for k, v in cloud.items() if k != "indoor_chime"} == {
        k: v for k, v in before.items() if k != "indoor_chime"
    }
    refusals = [r for r in caplog.records if "refused the command" in r.getMessage()]
    assert len(refusals) == len(bad) + 1
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in refusals)
    assert "Traceback" not in caplog.text


async def test_webhook_events_bring_availability_and_the_event_preview(
    broker: Broker, make_bridge: BridgeFactory, world: SimWorld
) -> None:
    preview = snapshot_jpeg(320, 180, "preview")
    bridge = await make_bridge(
        **mqtt_env(
            broker,
            SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET="hook-s3cret",
            SKYBELL_BRIDGE_EVENTS_POLL_ENABLED="false",
            SKYBELL_BRIDGE_RECORD_RECORD_MOTION="false",
        )
    )

    async def webhook(body: dict[str, object]) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                bridge.http_url + WEBHOOK_PATH.lstrip("/"),
                json=body,
                headers={DEFAULT_HEADER: "hook-s3cret"},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()

    async with watching(broker, "skybell/front-door/#") as watcher:
        await watcher.wait_payload("skybell/front-door/availability", b"online")
        now = datetime.now(UTC).isoformat()
        # Motion with its picture: the picture is the snapshot, no live view is started for one.
        motion = {"event": "motion", "device_id": FRONT, "date_time": now}
        await webhook({**motion, "preview": base64.b64encode(preview).decode()})
        await watcher.wait_payload("skybell/front-door/motion", b"ON")
        await watcher.wait_payload("skybell/front-door/snapshot", preview)
        assert watcher.last("skybell/front-door/live_stream").payload == b"idle"  # type: ignore[union-attr]
        # The cloud says the doorbell went offline: its entities become unavailable.
        world.cloud.devices[FRONT].online = False
        await webhook({"event": "availability", "device_id": FRONT, "date_time": now})
        await watcher.wait_payload("skybell/front-door/availability", b"offline")
        await watcher.wait_payload("skybell/front-door/online", b"OFF")
