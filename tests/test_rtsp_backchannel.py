"""The ONVIF audio backchannel: RTSP clients that ask for it send audio that reaches a talk session.

The RTSP server is driven through its port by a hand-written client (``RawClient``), and the talk
session it opens is ``Recorder``: a real in-memory object with the talk session's surface, which
keeps the frames it is given and says which frequency dominates them. The whole path through the
app to the simulated doorbell is in ``test_talk_rtsp_e2e`` below.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.media.hub import Hub
from bridge.rtsp import RtspServer
from bridge.rtsp.backchannel import (
    BACKCHANNEL_TAG,
    MAX_PACKET,
    aac_access_units,
    parse_rtp,
    wants_backchannel,
)
from bridge.rtsp.rtp import aac_payload, rtp_header
from bridge.sim.world import SimWorld

from .fake_doorbell import Connector, make_stream, probe
from .serve_util import BridgeFactory
from .test_rtsp import RawClient, Response

_REQUIRE = {"Require": BACKCHANNEL_TAG}


class Busy(Exception):
    """What the recorder raises when someone else is talking."""


@dataclass
class RecordedTalk:
    """One talk session as the recorder saw it."""

    frames: list[av.AudioFrame] = field(default_factory=list)
    closed: bool = False

    async def write(self, frame: av.AudioFrame) -> None:
        assert not self.closed, "written after close"
        self.frames.append(frame)

    async def close(self) -> None:
        self.closed = True

    def samples(self) -> tuple[np.ndarray[Any, Any], int]:
        rate = self.frames[0].sample_rate
        data = np.concatenate([f.to_ndarray().reshape(-1) for f in self.frames])
        return data.astype(np.float64), rate


@dataclass
class Recorder:
    """A talk service with one talker at a time, keeping what it hears."""

    sessions: list[tuple[str, RecordedTalk]] = field(default_factory=list)
    busy: bool = False

    async def open(self, stream_name: str) -> RecordedTalk:
        if self.busy or any(not talk.closed for _, talk in self.sessions):
            raise Busy("someone is already talking")
        talk = RecordedTalk()
        self.sessions.append((stream_name, talk))
        return talk


def dominant_frequency(samples: np.ndarray[Any, Any], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])


def pcmu_tone(seconds: float, frequency: float = 1000.0) -> list[bytes]:
    """20 ms PCMU payloads of a sine tone, encoded by FFmpeg's own G.711 encoder."""
    codec = av.CodecContext.create("pcm_mulaw", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate, codec.layout, codec.format = 8000, "mono", "s16"
    codec.open()
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (np.sin(2 * np.pi * frequency * t) * 12000).astype(np.int16)
    payloads = []
    for start in range(0, len(pcm) - 159, 160):
        frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 160], "s16", "mono")
        frame.sample_rate = 8000
        payloads += [bytes(p) for p in codec.encode(frame)]
    return payloads


def rtp(payload: bytes, seq: int, payload_type: int = 0) -> bytes:
    return rtp_header(payload_type, False, seq, seq * 160, 0x1234) + payload


@dataclass
class Rig:
    server: RtspServer
    hub: Hub
    recorder: Recorder

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.server.port}/front-door"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    hub, _stream = make_stream(Connector())
    recorder = Recorder()
    server = RtspServer(hub.get, host="127.0.0.1", port=0, talk=recorder.open)
    await server.start()
    yield Rig(server, hub, recorder)
    await server.close()
    await hub.close()


async def setup_backchannel(
    client: RawClient, url: str, transport: str, **headers: str
) -> tuple[Response, Response, Response]:
    """DESCRIBE with the Require header, SETUP the backchannel track, PLAY."""
    describe = await client.request("DESCRIBE", url, Accept="application/sdp", **_REQUIRE)
    assert describe.status == 200, describe
    control = re.findall(r"a=control:(trackID=\d+)", describe.body.decode())[-1]
    setup = await client.request(
        "SETUP", f"{url}/{control}", Transport=transport, **_REQUIRE, **headers
    )
    assert setup.status == 200, setup
    session = setup.header("session").split(";")[0]
    play = await client.request("PLAY", url + "/", Session=session, **_REQUIRE)
    assert play.status == 200, play
    return describe, setup, play


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - the state belongs to the code under test
            await asyncio.sleep(0.02)


def send_interleaved(client: RawClient, channel: int, packet: bytes) -> None:
    client.writer.write(struct.pack("!cBH", b"$", channel, len(packet)) + packet)


async def paced(
    payloads: list[bytes], send: Callable[[bytes], Awaitable[None] | None], pause: float = 0.05
) -> None:
    """Send 20 ms payloads in bursts of ten (200 ms), ``pause`` apart: 0.2 is real time."""
    for seq, payload in enumerate(payloads):
        result = send(rtp(payload, seq))
        if result is not None:
            await result
        if seq % 10 == 9:
            await asyncio.sleep(pause)


# -- the SDP ---------------------------------------------------------------------------------------


async def test_sdp_unchanged_without_the_header_and_extended_with_it(rig: Rig) -> None:
    client = await RawClient.connect(rig.server.port)
    try:
        plain = await client.request("DESCRIBE", rig.url(), Accept="application/sdp")
        onvif = await client.request("DESCRIBE", rig.url(), Accept="application/sdp", **_REQUIRE)
    finally:
        await client.close()
    assert plain.status == onvif.status == 200
    plain_sdp, onvif_sdp = plain.body.decode(), onvif.body.decode()
    assert "sendonly" not in plain_sdp
    assert "PCMA" not in plain_sdp
    # Byte for byte the same up to the extra section, apart from the o= line's session time.
    strip = re.compile(r"^o=.*$", re.MULTILINE)
    assert strip.sub("", onvif_sdp).startswith(strip.sub("", plain_sdp))
    extra = onvif_sdp[len(plain_sdp) :]
    assert extra.startswith("m=audio 0 RTP/AVP 0 8 98\r\n")
    for line in (
        "a=rtpmap:0 PCMU/8000/1",
        "a=rtpmap:8 PCMA/8000/1",
        "a=rtpmap:98 MPEG4-GENERIC/16000/1",
        "a=sendonly",
        "a=control:trackID=2",
    ):
        assert line in extra.splitlines(), extra


async def test_no_backchannel_without_a_talk_service() -> None:
    hub, _stream = make_stream(Connector())
    server = RtspServer(hub.get, host="127.0.0.1", port=0)
    await server.start()
    client = await RawClient.connect(server.port)
    try:
        url = f"rtsp://127.0.0.1:{server.port}/front-door"
        reply = await client.request("DESCRIBE", url, **_REQUIRE)
        assert reply.status == 200
        assert "sendonly" not in reply.body.decode()
        missing = await client.request(
            "SETUP", f"{url}/trackID=2", Transport="RTP/AVP/TCP;interleaved=4-5"
        )
        assert missing.status == 404
    finally:
        await client.close()
        await server.close()
        await hub.close()


@pytest.mark.slow
async def test_ffprobe_without_the_header_sees_the_stream_as_before(rig: Rig) -> None:
    info = await probe(rig.url(), "-rtsp_transport", "tcp")
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]


# -- audio in ------------------------------------------------------------------------------------


async def test_pcmu_tone_over_tcp_is_heard_then_released(rig: Rig) -> None:
    client = await RawClient.connect(rig.server.port)
    try:
        _, _, play = await setup_backchannel(
            client, rig.url(), "RTP/AVP/TCP;unicast;interleaved=4-5"
        )
        assert "rtp-info" not in play.headers  # nothing is sent on the backchannel
        assert rig.recorder.sessions == []  # set up, not talking: nobody is locked out
        await paced(pcmu_tone(1.0), lambda p: send_interleaved(client, 4, p))
        await wait_for(lambda: sum(len(t.frames) for _, t in rig.recorder.sessions) >= 50)
        ((name, talk),) = rig.recorder.sessions
        assert name == "front-door"
        samples, rate = talk.samples()
        assert rate == 8000
        assert abs(dominant_frequency(samples, rate) - 1000) < 20
        # Silence gives the doorbell back to other talkers, with the session still up.
        await wait_for(lambda: talk.closed, 5.0)
        reply = await client.request("GET_PARAMETER", rig.url())
        assert reply.status == 200
    finally:
        await client.close()


async def test_pcma_over_udp_and_teardown_closes(rig: Rig) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    client = await RawClient.connect(rig.server.port)
    try:
        _, setup, _ = await setup_backchannel(
            client, rig.url(), f"RTP/AVP;unicast;client_port={port}-{port + 1}"
        )
        session = setup.header("session").split(";")[0]
        ports = re.search(r"server_port=(\d+)", setup.header("transport"))
        assert ports is not None
        server_port = int(ports[1])
        codec = av.CodecContext.create("pcm_alaw", "w")
        assert isinstance(codec, av.AudioCodecContext)
        codec.sample_rate, codec.layout, codec.format = 8000, "mono", "s16"
        codec.open()
        pcm = (np.sin(2 * np.pi * 1000 * np.arange(160) / 8000) * 12000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], "s16", "mono")
        frame.sample_rate = 8000
        payload = b"".join(bytes(p) for p in codec.encode(frame))
        for seq in range(20):
            sock.sendto(rtp(payload, seq, payload_type=8), ("127.0.0.1", server_port))
        await wait_for(
            lambda: bool(rig.recorder.sessions) and len(rig.recorder.sessions[0][1].frames) >= 10
        )
        talk = rig.recorder.sessions[0][1]
        assert not talk.closed
        reply = await client.request("TEARDOWN", rig.url(), Session=session)
        assert reply.status == 200
        assert talk.closed
    finally:
        sock.close()
        await client.close()


async def test_aac_over_tcp_is_heard(rig: Rig) -> None:
    codec = av.CodecContext.create("aac", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate, codec.layout, codec.format = 16000, "mono", "fltp"
    codec.open()
    t = np.arange(16000) / 16000
    pcm = (np.sin(2 * np.pi * 1000 * t) * 0.4).astype(np.float32)
    payloads = []
    for start in range(0, len(pcm) - 1023, 1024):
        frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], "fltp", "mono")
        frame.sample_rate = 16000
        frame.pts = start
        payloads += [aac_payload(bytes(p)) for p in codec.encode(frame)]
    client = await RawClient.connect(rig.server.port)
    try:
        await setup_backchannel(client, rig.url(), "RTP/AVP/TCP;unicast;interleaved=4-5")
        for seq, payload in enumerate(payloads):
            packet = rtp_header(98, True, seq, seq * 1024, 0x55) + payload
            send_interleaved(client, 4, packet)
        await wait_for(lambda: sum(len(t.frames) for _, t in rig.recorder.sessions) >= 10)
        talk = rig.recorder.sessions[0][1]
        samples, rate = talk.samples()
        assert rate == 16000
        assert abs(dominant_frequency(samples[2048:], rate) - 1000) < 20
    finally:
        await client.close()


async def test_bad_packets_are_dropped_and_the_connection_lives(rig: Rig) -> None:
    client = await RawClient.connect(rig.server.port)
    try:
        await setup_backchannel(client, rig.url(), "RTP/AVP/TCP;unicast;interleaved=4-5")
        tone = pcmu_tone(0.2)
        send_interleaved(client, 4, b"\x00junk")  # not RTP
        send_interleaved(client, 4, rtp(tone[0], 1, payload_type=96))  # not offered
        send_interleaved(client, 4, rtp(b"\xff" * (MAX_PACKET + 1), 2))  # too big
        send_interleaved(client, 4, rtp(b"\x00\x10\x00", 3, payload_type=98))  # broken AAC
        send_interleaved(client, 5, b"\x81\xc9\x00\x01" + b"\x00" * 4)  # RTCP on the RTCP channel
        send_interleaved(client, 9, rtp(tone[0], 4))  # a channel nobody set up
        await asyncio.sleep(0.3)
        assert rig.recorder.sessions == []
        await paced(tone, lambda p: send_interleaved(client, 4, p))
        await wait_for(lambda: bool(rig.recorder.sessions))
        assert (await client.request("OPTIONS", "*")).status == 200
    finally:
        await client.close()


async def test_busy_talk_is_retried_and_disconnect_closes(rig: Rig) -> None:
    rig.recorder.busy = True
    client = await RawClient.connect(rig.server.port)
    try:
        await setup_backchannel(client, rig.url(), "RTP/AVP/TCP;unicast;interleaved=0-1")
        # Real time: the refusal is retried a couple of seconds later, while audio still flows.
        tone = pcmu_tone(4.0)
        sender = asyncio.create_task(paced(tone, lambda p: send_interleaved(client, 0, p), 0.2))
        await asyncio.sleep(0.5)
        assert rig.recorder.sessions == []  # refused: the audio is dropped, not queued
        rig.recorder.busy = False
        await wait_for(lambda: bool(rig.recorder.sessions))  # the retry got through
        await sender
        talk = rig.recorder.sessions[0][1]
    finally:
        await client.close()
    await wait_for(lambda: talk.closed, 5.0)


# -- through the app to the simulated doorbell ------------------------------------------------------


async def _heard(world: SimWorld) -> dict[str, Any]:
    url = f"{world.base_url}/_sim/doorbells/Front Door/heard"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


@pytest.mark.slow
async def test_backchannel_tone_is_heard_by_the_doorbell_and_ffprobe_sees_no_change(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge()
    port = urlsplit(bridge.rtsp_url).port
    assert port is not None
    url = bridge.rtsp_url + "front-door"
    plain = await probe(url, "-rtsp_transport", "tcp")
    assert sorted(s["codec_type"] for s in plain["streams"]) == ["audio", "video"]
    client = await RawClient.connect(port)
    try:
        await setup_backchannel(client, url, "RTP/AVP/TCP;unicast;interleaved=0-1")
        started = time.monotonic()
        # In real time, as a client's microphone would send it, until the doorbell hears it.
        sender = asyncio.create_task(
            paced(pcmu_tone(8.0), lambda p: send_interleaved(client, 0, p), 0.2)
        )
        report: dict[str, Any] = {}
        async with asyncio.timeout(15):
            while True:
                report = await _heard(world)
                frequency = report.get("frequency_hz")
                if frequency is not None and abs(frequency - 1000) < 30:
                    break
                await asyncio.sleep(0.1)
        print(f"\nRTSP backchannel: 1 kHz heard {time.monotonic() - started:.2f} s after PLAY")
        sender.cancel()
        # A second talker meanwhile is refused with the usual 409.
        async with aiohttp.ClientSession() as http:
            busy = await http.post(bridge.http_url + "api/talk?src=front-door", data=b"RIFF")
            assert busy.status == 409
    finally:
        await client.close()


# -- the parsers -----------------------------------------------------------------------------------


def test_require_header() -> None:
    assert wants_backchannel(BACKCHANNEL_TAG)
    assert wants_backchannel(f"com.example.x, {BACKCHANNEL_TAG.upper()}")
    assert not wants_backchannel(None)
    assert not wants_backchannel("www.onvif.org/ver20/replay")


@given(
    payload_type=st.integers(0, 127),
    marker=st.booleans(),
    seq=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
)
def test_rtp_round_trip(
    payload_type: int, marker: bool, seq: int, timestamp: int, ssrc: int, payload: bytes
) -> None:
    data = rtp_header(payload_type, marker, seq, timestamp, ssrc) + payload
    if marker and 72 <= payload_type <= 76:
        with pytest.raises(ValueError, match="RTCP"):
            parse_rtp(data)
        return
    packet = parse_rtp(data)
    assert (packet.payload_type, packet.marker, packet.seq) == (payload_type, marker, seq)
    assert (packet.timestamp, packet.ssrc, packet.payload) == (timestamp, ssrc, payload)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_parsers_take_any_bytes(data: bytes) -> None:
    """Junk gets a ValueError or a result inside the input, never another exception."""
    for parse in (parse_rtp, aac_access_units):
        try:
            result = parse(data)
        except ValueError:
            continue
        if isinstance(result, list):
            assert sum(len(u) for u in result) <= len(data)
        else:
            assert len(result.payload) <= len(data)


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5))
def test_aac_access_units_round_trip(units: list[bytes]) -> None:
    headers = b"".join(struct.pack("!H", len(u) << 3) for u in units)
    payload = struct.pack("!H", 16 * len(units)) + headers + b"".join(units)
    assert aac_access_units(payload) == units
