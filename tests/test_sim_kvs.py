"""The simulated KVS signaling service's own behaviour: limits, timers, faults, the master."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from bridge.kvs import (
    Closed,
    KvsViewer,
    SignalingAuthError,
    SignalingError,
    StatusResponse,
    presign_wss,
)
from bridge.kvs.messages import decode_received, encode_answer
from bridge.sim.kvs_master import SimKvsMaster, master_url_factory
from tests.test_kvs import Env, _make_env


@pytest.fixture
async def env(aiohttp_server: Any) -> AsyncIterator[Env]:
    async for made in _make_env(aiohttp_server):
        yield made


async def _echo(viewer: str, sdp: str) -> str:
    return f"answer to {viewer}"


def _master(env: Env) -> SimKvsMaster:
    factory = master_url_factory(env.endpoint, env.arn, env.sim.region, env.creds, env.clock)
    return SimKvsMaster(env.session, factory, _echo, retry_s=0.05)


async def _raw_master(env: Env) -> aiohttp.ClientWebSocketResponse:
    url = presign_wss(
        env.endpoint, env.arn, None, env.sim.region, env.creds["AccessKeyId"],
        env.creds["SecretAccessKey"], env.creds["SessionToken"], now=env.clock(),
    )  # fmt: skip
    return await env.session.ws_connect(URL(url, encoded=True))


async def test_oversized_or_invalid_messages_get_a_status_response(env: Env) -> None:
    url = env.viewer_url("raw-viewer")
    async with env.session.ws_connect(URL(url, encoded=True)) as ws:
        big = json.dumps(
            {"action": "SDP_OFFER", "messagePayload": "A" * 10_004, "correlationId": "x"}
        )
        await ws.send_str(big)
        status = decode_received(await ws.receive_str(timeout=5))
        assert isinstance(status, StatusResponse)
        assert (status.status_code, status.correlation_id) == ("400", "x")
        await ws.send_str("not json")
        status = decode_received(await ws.receive_str(timeout=5))
        assert isinstance(status, StatusResponse)
        assert status.error_type == "InvalidArgumentException"


async def test_master_answer_to_an_absent_viewer_gets_a_status_response(env: Env) -> None:
    ws = await _raw_master(env)
    await ws.send_str(encode_answer("sdp", "nobody", correlation_id="m1"))
    status = decode_received(await ws.receive_str(timeout=5))
    assert isinstance(status, StatusResponse)
    assert status.correlation_id == "m1"
    await ws.close()


async def test_refusing_connections_for_a_while(env: Env) -> None:
    env.sim.refuse_connections(30)
    with pytest.raises(SignalingAuthError):
        await KvsViewer(env.session).connect(env.viewer_url("v"))
    env.clock.advance(31)
    viewer = KvsViewer(env.session)
    await viewer.connect(env.viewer_url("v"))
    await viewer.close()


async def test_unknown_channel_is_refused(env: Env) -> None:
    url = presign_wss(
        env.endpoint, env.arn + "-other", "v", env.sim.region, env.creds["AccessKeyId"],
        env.creds["SecretAccessKey"], env.creds["SessionToken"], now=env.clock(),
    )  # fmt: skip
    with pytest.raises(SignalingAuthError):
        await KvsViewer(env.session).connect(url)
    assert env.sim.rejections == ["unknown channel"]


async def test_eleventh_viewer_is_turned_away_as_transient(env: Env) -> None:
    master = _master(env)
    master.start()
    await master.wait_connected()
    viewers = []
    for n in range(10):
        viewer = await env.viewer(f"v{n}")
        await viewer.send_offer("offer")
        await viewer.wait_answer(timeout=5)  # now the service surely counts it
        viewers.append(viewer)
    with pytest.raises(SignalingError) as caught:
        await KvsViewer(env.session).connect(env.viewer_url("v10"))
    assert caught.value.status == 429
    assert not isinstance(caught.value, SignalingAuthError)
    for viewer in viewers:
        await viewer.close()
    await master.close()


async def test_dropped_viewer_sees_closed(env: Env) -> None:
    master = _master(env)
    master.start()
    await master.wait_connected()
    viewer = await env.viewer("v1")
    await viewer.send_offer("offer")
    await viewer.wait_answer(timeout=5)
    assert env.sim.drop_viewer(env.arn, "v1")
    event = await viewer.next_event(timeout=5)
    assert isinstance(event, Closed)
    assert not viewer.connected
    await viewer.close()
    await master.close()


async def test_master_reconnects_after_a_drop(env: Env) -> None:
    master = _master(env)
    master.start()
    await master.wait_connected()
    assert env.sim.drop_master(env.arn)
    await master.wait_connected(connects=2)
    viewer = await env.viewer("after-drop")
    await viewer.send_offer("offer")
    assert (await viewer.wait_answer(timeout=5)).sdp == "answer to after-drop"
    await viewer.close()
    await master.close()
    await master.close()


async def test_idle_connections_are_closed(aiohttp_server: Any) -> None:
    async for env in _make_env(aiohttp_server, idle_timeout_s=0.05):
        viewer = await env.viewer()
        event = await viewer.next_event(timeout=5)
        assert event == Closed("closed by the service", 1000)
        await viewer.close()


async def test_connection_life_is_capped(aiohttp_server: Any) -> None:
    async for env in _make_env(aiohttp_server, max_life_s=0.05):
        viewer = await env.viewer()
        assert isinstance(await viewer.next_event(timeout=5), Closed)
        await viewer.close()


async def test_same_client_id_replaces_the_older_connection(env: Env) -> None:
    master = _master(env)
    master.start()
    await master.wait_connected()
    first = await env.viewer("twin")
    await first.send_offer("offer")
    await first.wait_answer(timeout=5)
    second = await env.viewer("twin")
    assert isinstance(await first.next_event(timeout=5), Closed)
    await second.send_offer("offer")
    assert (await second.wait_answer(timeout=5)).sdp == "answer to twin"
    assert env.sim.viewer_ids(env.arn) == ["twin"]
    await first.close()
    await second.close()
    await master.close()
