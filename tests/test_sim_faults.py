"""The simulator's fault switches for the soak (scripts/bench/soak.py runs it in another process).

Signaling faults are armed for a channel's next viewer offer, since the bridge closes signaling
once media flows; credentials can be made to expire now; a doorbell can drop its peers or go
silent without a word; the whole set is reachable at ``POST /_sim/doorbells/{id}/fault``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCIceServer

from bridge.kvs import GoAway, KvsViewer, SignalingAuthError, new_client_id
from bridge.kvs.messages import Malformed, ReconnectIceServer
from bridge.media import aiortc_patch
from bridge.media.webrtc_source import WebRtcSource
from bridge.sim.doorbell import SimDoorbellPeer, SimMediaSettings
from bridge.sim.kvs_master import SimKvsMaster
from bridge.sim.media_control import parse_media_changes
from bridge.sim.world import SimWorld
from tests.test_kvs import Env, _make_env
from tests.test_sim_kvs import _master


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])


@pytest.fixture
async def env(aiohttp_server: Any) -> AsyncIterator[Env]:
    async for made in _make_env(aiohttp_server):
        yield made


@pytest.fixture
async def master(env: Env) -> AsyncIterator[SimKvsMaster]:
    m = _master(env)
    m.start()
    await m.wait_connected()
    yield m
    await m.close()


async def test_armed_go_away_answers_the_next_offer_and_then_offers_pass(
    env: Env, master: SimKvsMaster
) -> None:
    env.sim.arm_viewer_fault(env.arn, "go_away")
    viewer = await env.viewer()
    await viewer.send_offer("v=0 first")
    with pytest.raises(GoAway):
        await viewer.wait_answer(5)
    await viewer.close()
    viewer = await env.viewer()  # disarmed: the next offer is answered
    await viewer.send_offer("v=0 second")
    assert (await viewer.wait_answer(5)).sdp.startswith("answer to")
    await viewer.close()


@pytest.mark.parametrize("fault", ["reconnect_ice", "junk"])
async def test_armed_notice_or_junk_comes_before_the_answer(
    env: Env, master: SimKvsMaster, fault: str
) -> None:
    env.sim.arm_viewer_fault(env.arn, fault)
    viewer = await env.viewer()
    await viewer.send_offer("v=0")
    seen = []
    while True:
        event = await viewer.next_event(5)
        seen.append(type(event))
        if type(event).__name__ == "SdpAnswer":
            break
    await viewer.close()
    expected = ReconnectIceServer if fault == "reconnect_ice" else Malformed
    assert expected in seen[:-1]


def test_unknown_viewer_fault_is_refused(env: Env) -> None:
    with pytest.raises(ValueError, match="unknown viewer fault"):
        env.sim.arm_viewer_fault(env.arn, "meteor")


async def test_expired_credentials_refuse_the_next_connection(env: Env) -> None:
    assert env.sim.expire_credentials(env.arn) == 1
    with pytest.raises(SignalingAuthError):
        await KvsViewer(env.session).connect(env.viewer_url(new_client_id()))
    assert env.sim.rejections[-1] == "temporary credentials expired"


async def test_vanished_peer_stays_connected_but_sends_nothing() -> None:
    source = WebRtcSource([])
    doorbell = SimDoorbellPeer(SimMediaSettings(image_quality=0, fps=15))
    received: list[float] = []
    first = asyncio.Event()
    try:
        await source.set_answer(await doorbell.handle_offer(await source.create_offer()))

        async def consume() -> None:
            async for packet in source.packets():
                if packet.kind == "video":
                    received.append(packet.arrival)
                    first.set()

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 20)
        doorbell.vanish()
        await asyncio.sleep(0.3)  # what was in flight
        count = len(received)
        await asyncio.sleep(1.0)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert source.connection_state == "connected"  # no BYE, no close: only silence
    finally:
        await source.close()
        await doorbell.close()
    assert len(received) == count


async def test_fault_route_checks_its_input() -> None:
    world = SimWorld()
    base = await world.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = base + "/_sim/doorbells/Front Door/fault"
            for name in ("drop", "vanish", "expire_credentials", "go_away"):
                async with http.post(url, json={"fault": name}) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["fault"] == name
            async with http.post(url, json={"fault": "meteor"}) as resp:
                assert resp.status == 400
                assert "unknown fault 'meteor'" in (await resp.json())["error"]
            async with http.post(url, data=b"not json") as resp:
                assert resp.status == 400
            async with http.post(base + "/_sim/doorbells/nobody/fault", json={}) as resp:
                assert resp.status == 404
            async with http.post(
                base + "/_sim/faults", json={"server_errors": 1, "server_error_status": 500}
            ) as resp:
                assert resp.status == 200
            async with http.get(base + "/api/v5/devices/") as resp:
                assert resp.status == 500
    finally:
        await world.close()


@pytest.fixture
def turn_port() -> Iterator[int]:
    """coturn on loopback (loopback peers must be allowed explicitly).

    A missing coturn fails rather than skips: scripts/test installs it (scripts/bootstrap
    --test), so its absence is a broken set-up, and a skip would hide the TURN-only path."""
    if shutil.which("turnserver") is None:
        pytest.fail("coturn (turnserver) is not installed: run scripts/bootstrap --test")
    port = free_port()
    turn = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", "--min-port=41000", "--max-port=41200", "--user=t:t",
         "--realm=test", "--lt-cred-mech", "--no-tls", "--no-dtls", "--allow-loopback-peers",
         "--no-cli", "--log-file=stdout", "--simple-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(50):  # it takes a moment to listen
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.1)
        yield port
    finally:
        turn.terminate()
        turn.wait(10)


async def test_relay_only_doorbell_is_reached_through_turn(turn_port: int) -> None:
    port = turn_port
    ice = [RTCIceServer(urls=f"turn:127.0.0.1:{port}?transport=udp", username="t", credential="t")]
    source = WebRtcSource(ice)
    doorbell = SimDoorbellPeer(
        SimMediaSettings(image_quality=0, fps=15, relay_only=True), ice_servers=ice
    )
    try:
        answer = await doorbell.handle_offer(await source.create_offer())
        kinds = {ln.split(" typ ")[1].split()[0] for ln in answer.splitlines() if " typ " in ln}
        assert kinds == {"relay"}
        await source.set_answer(answer)
        packets = source.packets()
        while (await asyncio.wait_for(anext(packets), 20)).kind != "video":
            pass
    finally:
        await source.close()
        await doorbell.close()


def test_relay_only_is_a_media_setting() -> None:
    assert parse_media_changes({"relay_only": True}, SimMediaSettings()) == {"relay_only": True}
    with pytest.raises(ValueError, match="relay_only must be true or false"):
        parse_media_changes({"relay_only": 1}, SimMediaSettings())
