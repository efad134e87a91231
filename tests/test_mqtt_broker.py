"""MQTT when the broker misbehaves: it goes away and comes back, the bridge is killed, the
credentials are refused, and an older run left discovery configs that are gone now."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.mqtt import MqttLink, MqttOptions
from bridge.sim.world import SimWorld

from .mqtt_util import Broker, needs_mosquitto, watching
from .serve_util import BridgeFactory, get_json
from .test_mqtt import RULE, broker, config_topic, expected_configs, mqtt_env, retained

__all__ = ["broker"]  # the fixture, shared with test_mqtt

pytestmark = needs_mosquitto

FRONT_LIVE = "skybell/front-door/live_stream"


class FrameCounter:
    """Reads the bridge's MJPEG stream of a doorbell and counts the pictures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames = 0
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        async with aiohttp.ClientSession() as http, http.get(self.url) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                self.frames += chunk.count(b"--frame\r\n")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def more_within(self, seconds: float) -> bool:
        """Whether new pictures arrive within ``seconds``."""
        start = self.frames
        async with asyncio.timeout(seconds):
            while self.frames <= start:
                assert self._task is not None
                if self._task.done():
                    self._task.result()
                    return False
                await asyncio.sleep(0.1)
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@pytest.fixture
async def password_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    folder = tmp_path / "broker-pw"
    folder.mkdir()
    broker = Broker(folder, users={"bridge": "right-s3cret"})
    await broker.start()
    yield broker
    broker.stop()


@pytest.mark.slow
async def test_a_broker_restart_leaves_video_alone_and_gets_everything_again(
    broker: Broker, make_bridge: BridgeFactory, world: SimWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.mqtt")
    bridge = await make_bridge(**mqtt_env(broker))
    async with watching(broker) as watcher:
        await watcher.wait_payload("skybell/bridge/status", b"online")
        await watcher.wait_payload(FRONT_LIVE, b"idle")
    frames = FrameCounter(bridge.http_url + "api/stream.mjpeg?src=front-door")
    frames.start()
    try:
        assert await frames.more_within(30)
        broker.stop()
        # Video, events and the API go on without the broker.
        await world.press("Front Door")
        for _ in range(3):
            assert await frames.more_within(5)
        status, _ = await get_json(bridge.http_url + "api/health")
        assert status == 200
        await asyncio.sleep(1)
        assert await frames.more_within(5)

        await broker.start()  # empty: persistence is off, so everything must come again
        configs = expected_configs()
        wanted = configs | {FRONT_LIVE, "skybell/front-door/last_event", "skybell/bridge/status"}
        async with watching(broker) as watcher:
            await watcher.wait_payload("skybell/bridge/status", b"online", timeout=45)
            await watcher.wait(lambda: wanted <= {m.topic for m in watcher.messages})
            # The command topics are subscribed again.
            await watcher.publish("skybell/front-door/indoor_chime/set", "OFF")
            await watcher.wait_payload("skybell/front-door/indoor_chime", b"OFF")
        kept = await retained(broker, wanted)
        assert set(kept) == wanted
        # However many retries the outage took: "unavailable" once, "back" once.
        lines = [r.getMessage() for r in caplog.records if r.name == "bridge.mqtt.link"]
        assert sum("unavailable" in line for line in lines) == 1, lines
        assert sum(line.endswith(" back") for line in lines) == 1, lines
        assert kept[FRONT_LIVE] == b"live"  # the MJPEG viewer holds it live
        assert kept["skybell/front-door/last_event"].startswith(b"20")  # the press while away
        assert await frames.more_within(5)
    finally:
        await frames.stop()


@pytest.mark.slow
async def test_the_will_marks_the_bridge_offline_when_it_is_killed(
    broker: Broker, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYBELL_BRIDGE_")}
    env |= {
        "SKYBELL_BRIDGE_SERVER_PORT": "0",
        "SKYBELL_BRIDGE_SERVER_RTSP_PORT": "0",
        "SKYBELL_BRIDGE_MQTT_ENABLED": "true",
        "SKYBELL_BRIDGE_MQTT_URL": broker.url,
    }
    async with watching(broker, "skybell/bridge/status") as watcher:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "serve", cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            await watcher.wait_payload("skybell/bridge/status", b"online", timeout=60)
        finally:
            proc.send_signal(signal.SIGKILL)  # no goodbye: only the broker's will can tell
            await proc.wait()
        await watcher.wait_payload("skybell/bridge/status", b"offline", timeout=30)
    kept = await retained(broker, {"skybell/bridge/status"})
    assert kept == {"skybell/bridge/status": b"offline"}


@pytest.mark.slow
async def test_refused_credentials_are_one_log_line_and_the_bridge_runs_on(
    password_broker: Broker, make_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.mqtt")
    bridge = await make_bridge(
        **mqtt_env(
            password_broker,
            SKYBELL_BRIDGE_MQTT_USERNAME="bridge",
            SKYBELL_BRIDGE_MQTT_PASSWORD="wrong-guess",
        )
    )
    await asyncio.sleep(4.5)  # three attempts: at once, after 1 s, after 2 s more
    lines = [r for r in caplog.records if r.name.startswith("bridge.mqtt")]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.ERROR
    assert lines[0].exc_info is None
    assert "refused the credentials (user bridge)" in lines[0].getMessage()
    assert "wrong-guess" not in caplog.text
    status, streams = await get_json(bridge.http_url + "api/streams")
    assert status == 200
    assert set(streams) == {"front-door", "back-garden"}


async def test_a_password_file_logs_in(
    password_broker: Broker, make_bridge: BridgeFactory, tmp_path: Path
) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("right-s3cret\n")
    config = f'[mqtt]\nusername = "bridge"\npassword_file = "{secret}"\n'
    await make_bridge(config, **mqtt_env(password_broker))
    async with watching(password_broker, username="bridge", password="right-s3cret") as watcher:
        await watcher.wait_payload("skybell/bridge/status", b"online")


async def test_discovery_an_entity_lost_since_the_last_run_is_cleared(
    broker: Broker, make_bridge: BridgeFactory
) -> None:
    old = config_topic("sensor", "0579ce92-72a5-4b1f-8191-e360876705c3_chime_count")
    foreign = config_topic("sensor", "front_door_battery", node="another-bridge")
    rule = config_topic("switch", "bridge_rule_porch_light")
    async with watching(broker) as watcher:
        # A config from an older version, and one of another program under its own node id.
        await watcher.publish(old, '{"name": "Chime count"}', retain=True)
        await watcher.publish(foreign, '{"name": "Battery"}', retain=True)
        first = await make_bridge(RULE, **mqtt_env(broker))
        await watcher.wait_payload(old, b"")  # cleared on the first connect
        await watcher.wait(lambda: watcher.last(rule))
        await first.close()
        await watcher.wait_payload("skybell/bridge/status", b"offline")

        seen_before = len(watcher.messages)
        await make_bridge(**mqtt_env(broker))  # the rule is gone from the config
        await watcher.wait_payload(rule, b"")
        configs = expected_configs()
        await watcher.wait(lambda: configs <= {m.topic for m in watcher.messages[seen_before:]})
    kept = await retained(broker, configs | {foreign})
    assert set(kept) == configs | {foreign}
    async with watching(broker, "homeassistant/+/skybell-bridge/+/config") as ours:
        await ours.wait(lambda: configs <= {m.topic for m in ours.messages})
        await asyncio.sleep(0.5)
        assert {m.topic for m in ours.messages} == configs


async def test_the_queue_keeps_the_newest_messages_until_the_broker_is_there(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path)
    options = MqttOptions(enabled=True, url=broker.url, queue_size=3)
    link = MqttLink(
        options, status_topic="t/bridge/status", subscriptions=[], on_message=lambda *_: None
    )
    try:
        for n in range(5):
            link.publish("t/events", f"event {n}")  # events wait in the queue...
        link.publish("t/state", "latest", retain=True)  # ...states wait in the cache
        assert link.stats() == {"connected": 0, "dropped": 2, "queued": 3}
        await broker.start()
        async with watching(broker) as watcher:
            link.start()  # after the subscriber, which would miss events sent before it
            await watcher.wait(lambda: len(watcher.on("t/events")) == 3)
            await watcher.wait_payload("t/state", b"latest")
            assert [m.payload for m in watcher.on("t/events")] == [
                b"event 2",
                b"event 3",
                b"event 4",
            ]
            assert link.stats() == {"connected": 1, "dropped": 2, "queued": 0}
    finally:
        await link.close()
        broker.stop()


async def test_mqtts_checks_the_broker_against_the_system_cas(
    tmp_path: Path,
    make_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = Broker(tmp_path, tls=True)
    await broker.start()
    try:
        # A CA the system does not know: refused, one line, and the bridge goes on.
        first = await make_bridge(**mqtt_env(broker))
        await asyncio.sleep(1.5)
        lines = [r.getMessage() for r in caplog.records if r.name == "bridge.mqtt.link"]
        assert len(lines) == 1, lines
        assert "certificate verify failed" in lines[0]
        await first.close()
        # The same CA in the system's store (OpenSSL reads SSL_CERT_FILE): connected over TLS.
        assert broker.ca is not None
        monkeypatch.setenv("SSL_CERT_FILE", str(broker.ca))
        await make_bridge(**mqtt_env(broker))
        async with watching(broker, "skybell/bridge/status") as watcher:
            await watcher.wait_payload("skybell/bridge/status", b"online")
    finally:
        broker.stop()
