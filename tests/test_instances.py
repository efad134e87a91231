"""Several bridges on one simulated account, each with its share (``skybell.devices``) and its
``bridge.instance``: streams, events, rules, S3 keys, MQTT topics and webhooks stay apart."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError
from bridge.redact import Secret
from bridge.routes.clips import UPLOADER
from bridge.routes.common import DEVICES
from bridge.service import Bridge
from bridge.sim.world import SimWorld
from bridge.skybell.triggers import add_webhook_triggers, webhook_url

from .mqtt_util import Broker, needs_mosquitto, watching
from .serve_util import FRONT, BridgeFactory, get_json
from .test_automation_e2e import free_udp_port, rule_now
from .test_cli import run
from .test_clips_api import FAST_CLIPS, wait_for_clip
from .test_mqtt import broker, mqtt_env, retained
from .test_s3 import admin, aws_env, moto_url

__all__ = ["aws_env", "broker", "moto_url"]  # fixtures, shared with test_mqtt and test_s3

BACK = "be0e3ef1-cf12-4350-bdc2-ce5266bdb838"


def share(tmp_path: Path, name: str, devices: str, **extra: str) -> dict[str, str]:
    """The environment of one instance: its doorbells, its name and its own clips folder."""
    return {
        "SKYBELL_BRIDGE_SKYBELL_DEVICES": devices,
        "SKYBELL_BRIDGE_BRIDGE_INSTANCE": name,
        "SKYBELL_BRIDGE_STORAGE_CLIPS_DIR": str(tmp_path / f"clips-{name}"),
        **extra,
    }


async def metric(bridge: Bridge, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(bridge.http_url + "metrics") as resp:
        text = await resp.text()
    (line,) = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[1])


async def events_of(bridge: Bridge) -> list[dict[str, object]]:
    _, body = await get_json(bridge.http_url + "api/events?type=doorbell")
    events: list[dict[str, object]] = body["events"]
    return events


async def test_each_instance_lists_only_its_own_doorbells(
    make_bridge: BridgeFactory, tmp_path: Path
) -> None:
    # One lists a stream name, the other a doorbell's display name and the other's id.
    east = await make_bridge(**share(tmp_path, "east", "front-door"))
    west = await make_bridge(**share(tmp_path, "west", f"Back Garden,{BACK}"))
    _, streams = await get_json(east.http_url + "api/streams")
    assert list(streams) == ["front-door"]
    _, streams = await get_json(west.http_url + "api/streams")
    assert list(streams) == ["back-garden"]
    assert [d.id for d in east.app[DEVICES]] == [FRONT]
    status, _ = await get_json(east.http_url + "api/devices/back-garden/settings")
    assert status == 404
    status, _ = await get_json(west.http_url + "api/devices/back-garden/settings")
    assert status == 200
    async with aiohttp.ClientSession() as http, http.get(east.http_url + "metrics") as resp:
        metrics = await resp.text()
    assert 'stream="front-door"' in metrics
    assert "back-garden" not in metrics


async def test_a_press_reaches_only_its_instance_log_and_rules(
    make_bridge: BridgeFactory,
    world: SimWorld,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    udp = free_udp_port()
    hooks = {
        "SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET": "hook-secret",
        "SKYBELL_BRIDGE_EVENTS_POLL_INTERVAL": "1",
        "SKYBELL_BRIDGE_RECORD_RECORD_MOTION": "false",
    }
    # Only the front door's instance hears the UDP broadcasts: the port is its.
    east = await make_bridge(
        rule_now("Porch light on").replace('devices = ["front-door"]\n', ""),
        **share(tmp_path, "east", "front-door", **hooks),
        SKYBELL_BRIDGE_EVENTS_UDP_ENABLED="true",
        SKYBELL_BRIDGE_EVENTS_UDP_HOST="127.0.0.1",
        SKYBELL_BRIDGE_EVENTS_UDP_PORT=str(udp),
    )
    # The west rule has no device filter: only the share keeps the front door's press out.
    west = await make_bridge(
        rule_now("All off").replace('devices = ["front-door"]\n', ""),
        **share(tmp_path, "west", "back-garden", **hooks),
    )
    for bridge in (east, west):
        await add_webhook_triggers(
            bridge.client,
            bridge.app[DEVICES],
            webhook_url(bridge.http_url),
            secret=Secret("hook-secret"),
        )
    world.presser.udp_target = ("127.0.0.1", udp)

    press = await world.press("Front Door")
    assert [w["status"] for w in press.webhooks] == [200]  # east's trigger only
    await world.switchbot.wait_executed(1, 10)
    await asyncio.sleep(3)  # three poll intervals: west's poller sees the activity too
    (event,) = await events_of(east)
    assert event["device"] == "front-door"
    assert await events_of(west) == []
    assert [e.name for e in world.switchbot.executed] == ["Porch light on"]

    await world.press("Back Garden")
    await world.switchbot.wait_executed(2, 10)
    await asyncio.sleep(2)
    assert [e["device"] for e in await events_of(west)] == ["back-garden"]
    assert len(await events_of(east)) == 1
    assert [e.name for e in world.switchbot.executed] == ["Porch light on", "All off"]
    # The other instance's doorbell is not news: no "not on the account" warnings.
    assert not [r for r in caplog.records if "on the account" in r.getMessage()]


async def test_a_listed_doorbell_not_on_the_account_is_one_warning(
    make_bridge: BridgeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bridge.skybell.share")
    bridge = await make_bridge(**share(tmp_path, "east", "front-door,side-gate"))
    _, streams = await get_json(bridge.http_url + "api/streams")
    assert list(streams) == ["front-door"]
    await bridge.client.devices()  # asked again (an event refresh): no second warning
    warned = [r.getMessage() for r in caplog.records if "side-gate" in r.getMessage()]
    assert len(warned) == 1
    assert "no doorbell on the account" in warned[0]
    assert "Front Door" in warned[0]


def test_instance_and_devices_are_checked_at_load(tmp_path: Path) -> None:
    settings = load_settings(None, {"SKYBELL_BRIDGE_SKYBELL_DEVICES": " front-door , garage ,"})
    assert settings.skybell.devices == ("front-door", "garage")
    assert load_settings(None, {}).bridge.instance == ""
    config = tmp_path / "bridge.toml"
    config.write_text('[skybell]\ndevices = ["front-door", 3]\n')
    with pytest.raises(ConfigError, match=r"skybell\.devices"):
        load_settings(config, {})
    for bad in ("East", "east_1", "-east", "east/1", "a b"):
        with pytest.raises(ConfigError, match=r"bridge\.instance"):
            load_settings(None, {"SKYBELL_BRIDGE_BRIDGE_INSTANCE": bad})
    assert load_settings(None, {"SKYBELL_BRIDGE_BRIDGE_INSTANCE": "east-2"}).bridge.instance


def test_triggers_add_registers_only_the_instance_doorbells() -> None:
    env = {
        "SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET": "s3cret-value",
        "SKYBELL_BRIDGE_SKYBELL_DEVICES": "back-garden",
    }
    added = run("triggers", "add", "--url", "https://west.example", env=env)
    assert added.returncode == 0, added.stderr
    assert BACK in added.stdout
    assert FRONT not in added.stdout
    everyone = run(
        "triggers",
        "add",
        "--url",
        "https://one.example",
        env=env | {"SKYBELL_BRIDGE_SKYBELL_DEVICES": ""},
    )
    assert FRONT in everyone.stdout
    assert BACK in everyone.stdout


async def test_s3_keys_carry_the_instance(
    make_bridge: BridgeFactory, world: SimWorld, tmp_path: Path, moto_url: str
) -> None:
    admin(moto_url).create_bucket(Bucket="shared-clips")
    s3 = {
        "SKYBELL_BRIDGE_S3_ENABLED": "true",
        "SKYBELL_BRIDGE_S3_BUCKET": "shared-clips",
        "SKYBELL_BRIDGE_S3_PREFIX": "doorbells",
        "SKYBELL_BRIDGE_S3_ENDPOINT_URL": moto_url,
        "SKYBELL_BRIDGE_S3_REGION": "us-east-1",
        "SKYBELL_BRIDGE_S3_ADDRESSING_STYLE": "path",
        **FAST_CLIPS,
    }
    east = await make_bridge(**share(tmp_path, "east", "front-door", **s3))
    west = await make_bridge(**share(tmp_path, "west", "back-garden", **s3))
    await world.press("Front Door")
    await world.press("Back Garden")
    await wait_for_clip(east, device="front-door")
    await wait_for_clip(west, device="back-garden")
    for bridge in (east, west):
        await bridge.app[UPLOADER].drain()
    listed = admin(moto_url).list_objects_v2(Bucket="shared-clips")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert any(k.startswith("doorbells/east/front-door/") and k.endswith(".mp4") for k in keys)
    assert any(k.startswith("doorbells/west/back-garden/") and k.endswith(".mp4") for k in keys)
    assert all(
        k.startswith(("doorbells/east/front-door/", "doorbells/west/back-garden/")) for k in keys
    )


@needs_mosquitto
async def test_mqtt_topics_and_ids_carry_the_instance(
    broker: Broker, make_bridge: BridgeFactory, tmp_path: Path
) -> None:
    async with watching(broker) as watcher:
        east = await make_bridge(**share(tmp_path, "east", "front-door", **mqtt_env(broker)))
        west = await make_bridge(**share(tmp_path, "west", "back-garden", **mqtt_env(broker)))
        await watcher.wait_payload("skybell/east/bridge/status", b"online")
        await watcher.wait_payload("skybell/west/bridge/status", b"online")

        def seen(head: str) -> bool:
            return any(m.topic.startswith(head) for m in watcher.messages)

        # The claims come last, after every state of each instance.
        await watcher.wait(
            lambda: seen(f"skybell/claims/{FRONT}") and seen(f"skybell/claims/{BACK}")
        )
        assert seen("skybell/east/front-door/")
        assert seen("skybell/west/back-garden/")
        assert not seen("skybell/east/back-garden/")
        assert not seen("skybell/west/front-door/")
        assert not seen("skybell/front-door/")
        nodes = {
            m.topic.split("/")[2] for m in watcher.messages if m.topic.startswith("homeassistant/")
        }
        assert nodes == {"skybell-bridge-east", "skybell-bridge-west"}
        for m in watcher.messages:
            if m.topic.startswith("homeassistant/") and m.payload:
                node = m.topic.split("/")[2]
                assert m.json()["unique_id"].startswith(node + "_")
    claims = await retained(broker, {f"skybell/claims/{FRONT}", f"skybell/claims/{BACK}"})
    assert claims == {
        f"skybell/claims/{FRONT}": b"skybell-bridge-east",
        f"skybell/claims/{BACK}": b"skybell-bridge-west",
    }
    assert await metric(east, "skybell_bridge_mqtt_claim_conflicts") == 0
    assert await metric(west, "skybell_bridge_mqtt_claim_conflicts") == 0


@needs_mosquitto
async def test_two_instances_claiming_one_doorbell_both_log_it(
    broker: Broker,
    make_bridge: BridgeFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "bridge.mqtt.claims")
    east = await make_bridge(**share(tmp_path, "east", "front-door", **mqtt_env(broker)))
    async with watching(broker, f"skybell/claims/{FRONT}") as watcher:
        await watcher.wait_payload(f"skybell/claims/{FRONT}", b"skybell-bridge-east")
    west = await make_bridge(
        **share(tmp_path, "west", "front-door,back-garden", **mqtt_env(broker))
    )

    def conflicts() -> list[str]:
        return [r.getMessage() for r in caplog.records if "claimed by two" in r.getMessage()]

    for _ in range(200):
        if len(conflicts()) >= 2:
            break
        await asyncio.sleep(0.1)
    # Each names the doorbell and both instances, itself first.
    first, second = sorted(conflicts())
    assert first.startswith(f"doorbell Front Door ({FRONT})")
    assert "'skybell-bridge-east' and 'skybell-bridge-west'" in first
    assert "'skybell-bridge-west' and 'skybell-bridge-east'" in second
    assert "Back Garden" not in first + second
    assert await metric(east, "skybell_bridge_mqtt_claim_conflicts") == 1
    assert await metric(west, "skybell_bridge_mqtt_claim_conflicts") == 1

    # An orderly stop clears its claims; the other instance claims its doorbell again.
    await west.close()
    async with watching(broker, "skybell/claims/+") as watcher:
        await watcher.wait_payload(f"skybell/claims/{FRONT}", b"skybell-bridge-east")
        await asyncio.sleep(0.5)
        assert watcher.last(f"skybell/claims/{BACK}") is None  # cleared, not retained


async def test_a_stale_webhook_of_another_instance_doorbell_is_ignored_quietly(
    make_bridge: BridgeFactory,
    world: SimWorld,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = {"SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET": "hook-secret"}
    east = await make_bridge(**share(tmp_path, "east", "front-door", **hooks))
    west = await make_bridge(**share(tmp_path, "west", "back-garden", **hooks))
    # Left over from before the split: the front door still calls west.
    await add_webhook_triggers(
        east.client, east.app[DEVICES], webhook_url(west.http_url), secret=Secret("hook-secret")
    )
    press = await world.press("Front Door")
    assert [w["status"] for w in press.webhooks] == [202]
    assert await events_of(west) == []
    assert not [r for r in caplog.records if "on the account" in r.getMessage()]
