"""The KVS signaling viewer and presigner against the simulated signaling service on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.kvs import (
    MAX_PAYLOAD_B64,
    Closed,
    GoAway,
    GoAwayNotice,
    KvsCredentials,
    KvsViewer,
    Malformed,
    PayloadTooLarge,
    RemoteCandidate,
    SdpAnswer,
    SignalingAuthError,
    SignalingClosed,
    SignalingError,
    SignalingStatusError,
    SignalingTimeout,
    StatusResponse,
    choose_signed_url,
    is_fresh,
    new_client_id,
    presign_wss,
)
from bridge.kvs.messages import decode_received, encode_candidate, encode_offer
from bridge.sim.kvs import SimKvs
from bridge.sim.kvs_master import SimKvsMaster, master_url_factory

START = datetime(2024, 2, 29, 17, 31, 11, tzinfo=UTC)


class KvsClock:
    """The signing and verifying clock, moved by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Env:
    sim: SimKvs
    clock: KvsClock
    session: aiohttp.ClientSession
    endpoint: str
    arn: str
    creds: dict[str, str]
    offers: list[tuple[str, str]] = field(default_factory=list)
    # What the master fixture does with an offer, when a test needs more than an echo.
    answer_with: Callable[[str, str], Awaitable[str]] | None = None
    master_candidates: asyncio.Queue[tuple[str, str, str | None, int | None]] = field(
        default_factory=asyncio.Queue
    )

    def viewer_url(self, client_id: str, **kw: Any) -> str:
        kw.setdefault("now", self.clock())
        return presign_wss(
            self.endpoint,
            self.arn,
            client_id,
            self.sim.region,
            self.creds["AccessKeyId"],
            self.creds["SecretAccessKey"],
            self.creds["SessionToken"],
            **kw,
        )

    async def viewer(self, client_id: str | None = None) -> KvsViewer:
        viewer = KvsViewer(self.session)
        await viewer.connect(self.viewer_url(client_id or new_client_id()))
        return viewer


async def _make_env(aiohttp_server: Any, **sim_kw: Any) -> AsyncIterator[Env]:
    clock = KvsClock()
    sim = SimKvs(clock=clock, **sim_kw)
    server = await aiohttp_server(sim.app())
    base = str(server.make_url("")).rstrip("/")
    arn = sim.create_channel("1817380863_0579ce92")
    async with aiohttp.ClientSession() as session:
        yield Env(sim, clock, session, sim.endpoint(base), arn, sim.issue_credentials(arn))


@pytest.fixture
async def env(aiohttp_server: Any) -> AsyncIterator[Env]:
    async for made in _make_env(aiohttp_server):
        yield made


@pytest.fixture
async def master(env: Env) -> AsyncIterator[SimKvsMaster]:
    async def on_offer(viewer: str, sdp: str) -> str:
        env.offers.append((viewer, sdp))
        if env.answer_with is not None:
            return await env.answer_with(viewer, sdp)
        return f"answer for {viewer} to {sdp}"

    async def on_candidate(viewer: str, cand: str, mid: str | None, index: int | None) -> None:
        await env.master_candidates.put((viewer, cand, mid, index))

    factory = master_url_factory(env.endpoint, env.arn, env.sim.region, env.creds, env.clock)
    m = SimKvsMaster(env.session, factory, on_offer, on_candidate)
    m.start()
    await m.wait_connected()
    yield m
    await m.close()


# ---- presigning -----------------------------------------------------------------------------


def test_presign_carries_channel_client_and_299s_expiry(env: Env) -> None:
    url = env.viewer_url("viewer-1")
    assert url.startswith(env.endpoint + "?")  # the path as given is the path signed
    for part in ("X-Amz-ChannelARN=arn%3Aaws%3Akinesisvideo", "X-Amz-ClientId=viewer-1"):
        assert part in url
    assert "X-Amz-Expires=299" in url
    assert is_fresh(url, START)
    assert not is_fresh(url, START + timedelta(seconds=270))  # inside the 30 s margin
    master_url = presign_wss(env.endpoint, env.arn, None, "us-east-1", "AKID", "secret!", None)
    assert "X-Amz-ClientId" not in master_url
    assert "X-Amz-Security-Token" not in master_url


async def test_presign_round_trip_accepted(env: Env) -> None:
    viewer = await env.viewer()
    assert viewer.connected
    assert env.sim.rejections == []
    await viewer.close()


async def test_expired_presign_refused_then_represign_succeeds(env: Env) -> None:
    old = env.viewer_url("viewer-1", now=START - timedelta(seconds=300))
    viewer = KvsViewer(env.session)
    with pytest.raises(SignalingAuthError) as caught:
        await viewer.connect(old)
    assert caught.value.status == 403
    assert env.sim.rejections == ["signature expired"]
    # The caller's recovery: choose_signed_url sees the stale URL and presigns afresh.
    fresh = choose_signed_url(
        old,
        env.endpoint,
        env.arn,
        "viewer-1",
        env.sim.region,
        KvsCredentials.from_cloud(env.creds),
        env.clock(),
    )
    assert fresh != old
    await viewer.connect(fresh)
    assert viewer.connected
    await viewer.close()


async def test_botocore_default_expiry_is_refused(env: Env) -> None:
    with pytest.raises(SignalingAuthError):
        await KvsViewer(env.session).connect(env.viewer_url("v", expires=3600))
    assert "over-long" in env.sim.rejections[-1]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda u: u[:-1] + ("0" if u[-1] != "0" else "1"), "signature does not match"),
        (lambda u: u.replace("X-Amz-ClientId=v", "X-Amz-ClientId=w"), "signature does not match"),
        (lambda u: u.replace("X-Amz-Credential=ASIA", "X-Amz-Credential=AKIA"), "unknown access"),
    ],
    ids=["signature", "client-id", "access-key"],
)
async def test_tampered_presign_is_refused(env: Env, tamper: Any, reason: str) -> None:
    with pytest.raises(SignalingAuthError):
        await KvsViewer(env.session).connect(tamper(env.viewer_url("v")))
    assert env.sim.rejections[-1].startswith(reason)


async def test_wrong_secret_and_expired_credentials_are_refused(env: Env) -> None:
    bad = presign_wss(
        env.endpoint, env.arn, "v", "us-east-1", env.creds["AccessKeyId"], "not-the-secret",
        env.creds["SessionToken"], now=env.clock(),
    )  # fmt: skip
    with pytest.raises(SignalingAuthError):
        await KvsViewer(env.session).connect(bad)
    assert env.sim.rejections[-1] == "signature does not match"
    env.clock.advance(3601)  # the credentials were issued for an hour
    with pytest.raises(SignalingAuthError):
        await KvsViewer(env.session).connect(env.viewer_url("v"))
    assert env.sim.rejections[-1] == "temporary credentials expired"


def test_choose_signed_url_prefers_a_fresh_matching_cloud_url(env: Env) -> None:
    creds = KvsCredentials.from_cloud(env.creds)
    cloud = env.viewer_url("viewer-1")
    pick = choose_signed_url(cloud, env.endpoint, env.arn, "viewer-1", "us-east-1", creds, START)
    assert pick == cloud
    # The documented sample's signedWSS names no channel: it cannot be used as is.
    fields = env.sim.live_call_fields(
        "1817380863_0579ce92", "http://127.0.0.1:1", bare_signed_wss=True
    )
    bare = fields["signedWSS"]
    assert "X-Amz-ChannelARN" not in bare
    pick = choose_signed_url(bare, env.endpoint, env.arn, "viewer-1", "us-east-1", creds, START)
    assert pick != bare
    assert "X-Amz-ChannelARN" in pick
    expired = KvsCredentials.from_cloud({**env.creds, "Expiration": "2024-02-29T17:00:00.000Z"})
    with pytest.raises(SignalingAuthError):
        choose_signed_url(None, env.endpoint, env.arn, "v", "us-east-1", expired, START)


async def test_live_call_fields_signed_wss_connects(env: Env) -> None:
    base = env.endpoint.replace("ws", "http", 1).removesuffix(env.sim.base_path)
    fields = env.sim.live_call_fields("another-device", base, "viewer-9")
    viewer = KvsViewer(env.session)
    await viewer.connect(fields["signedWSS"])
    await viewer.close()


async def test_handshake_timeout_and_unreachable_are_transient(aiohttp_server: Any) -> None:
    never = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await never.wait()  # a service that accepts TCP and never answers the upgrade
        return web.Response()

    app = web.Application()
    app.router.add_get("/kvs", stall)
    server = await aiohttp_server(app)
    url = presign_wss(
        str(server.make_url("/kvs")).replace("http", "ws", 1), "arn", "v", "us-east-1",
        "AKID", "secret-key", None,
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        with pytest.raises(SignalingTimeout) as caught:
            await KvsViewer(session, handshake_timeout=0.05).connect(url)
        assert caught.value.transient
        await server.close()
        with pytest.raises(SignalingError) as refused:
            await KvsViewer(session).connect(url)
        assert refused.value.transient
        assert not isinstance(refused.value, SignalingAuthError)


# ---- relay ----------------------------------------------------------------------------------


async def test_offer_answer_relay(env: Env, master: SimKvsMaster) -> None:
    viewer = await env.viewer("viewer-1")
    await viewer.send_offer("v=0 fake offer", correlation_id="c1")
    answer = await viewer.wait_answer(timeout=5)
    assert answer.sdp == "answer for viewer-1 to v=0 fake offer"
    assert answer.candidates == []
    assert env.offers == [("viewer-1", "v=0 fake offer")]
    await viewer.close()


async def test_trickled_candidates_both_ways(env: Env, master: SimKvsMaster) -> None:
    async def on_offer(viewer_id: str, sdp: str) -> str:
        # The doorbell may trickle before it answers: wait_answer must keep those.
        await master.send_candidate(viewer_id, "candidate:early", "0", 0)
        return "answer"

    env.answer_with = on_offer
    viewer = await env.viewer("viewer-1")
    await viewer.send_offer("offer")
    await viewer.send_candidate("candidate:from-viewer", "0", 0)
    answer = await viewer.wait_answer(timeout=5)
    assert [c.candidate for c in answer.candidates] == ["candidate:early"]
    assert await env.master_candidates.get() == ("viewer-1", "candidate:from-viewer", "0", 0)
    await master.send_candidate("viewer-1", "candidate:late", "1", 1)
    late = await viewer.next_event(timeout=5)
    assert late == RemoteCandidate("candidate:late", "1", 1, None)
    await viewer.close()


async def test_offer_before_master_is_held_until_it_connects(env: Env) -> None:
    viewer = await env.viewer("early-viewer")
    await viewer.send_offer("offer")

    async def on_offer(viewer_id: str, sdp: str) -> str:
        return f"late answer to {viewer_id}"

    factory = master_url_factory(env.endpoint, env.arn, env.sim.region, env.creds, env.clock)
    master = SimKvsMaster(env.session, factory, on_offer)
    master.start()
    answer = await viewer.wait_answer(timeout=5)
    assert answer.sdp == "late answer to early-viewer"
    await viewer.close()
    await master.close()


async def test_status_response_is_surfaced(aiohttp_server: Any) -> None:
    async for env in _make_env(aiohttp_server, no_master="status"):
        viewer = await env.viewer()
        await viewer.send_offer("offer", correlation_id="corr-7")
        event = await viewer.next_event(timeout=5)
        assert isinstance(event, StatusResponse)
        assert event.is_error
        assert event.correlation_id == "corr-7"
        await viewer.send_offer("offer", correlation_id="corr-8")
        with pytest.raises(SignalingStatusError) as caught:
            await viewer.wait_answer(timeout=5)
        assert caught.value.correlation_id == "corr-8"
        await viewer.close()


async def test_go_away_is_surfaced_then_closed(env: Env, master: SimKvsMaster) -> None:
    viewer = await env.viewer("viewer-1")
    await viewer.send_offer("offer")
    await viewer.wait_answer(timeout=5)  # the service now surely has this viewer
    assert await env.sim.send_go_away(env.arn, close_after_s=0) == 1
    assert isinstance(await viewer.next_event(timeout=5), GoAwayNotice)
    closed = await viewer.next_event(timeout=5)
    assert isinstance(closed, Closed)
    assert closed.code == 1001
    with pytest.raises(SignalingClosed):
        await viewer.send_offer("again")
    await viewer.close()


async def test_go_away_ends_wait_answer(env: Env, master: SimKvsMaster) -> None:
    async def on_offer(viewer_id: str, sdp: str) -> str:
        await env.sim.send_go_away(env.arn)
        return "too late"

    env.answer_with = on_offer
    viewer = await env.viewer()
    await viewer.send_offer("offer")
    with pytest.raises(GoAway):
        await viewer.wait_answer(timeout=5)
    await viewer.close()


async def test_junk_frames_are_ignored(env: Env, master: SimKvsMaster) -> None:
    async def on_offer(viewer_id: str, sdp: str) -> str:
        await env.sim.send_junk(env.arn)  # arrives before the answer, on the same socket
        return "the answer"

    env.answer_with = on_offer
    viewer = await env.viewer("junk-viewer")
    await viewer.send_offer("offer")
    answer = await viewer.wait_answer(timeout=5)
    assert answer.sdp == "the answer"
    assert viewer.connected
    # A candidate after the junk still gets through: the reader survived all of it.
    await master.send_candidate("junk-viewer", "candidate:ok", "0", 0)
    assert (await viewer.next_event(timeout=5)) == RemoteCandidate("candidate:ok", "0", 0, None)
    await viewer.close()


async def test_payload_limit_is_enforced_before_sending(env: Env, master: SimKvsMaster) -> None:
    viewer = await env.viewer("viewer-1")
    with pytest.raises(PayloadTooLarge) as caught:
        await viewer.send_offer("a=x\r\n" * 2000)
    assert caught.value.limit == MAX_PAYLOAD_B64
    # Nothing went out and the socket still works.
    await viewer.send_offer("small")
    assert (await viewer.wait_answer(timeout=5)).sdp == "answer for viewer-1 to small"
    assert env.offers == [("viewer-1", "small")]
    await viewer.close()


async def test_viewers_are_isolated(env: Env, master: SimKvsMaster) -> None:
    viewers = {name: await env.viewer(name) for name in ("v1", "v2", "v3")}
    for name, viewer in viewers.items():
        await viewer.send_offer(f"offer-{name}")
    for name, viewer in viewers.items():
        assert (await viewer.wait_answer(timeout=5)).sdp == f"answer for {name} to offer-{name}"
    # Per-socket order: had v2's candidate leaked to v1 or v3, it would arrive before theirs.
    for name in ("v2", "v1", "v3"):
        await master.send_candidate(name, f"candidate:{name}", "0", 0)
    for name, viewer in viewers.items():
        event = await viewer.next_event(timeout=5)
        assert isinstance(event, RemoteCandidate)
        assert event.candidate == f"candidate:{name}"
    for viewer in viewers.values():
        await viewer.close()


async def test_close_is_idempotent(env: Env) -> None:
    never_connected = KvsViewer(env.session)
    await never_connected.close()
    await never_connected.close()
    viewer = await env.viewer()
    await viewer.close()
    await viewer.close()
    assert not viewer.connected
    assert await viewer.next_event(timeout=1) == Closed("closed by us", 1000)
    assert [e async for e in viewer] == [Closed("closed by us", 1000)]
    with pytest.raises(SignalingClosed):
        await viewer.send_candidate("candidate:x", "0", 0)


async def test_secrets_never_reach_bridge_logs(
    env: Env, master: SimKvsMaster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = env.viewer_url("viewer-1")
    with pytest.raises(SignalingAuthError):
        await KvsViewer(env.session).connect(url[:-1] + "x")
    viewer = await env.viewer("viewer-1")
    await viewer.send_offer("offer")
    await viewer.wait_answer(timeout=5)
    await viewer.close()
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bridge."))
    assert "channel=" in ours
    signature = url.rsplit("X-Amz-Signature=", 1)[1]
    for secret in (env.creds["SecretAccessKey"], env.creds["SessionToken"], signature):
        assert secret not in ours
    assert "X-Amz-Signature" not in ours


# ---- wire format ----------------------------------------------------------------------------


def _b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def test_viewer_frames_have_no_recipient() -> None:
    offer = json.loads(encode_offer("v=0", "c1"))
    assert set(offer) == {"action", "messagePayload", "correlationId"}
    assert offer["action"] == "SDP_OFFER"
    payload = json.loads(base64.b64decode(offer["messagePayload"]))
    assert payload == {"type": "offer", "sdp": "v=0"}
    cand = json.loads(encode_candidate("candidate:1", "0", 0))
    assert "recipientClientId" not in cand
    assert json.loads(base64.b64decode(cand["messagePayload"])) == {
        "candidate": "candidate:1",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }


@pytest.mark.parametrize(
    "frame",
    ["", "  ", "nope", "[]", "42", b"\x00", '{"x": 1}', '{"messageType": "NEW_KIND"}'],
)
def test_noise_frames_decode_to_none(frame: str | bytes) -> None:
    assert decode_received(frame) is None


def test_received_messages_decode() -> None:
    answer = {"messageType": "SDP_ANSWER", "messagePayload": _b64({"type": "answer", "sdp": "s"})}
    assert decode_received(json.dumps({**answer, "senderClientId": "m"})) == SdpAnswer("s", "m")
    unpadded = _b64({"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 0}).rstrip("=")
    cand = decode_received(json.dumps({"messageType": "ICE_CANDIDATE", "messagePayload": unpadded}))
    assert cand == RemoteCandidate("c", "0", 0, None)
    status = decode_received(
        '{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"c","errorType":'
        '"InvalidArgumentException","statusCode":400,"description":"bad"}}'
    )
    assert status == StatusResponse("c", "InvalidArgumentException", "400", "bad")
    bad = decode_received('{"messageType":"SDP_ANSWER","messagePayload":"!!"}')
    assert isinstance(bad, Malformed)
    assert bad.message_type == "SDP_ANSWER"
    assert isinstance(decode_received('{"messageType":"GO_AWAY"}'), GoAwayNotice)
