"""WebRTC output against real aiortc peers playing the browser, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from bridge.media import aiortc_patch
from bridge.media.hub import Hub, LiveCall, Stream
from bridge.media.packet import MediaPacket, iter_nal_units
from bridge.routes.webrtc import WEBRTC, setup, stream_stats
from bridge.webrtc import OfferError, WebRtcOptions, WebRtcOutput
from bridge.webrtc.offer import Offer, choose_audio, choose_video, parse_offer
from bridge.webrtc.tracks import with_parameter_sets

from .app_util import make_app
from .fake_doorbell import HEIGHT, WIDTH, CloudLiveCall, Connector, g711_audio, make_stream

SDP = "application/sdp"


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])
    yield
    aiortc_patch.restrict_host_candidates(None)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds; the state belongs to the code under test."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - nothing to wait on but the condition
            await asyncio.sleep(0.02)


# -- the browser ------------------------------------------------------------------------------


def _caps(kind: str, wanted: Callable[[str], bool]) -> list[Any]:
    caps = RTCRtpReceiver.getCapabilities(kind)
    return [c for c in caps.codecs if wanted(c.mimeType.lower())]


@dataclass
class Browser:
    """A recvonly aiortc peer standing in for a browser; collects what it receives."""

    passthrough: bool = False
    video_codecs: tuple[str, ...] = ("video/h264", "video/vp8", "video/rtx")
    audio_codecs: tuple[str, ...] | None = ("audio/opus", "audio/pcmu", "audio/pcma")
    video: list[tuple[float, Any]] = field(default_factory=list)  # (arrival, frame or packet)
    audio: list[Any] = field(default_factory=list)
    pc: RTCPeerConnection = field(init=False)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        aiortc_patch.install()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video = self.pc.addTransceiver("video", direction="recvonly")
        # H.264 first, like a browser asked to prefer it; order within the list is kept.
        video.setCodecPreferences(
            [c for m in self.video_codecs for c in _caps("video", lambda x, m=m: x == m)]
        )
        self.receivers = [video.receiver]
        if self.audio_codecs is not None:
            audio = self.pc.addTransceiver("audio", direction="recvonly")
            audio.setCodecPreferences(
                [c for m in self.audio_codecs for c in _caps("audio", lambda x, m=m: x == m)]
            )
            self.receivers.append(audio.receiver)
        if self.passthrough:
            for receiver in self.receivers:
                aiortc_patch.enable_passthrough(receiver)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for receiver in self.receivers:
            self.tasks.append(asyncio.create_task(self._read(receiver)))

    async def _read(self, receiver: RTCRtpReceiver) -> None:
        track = receiver.track
        sink = self.video if track.kind == "video" else None
        while True:
            try:
                item = await track.recv()
            except MediaStreamError:
                return
            if sink is not None:
                sink.append((time.monotonic(), item))
            else:
                self.audio.append(item)

    async def wait_video(self, count: int, timeout: float = 15.0) -> None:
        await until(lambda: len(self.video) >= count, timeout)

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# -- the rig ------------------------------------------------------------------------------------


class CountingSession(CloudLiveCall):
    """The fake doorbell, counting the PLIs forwarded by the bridge.

    FIRs are not counted: the hub follows a PLI with a FIR when no keyframe comes within
    0.5 s, and this doorbell's own keyframes come only once a second.
    """

    def __init__(self, duration: float | None, audio: bool) -> None:
        super().__init__(duration, audio)
        self.keyframe_requests = 0

    def request_keyframe(self, kind: str = "pli") -> None:
        self.keyframe_requests += kind == "pli"


@dataclass
class CountingConnector(Connector):
    async def __call__(self) -> LiveCall:
        duration = self.durations.pop(0) if self.durations else None
        session = CountingSession(duration, self.audio)
        self.made.append(session)
        return session


@dataclass
class Rig:
    client: TestClient[Any, Any]
    hub: Hub
    stream: Stream
    connector: Connector
    browsers: list[Browser] = field(default_factory=list)

    async def whep(self, browser: Browser, src: str = "front-door") -> str:
        """POST the browser's offer WHEP-style; returns the session's Location."""
        self.browsers.append(browser)
        resp = await self.client.post(
            f"/api/webrtc?src={src}", data=await browser.offer(), headers={"Content-Type": SDP}
        )
        assert resp.status == 201, await resp.text()
        assert resp.content_type == SDP
        await browser.accept(await resp.text())
        return resp.headers["Location"]

    async def wait_subscribers(self, count: int) -> None:
        await until(lambda: len(self.stream.subscribers) == count)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    async def factory(connector: Connector | None = None, **options: Any) -> Rig:
        connector = connector or Connector()
        hub, stream = make_stream(connector)
        app = make_app(hub, lambda app: setup(app, WebRtcOptions(**options)))
        made.append(Rig(await aiohttp_client(app), hub, stream, connector))
        return made[-1]

    yield factory
    for rig in made:
        for browser in rig.browsers:
            await browser.close()
        await rig.client.app[WEBRTC].close()
        await rig.client.app[WEBRTC].close()  # idempotent
        await rig.hub.close()


def _nal_units(data: bytes) -> list[bytes]:
    return list(iter_nal_units(data))


def _decode_sizes(frames: list[Any]) -> set[tuple[int, int]]:
    return {(f.width, f.height) for f in frames}


# -- media --------------------------------------------------------------------------------------


async def test_whep_viewer_gets_decodable_h264_and_pcmu(make_rig: RigFactory) -> None:
    rig = await make_rig()
    browser = Browser()
    location = await rig.whep(browser)
    assert location.startswith("/api/webrtc/session/")
    await browser.wait_video(10)
    frames = [f for _t, f in browser.video]
    assert _decode_sizes(frames) == {(WIDTH, HEIGHT)}
    await until(lambda: len(browser.audio) >= 10)
    assert {(f.sample_rate, f.samples) for f in browser.audio} == {(8000, 160)}
    info = stream_stats(rig.client.app, rig.stream)["webrtc"]
    assert info["sessions"] == 1
    viewer = info["viewers"][0]
    assert viewer["state"] == "connected"
    assert viewer["audio"] == "pcmu"
    assert viewer["audio_relayed"] is True
    assert viewer["video"]["profile_level_id"] == "42e01f"  # x264 ultrafast: Constrained Baseline
    assert location.rsplit("/", 1)[1] not in json.dumps(info)  # the id is a credential


async def test_passthrough_viewer_receives_the_source_bytes(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.stream.keep_warm(10)
    assert await rig.stream.wait_keyframe(10)
    await asyncio.sleep(0.5)  # the viewer now joins mid-GOP, with a backlog to catch up on
    browser = Browser(passthrough=True)
    await rig.whep(browser)
    await browser.wait_video(25)
    await until(lambda: len(browser.audio) >= 10)
    sent = {bytes(p.data): p for _t, p in rig.connector.made[0].sent_video}
    received: list[MediaPacket] = [p for _t, p in browser.video]
    assert received[0].keyframe
    sps, pps = rig.stream.sps, rig.stream.pps
    for packet in received:
        # Byte-identical NAL units; a keyframe may carry the SPS/PPS the bridge put in front.
        units = _nal_units(packet.data)
        if packet.keyframe and units[:2] == [sps, pps]:
            matches = [s for s in sent if _nal_units(s) in (units, units[2:])]
        else:
            matches = [s for s in sent if _nal_units(s) == units]
        assert matches, "an access unit was altered on the way"
    # The GOP backlog went out squeezed (1 ms steps), then live frames at 15 fps (6000 ticks).
    steps = [b.pts - a.pts for a, b in itertools.pairwise(received)]
    assert steps[0] < 6000
    assert steps.count(6000) >= len(steps) // 2
    source_audio = {bytes(p.data) for p in g711_audio()}
    assert all(p.codec == "pcmu" and bytes(p.data) in source_audio for p in browser.audio)


async def test_go2rtc_json_form_and_audio_the_viewer_cannot_take(make_rig: RigFactory) -> None:
    rig = await make_rig()
    browser = Browser(audio_codecs=("audio/opus",))
    rig.browsers.append(browser)
    resp = await rig.client.post(
        "/api/webrtc?src=front-door", json={"type": "offer", "sdp": await browser.offer()}
    )
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["type"] == "answer"
    await browser.accept(answer["sdp"])
    await browser.wait_video(5)
    assert _decode_sizes([f for _t, f in browser.video]) == {(WIDTH, HEIGHT)}
    viewer = rig.client.app[WEBRTC].stats(rig.stream)["viewers"][0]
    assert viewer["audio_relayed"] is False
    assert "pcmu" in viewer["audio_note"]
    assert browser.audio == []


# -- keyframe requests --------------------------------------------------------------------------


@pytest.mark.slow
async def test_browser_pli_reaches_the_doorbell_rate_limited(make_rig: RigFactory) -> None:
    rig = await make_rig(CountingConnector())
    first, second = Browser(passthrough=True), Browser(passthrough=True)
    await rig.whep(first)
    await rig.whep(second)
    await first.wait_video(1)
    await second.wait_video(1)
    doorbell = rig.connector.made[0]
    assert isinstance(doorbell, CountingSession)

    async def pli(browser: Browser, times: int = 1) -> None:
        for _ in range(times):
            assert await aiortc_patch.request_keyframe(browser.receivers[0])

    await pli(first)  # while joining: the cached keyframe is the answer
    await asyncio.sleep(0.3)
    assert doorbell.keyframe_requests == 0
    await asyncio.sleep(1.2)  # past the join grace
    await pli(first, 5)
    await pli(second, 3)  # another viewer, same second: one keyframe serves both
    await until(lambda: doorbell.keyframe_requests > 0)
    await asyncio.sleep(0.3)
    assert doorbell.keyframe_requests == 1
    await asyncio.sleep(1.0)  # the limit is per second
    await pli(second)
    await until(lambda: doorbell.keyframe_requests > 1)
    assert doorbell.keyframe_requests == 2
    assert rig.client.app[WEBRTC].stats(rig.stream)["keyframes_forwarded"] == 2


# -- leaving ------------------------------------------------------------------------------------


async def test_delete_and_a_vanishing_peer_free_the_stream(make_rig: RigFactory) -> None:
    rig = await make_rig()
    leaving, closing = Browser(passthrough=True), Browser(passthrough=True)
    location = await rig.whep(leaving)
    await rig.whep(closing)
    await leaving.wait_video(1)
    await closing.wait_video(1)
    assert len(rig.stream.subscribers) == 2
    resp = await rig.client.delete(location)
    assert resp.status == 200
    await rig.wait_subscribers(1)
    assert (await rig.client.delete(location)).status == 404
    await closing.pc.close()  # no DELETE: the DTLS goodbye alone ends the session
    await rig.wait_subscribers(0)
    assert rig.client.app[WEBRTC].stats(rig.stream)["sessions"] == 0


async def test_session_cap_is_a_clear_503(make_rig: RigFactory) -> None:
    rig = await make_rig(max_sessions=1)
    await rig.whep(Browser(passthrough=True))
    extra = Browser(passthrough=True)
    rig.browsers.append(extra)
    resp = await rig.client.post(
        "/api/webrtc?src=front-door", data=await extra.offer(), headers={"Content-Type": SDP}
    )
    assert resp.status == 503
    assert "limit 1" in (await resp.json())["error"]
    assert len(rig.stream.subscribers) == 1


async def test_a_viewer_that_never_connects_is_dropped(make_rig: RigFactory) -> None:
    rig = await make_rig()
    output = WebRtcOutput(connect_timeout=1.0)
    silent = Browser()
    rig.browsers.append(silent)
    session, _answer = await output.create(rig.stream, await silent.offer())  # never applied
    assert output.get(session.id) is session
    assert len(rig.stream.subscribers) == 1
    await rig.wait_subscribers(0)
    assert output.get(session.id) is None
    assert output.sessions() == []
    await output.close()


async def test_shutdown_closes_every_peer(make_rig: RigFactory) -> None:
    rig = await make_rig()
    browser = Browser(passthrough=True)
    await rig.whep(browser)
    await browser.wait_video(1)
    await rig.client.app[WEBRTC].close()
    assert len(rig.stream.subscribers) == 0
    await until(lambda: browser.pc.connectionState == "closed")
    again = Browser(passthrough=True)
    rig.browsers.append(again)
    resp = await rig.client.post(
        "/api/webrtc?src=front-door", data=await again.offer(), headers={"Content-Type": SDP}
    )
    assert resp.status == 503


# -- bad requests -------------------------------------------------------------------------------


async def test_junk_unknown_stream_and_no_h264_are_refused(make_rig: RigFactory) -> None:
    rig = await make_rig()
    post = rig.client.post
    no_ice = _offer_sdp([(96, "packetization-mode=1")]).replace("a=ice-ufrag:abcd\r\n", "")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": "hello", "headers": {"Content-Type": SDP}}, 400, "v=0"),
        ({"data": "v=0\r\nm=video junk\r\n", "headers": {"Content-Type": SDP}}, 400, "SDP"),
        ({"data": no_ice, "headers": {"Content-Type": SDP}}, 400, "ICE credentials"),
        ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ({"json": {"type": "answer", "sdp": "v=0"}}, 400, '"offer"'),
        ({"json": ["offer"]}, 400, '"offer"'),
        ({"data": b"\xff\xfe", "headers": {"Content-Type": SDP}}, 400, "UTF-8"),
    ]
    for kwargs, status, text in cases:
        resp = await post("/api/webrtc?src=front-door", **kwargs)
        assert resp.status == status, kwargs
        assert text in (await resp.json())["error"], kwargs
    vp8_only = Browser(video_codecs=("video/vp8",))
    rig.browsers.append(vp8_only)
    resp = await post(
        "/api/webrtc?src=front-door", data=await vp8_only.offer(), headers={"Content-Type": SDP}
    )
    assert resp.status == 400
    assert "no H.264" in (await resp.json())["error"]
    resp = await post("/api/webrtc?src=back-door", data="v=0", headers={"Content-Type": SDP})
    assert resp.status == 404
    assert (await resp.json())["streams"] == ["front-door"]
    assert (await rig.client.delete("/api/webrtc/session/nope")).status == 404
    assert rig.connector.made == []  # nothing above woke the doorbell


# -- reconnects ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_viewers_come_and_go_while_the_source_reconnects(make_rig: RigFactory) -> None:
    rig = await make_rig(Connector(durations=[2.0]))
    early, stays = Browser(), Browser()
    early_location = await rig.whep(early)
    await early.wait_video(3)
    await rig.whep(stays)
    await stays.wait_video(3)
    assert (await rig.client.delete(early_location)).status == 200
    await until(lambda: len(rig.connector.made) == 2 and rig.stream.state == "live")
    reconnected = time.monotonic()
    late = Browser()
    await rig.whep(late)
    await late.wait_video(10)
    await until(lambda: sum(t > reconnected for t, _f in stays.video) >= 10)
    after = [f for t, f in stays.video if t > reconnected]
    assert _decode_sizes(after) == {(WIDTH, HEIGHT)}
    assert _decode_sizes([f for _t, f in late.video]) == {(WIDTH, HEIGHT)}
    assert rig.stream.reconnects >= 1
    assert len(rig.stream.subscribers) == 2


# -- units: offer choice and parameter sets -----------------------------------------------------


def _offer_sdp(video_fmtp: list[tuple[int, str]], audio: str = "") -> str:
    pts = " ".join(str(pt) for pt, _ in video_fmtp)
    lines = [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:actpass",
        f"m=video 9 UDP/TLS/RTP/SAVPF {pts}",
        "c=IN IP4 0.0.0.0",
        "a=recvonly",
        "a=rtcp-mux",
        "a=mid:0",
    ]
    for pt, fmtp in video_fmtp:
        lines += [f"a=rtpmap:{pt} H264/90000", f"a=fmtp:{pt} {fmtp}"]
    if audio:
        lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=recvonly", "a=rtcp-mux", "a=mid:1"]
        lines.append(f"a=rtpmap:0 {audio}")
    return "\r\n".join(lines) + "\r\n"


def _sps(profile_idc: int, constraints: int) -> bytes:
    return bytes([0x67, profile_idc, constraints, 0x1F, 0xAC])


def test_choose_video_matches_the_doorbell_profile() -> None:
    chrome = parse_offer(
        _offer_sdp(
            [
                (96, "packetization-mode=0;profile-level-id=42e01f"),
                (97, "packetization-mode=1;profile-level-id=42e01f"),
                (98, "packetization-mode=1;profile-level-id=4d001f"),
                (99, "packetization-mode=1;profile-level-id=640032"),
            ]
        )
    )
    main = choose_video(chrome, _sps(77, 0x40))
    assert (main.payload_type, main.exact) == (98, True)
    high = choose_video(chrome, _sps(100, 0))
    assert (high.payload_type, high.profile_level_id, high.exact) == (99, "640032", True)
    baseline = choose_video(chrome, _sps(66, 0xC0))
    assert (baseline.payload_type, baseline.exact) == (97, True)
    # Safari: Constrained High (aiortc cannot answer it) and Constrained Baseline.
    safari = parse_offer(
        _offer_sdp(
            [
                (100, "packetization-mode=1;profile-level-id=640c1f"),
                (102, "packetization-mode=1;profile-level-id=42e01f"),
            ]
        )
    )
    fallback = choose_video(safari, _sps(100, 0))
    assert (fallback.payload_type, fallback.exact) == (102, False)


def test_parse_offer_refusals_and_audio_choice() -> None:
    with pytest.raises(OfferError, match="packetization-mode=1"):
        parse_offer(_offer_sdp([(96, "packetization-mode=0;profile-level-id=42e01f")]))
    offer = parse_offer(_offer_sdp([(96, "packetization-mode=1")], audio="PCMA/8000"))
    assert choose_audio(offer, "pcma").codec == "pcma"
    assert choose_audio(offer, "opus").codec is None
    assert choose_audio(offer, None).note == "the doorbell sends no audio"
    no_audio = Offer(offer.sdp, offer.h264, ())
    assert choose_audio(no_audio, "pcma").note == "the viewer does not receive audio"


def test_parameter_sets_go_in_front_of_keyframes_that_lack_them() -> None:
    sps, pps = _sps(66, 0xC0), b"\x68\xce\x38\x80"
    idr = b"\x00\x00\x00\x01\x65\x88\x80"
    aud = b"\x00\x00\x00\x01\x09\xf0"
    start = b"\x00\x00\x00\x01"
    assert with_parameter_sets(idr, sps, pps) == start + sps + start + pps + idr
    assert with_parameter_sets(aud + idr, sps, pps) == aud + start + sps + start + pps + idr
    complete = start + sps + start + pps + idr
    assert with_parameter_sets(complete, sps, pps) is complete
    assert with_parameter_sets(idr, None, None) is idr
