"""``GET /metrics`` end to end: a bridge on the simulator, real traffic, the text format parsed
back with prometheus_client's own parser; and its auth (password, bearer token, lockout)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bridge.redact import Secret
from bridge.routes.common import DEVICES
from bridge.sim.world import SimWorld
from bridge.skybell.triggers import add_webhook_triggers, webhook_url

from .serve_util import BridgeFactory, basic, get_json

HOOK_SECRET = "hook-secret"
RULES = """
[[rules]]
name = "porch light"
on = ["doorbell"]
devices = ["front-door"]
do = [{ scene = "Porch light on" }]
"""
TOKEN = "scrape-me-0123456789abcdef"
AUTH = {
    "SKYBELL_BRIDGE_SERVER_USERNAME": "admin",
    "SKYBELL_BRIDGE_SERVER_PASSWORD": "door-s3cret",
}

Samples = dict[str, list[Sample]]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape(url: str, **headers: str) -> Samples:
    """Every sample of ``url``/metrics by sample name; the families' types are checked too."""
    async with aiohttp.ClientSession() as http, http.get(url + "metrics", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith(("skybell_bridge_", "process_", "python_")), family.name
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [s for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0].value


async def until(
    url: str, ready: Callable[[Samples], bool], *, timeout: float = 20.0, **headers: str
) -> Samples:
    """Scrape until ``ready`` holds."""
    async with asyncio.timeout(timeout):
        while True:
            samples = await scrape(url, **headers)
            if ready(samples):
                return samples
            await asyncio.sleep(0.1)


async def test_metrics_show_streams_events_rules_and_clips_moving(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    udp_port = _free_udp_port()
    world.presser.udp_target = ("127.0.0.1", udp_port)
    bridge = await make_bridge(
        RULES,
        SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET=HOOK_SECRET,
        SKYBELL_BRIDGE_EVENTS_UDP_ENABLED="true",
        SKYBELL_BRIDGE_EVENTS_UDP_HOST="127.0.0.1",
        SKYBELL_BRIDGE_EVENTS_UDP_PORT=str(udp_port),
        SKYBELL_BRIDGE_RECORD_PREROLL="0",
        SKYBELL_BRIDGE_RECORD_POSTROLL="1",
    )
    url = bridge.http_url
    front = [d for d in bridge.app[DEVICES] if d.slug == "front-door"]
    await add_webhook_triggers(bridge.client, front, webhook_url(url), secret=Secret(HOOK_SECRET))

    before = await scrape(url)
    for stream in ("front-door", "back-garden"):
        assert value(before, "skybell_bridge_stream_state", stream=stream, state="idle") == 1
        assert value(before, "skybell_bridge_stream_state", stream=stream, state="live") == 0
        for output in ("rtsp", "hls", "mjpeg", "webrtc", "recorder"):
            assert value(before, "skybell_bridge_stream_viewers", stream=stream, output=output) == 0
    assert value(before, "skybell_bridge_stream_received_bytes_total", stream="front-door") == 0
    assert (
        value(before, "skybell_bridge_stream_first_frame_seconds_count", stream="front-door") == 0
    )
    assert value(before, "skybell_bridge_switchbot_calls_remaining") > 0
    assert value(before, "skybell_bridge_clips_recorded_total") == 0
    # The library's process figures, from the app's own registry.
    assert value(before, "process_resident_memory_bytes") > 0
    assert "python_gc_objects_collected_total" in before
    assert "python_info" in before

    # A viewer: the MJPEG stream keeps one subscriber on the hub while it is read.
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "api/stream.mjpeg?src=front-door&width=320") as viewer,
    ):
        assert viewer.status == 200
        await viewer.content.readexactly(1024)
        live = await until(
            url,
            lambda s: (
                value(s, "skybell_bridge_stream_state", stream="front-door", state="live") == 1
            ),
        )
        assert (
            value(live, "skybell_bridge_stream_viewers", stream="front-door", output="mjpeg") == 1
        )
        assert (
            value(live, "skybell_bridge_stream_viewers", stream="back-garden", output="mjpeg") == 0
        )
        assert (
            value(live, "skybell_bridge_stream_first_frame_seconds_count", stream="front-door") == 1
        )
        first = value(live, "skybell_bridge_stream_first_frame_seconds_sum", stream="front-door")
        assert 0 < first < 30
        inf = value(
            live, "skybell_bridge_stream_first_frame_seconds_bucket", stream="front-door", le="+Inf"
        )
        assert inf == 1
        got = value(live, "skybell_bridge_stream_received_bytes_total", stream="front-door")
        assert got > 0
        assert (
            value(
                live,
                "skybell_bridge_stream_keyframe_requests_total",
                stream="front-door",
                kind="pli",
            )
            >= 0
        )
        await viewer.content.readexactly(4096)
        later = await until(
            url,
            lambda s: (
                value(s, "skybell_bridge_stream_received_bytes_total", stream="front-door") > got
            ),
        )
        assert value(later, "skybell_bridge_stream_reconnects_total", stream="front-door") == 0

        # A press: UDP, the webhook and the poller report it; the bus keeps one event, the rule
        # runs its scene (one SwitchBot call) and the recorder makes a clip.
        await world.press("Front Door")
        after = await until(
            url,
            lambda s: (
                value(s, "skybell_bridge_clips_recorded_total") == 1
                and value(s, "skybell_bridge_rule_actions_total", rule="porch light", outcome="ok")
                == 1
                and "skybell_bridge_events_total" in s
                and any(x.labels["source"] == "webhook" for x in s["skybell_bridge_events_total"])
            ),
        )
    assert value(after, "skybell_bridge_events_total", source="udp", type="doorbell") == 1
    assert value(after, "skybell_bridge_events_total", source="webhook", type="doorbell") == 1
    assert value(after, "skybell_bridge_event_duplicates_total") >= 1
    assert value(after, "skybell_bridge_rule_fired_total", rule="porch light") == 1
    assert (
        value(after, "skybell_bridge_rule_actions_total", rule="porch light", outcome="failed") == 0
    )
    assert (
        value(after, "skybell_bridge_rule_skipped_total", rule="porch light", reason="cooldown")
        == 0
    )
    remaining = value(after, "skybell_bridge_switchbot_calls_remaining")
    assert remaining < value(before, "skybell_bridge_switchbot_calls_remaining")
    assert value(after, "skybell_bridge_switchbot_calls_used") >= 1
    assert value(after, "skybell_bridge_clips_failed_total") == 0
    assert value(after, "skybell_bridge_clips_recorded_bytes_total") > 0
    # No S3 and no MQTT on this bridge: their families are not made up.
    assert "skybell_bridge_s3_queue_depth" not in after
    assert "skybell_bridge_mqtt_connected" not in after


async def test_metrics_follow_the_api_auth_plus_a_bearer_token(
    make_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bridge = await make_bridge(**AUTH, SKYBELL_BRIDGE_SERVER_METRICS_TOKEN=TOKEN)
    url = bridge.http_url + "metrics"
    async with aiohttp.ClientSession() as http:

        async def status(target: str = url, **headers: str) -> int:
            async with http.get(target, headers=headers) as resp:
                return resp.status

        assert await status() == 401
        assert await status(**basic("admin", "door-s3cret")) == 200
        assert await status(Authorization=f"Bearer {TOKEN}") == 200
        # The token grants /metrics only: the API still wants the password.
        assert await status(bridge.http_url + "api/streams", Authorization=f"Bearer {TOKEN}") == 401
        assert await status(Authorization="Bearer wrong") == 401
        assert await status(Authorization=f"Basic {TOKEN}") == 401
    assert await scrape(bridge.http_url, Authorization=f"Bearer {TOKEN}")
    assert TOKEN not in caplog.text


async def test_wrong_metrics_tokens_lock_out_like_wrong_passwords(
    make_bridge: BridgeFactory,
) -> None:
    bridge = await make_bridge(**AUTH, SKYBELL_BRIDGE_SERVER_METRICS_TOKEN=TOKEN)
    # A second bridge in the same process: each app has its own registry, nothing collides.
    # Without a token configured, a bearer header is just a wrong credential.
    other = await make_bridge(**AUTH)
    async with aiohttp.ClientSession() as http:

        async def get(target: str, **headers: str) -> aiohttp.ClientResponse:
            async with http.get(target, headers=headers) as resp:
                await resp.read()
                return resp

        assert (
            await get(other.http_url + "metrics", Authorization=f"Bearer {TOKEN}")
        ).status == 401
        assert (
            await get(other.http_url + "metrics", **basic("admin", "door-s3cret"))
        ).status == 200
        # The limiter is per bridge here (each has its own): five wrong guesses are free.
        url = bridge.http_url + "metrics"
        for _ in range(5):
            assert (await get(url, Authorization="Bearer guess")).status == 401
        locked = await get(url, Authorization="Bearer guess")
        assert locked.status == 429
        assert int(locked.headers["Retry-After"]) >= 1
        # While locked out nothing is checked, the right token and password included; the
        # same count covers the login form too (one limiter for every way of guessing).
        assert (await get(url, Authorization=f"Bearer {TOKEN}")).status == 429
        assert (await get(url, **basic("admin", "door-s3cret"))).status == 429
        async with http.post(
            bridge.http_url + "api/login", json={"username": "admin", "password": "door-s3cret"}
        ) as resp:
            assert resp.status == 429


async def test_metrics_are_open_like_the_api_without_a_password(
    make_bridge: BridgeFactory,
) -> None:
    bridge = await make_bridge()
    samples = await scrape(bridge.http_url)
    assert value(samples, "skybell_bridge_stream_state", stream="front-door", state="idle") == 1
    assert "skybell_bridge_clips_recording" in samples


async def test_the_s3_queue_depth_counts_clips_waiting_for_upload(
    make_bridge: BridgeFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A clip recorded by a bridge without S3 (a manual clip of a second or so) ...
    first = await make_bridge()
    url = first.http_url
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "api/record?src=front-door") as resp:
            assert resp.status == 202, await resp.text()

        async def seconds() -> float:
            _, body = await get_json(url + "api/record")
            recording: list[dict[str, Any]] = body["recording"]
            return float(recording[0]["seconds"]) if recording else 0.0

        async with asyncio.timeout(20):
            while True:
                if await seconds() >= 1.0:
                    break
                await asyncio.sleep(0.1)
        async with http.post(url + "api/record?src=front-door&action=stop") as resp:
            assert (await resp.json())["stopped"] is True
    assert value(await scrape(url), "skybell_bridge_clips_recorded_total") == 1
    await first.close()

    # ... is queued at once by the next start with S3 on (it uploads existing clips). Fake
    # credentials from the environment only; the endpoint refuses every connection, so the clip
    # stays queued (pending, retried with backoff).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    second = await make_bridge(
        SKYBELL_BRIDGE_S3_ENABLED="true",
        SKYBELL_BRIDGE_S3_BUCKET="clips",
        SKYBELL_BRIDGE_S3_ENDPOINT_URL=dead,
        SKYBELL_BRIDGE_S3_REGION="us-east-1",
    )
    samples = await until(second.http_url, lambda s: value(s, "skybell_bridge_s3_queue_depth") == 1)
    assert value(samples, "skybell_bridge_s3_clips", state="pending") == 1
    assert value(samples, "skybell_bridge_s3_clips", state="done") == 0
