"""The simulated doorbell is as unkind as a libwebrtc sender: keyframes only when properly asked,
NACKs answered with RTX, resolution changes mid-stream; and its control API.

Real aiortc peers on 127.0.0.1: the bridge's own WebRtcSource receives, hand-built RTCP goes out
through its receiver. Waits count frames of the stream, never wall-clock time.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import av
import pytest
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from bridge.media import aiortc_patch
from bridge.media.live import open_live_call
from bridge.media.packet import MediaPacket, extract_sps_pps
from bridge.media.webrtc_source import WebRtcSource
from bridge.redact import Secret
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY
from bridge.sim.doorbell import KEYFRAMES_ENV, SimDoorbellPeer, SimMediaSettings
from bridge.sim.feedback import KeyframeGate, fir_fci
from bridge.sim.picture import read_stamp
from bridge.sim.world import SimWorld
from bridge.skybell import SkyBellClient

FRONT = "0579ce92-72a5-4b1f-8191-e360876705c3"
REQUESTER = 0x5EED  # the sender SSRC our hand-built feedback claims


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    # Process-wide and deliberately never undone: no test may gather a non-loopback address.
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])


class Link:
    """A WebRtcSource receiving from a SimDoorbellPeer, with every video packet recorded."""

    def __init__(self, source: WebRtcSource, doorbell: SimDoorbellPeer, answer: str) -> None:
        self.source = source
        self.doorbell = doorbell
        self.video: list[MediaPacket] = []
        self.answer = answer
        video_sdp, _sep, audio_sdp = answer.partition("m=audio")
        group = re.search(r"a=ssrc-group:FID (\d+) (\d+)", video_sdp)
        assert group is not None, "no RTX SSRC group in the answer"
        self.video_ssrc, self.rtx_ssrc = int(group[1]), int(group[2])
        audio = re.search(r"a=ssrc:(\d+) ", audio_sdp)
        self.audio_ssrc = int(audio[1]) if audio else None

    async def record(self) -> None:
        async for packet in self.source.packets():
            if packet.kind == "video":
                self.video.append(packet)

    async def frames(self, n: int, timeout: float = 20) -> None:
        """Wait until ``n`` more video frames have arrived."""
        target = len(self.video) + n
        await until(lambda: len(self.video) >= target, timeout)

    def keyframes(self, since: int = 0) -> list[int]:
        """Indexes of the keyframes received, from index ``since`` on."""
        return [i for i, p in enumerate(self.video) if i >= since and p.keyframe]

    async def send(self, fmt: int, media_ssrc: int, fci: bytes = b"") -> None:
        receiver = self.source._transceivers["video"].receiver
        await receiver._send_rtcp(
            RtcpPsfbPacket(fmt=fmt, ssrc=REQUESTER, media_ssrc=media_ssrc, fci=fci)
        )

    async def pli(self, media_ssrc: int | None = None) -> None:
        await self.send(RTCP_PSFB_PLI, self.video_ssrc if media_ssrc is None else media_ssrc)

    async def fir(self, seq: int, ssrc: int | None = None) -> None:
        # RFC 5104: media SSRC 0 in the header, the target and sequence number in the FCI.
        await self.send(RTCP_PSFB_FIR, 0, fir_fci([(ssrc or self.video_ssrc, seq)]))


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - the state belongs to the code under test
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


@asynccontextmanager
async def link(settings: SimMediaSettings) -> AsyncIterator[Link]:
    source = WebRtcSource([])
    doorbell = SimDoorbellPeer(settings, on_candidate=source.add_remote_candidate)
    recorder: asyncio.Task[None] | None = None
    try:
        answer = await doorbell.handle_offer(await source.create_offer())
        await source.set_answer(answer)
        result = Link(source, doorbell, answer)
        recorder = asyncio.create_task(result.record())
        await result.frames(1)
        yield result
    finally:
        await source.close()
        await doorbell.close()
        if recorder is not None:
            await asyncio.wait_for(recorder, 10)  # packets() ends on close


def decode(packets: list[MediaPacket]) -> list[tuple[int, int, int, bool]]:
    """(frame number from the stamp, width, height, keyframe) per packet, in order."""
    decoder = av.CodecContext.create("h264", "r")
    out = []
    for packet in packets:
        frames = decoder.decode(av.Packet(packet.data))
        assert len(frames) == 1
        frame = frames[0]
        frame_no, _ms = read_stamp(frame.to_ndarray(format="gray"))
        out.append((frame_no, frame.width, frame.height, packet.keyframe))
    return out


SMALL = {"image_quality": 0, "audio_codec": None}


# -- keyframes on request -----------------------------------------------------------------------


def test_default_mode_is_on_request_and_the_env_var_switches_a_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEYFRAMES_ENV, raising=False)
    assert SimMediaSettings().keyframes == "on_request"
    monkeypatch.setenv(KEYFRAMES_ENV, "gop")
    assert SimMediaSettings().keyframes == "gop"
    assert SimMediaSettings(keyframes="on_request").keyframes == "on_request"  # explicit wins
    monkeypatch.setenv(KEYFRAMES_ENV, "sometimes")
    with pytest.raises(ValueError, match=KEYFRAMES_ENV):
        SimMediaSettings()


def test_gate_rules_with_a_hand_clock() -> None:
    now = [100.0]
    gate = KeyframeGate(1111, clock=lambda: now[0])

    def psfb(fmt: int, media_ssrc: int, fci: bytes = b"", ssrc: int = 7) -> str:
        packet = RtcpPsfbPacket(fmt=fmt, ssrc=ssrc, media_ssrc=media_ssrc, fci=fci)
        return gate.judge(packet).outcome

    assert psfb(RTCP_PSFB_PLI, 1111) == "keyframe"
    now[0] += 0.299
    assert psfb(RTCP_PSFB_PLI, 1111) == "throttled"
    assert psfb(RTCP_PSFB_PLI, 2222) == "wrong_ssrc"
    assert psfb(RTCP_PSFB_PLI, 0) == "wrong_ssrc"
    now[0] += 0.001  # 300 ms after the last keyframe acted on
    assert psfb(RTCP_PSFB_FIR, 0, fir_fci([(2222, 1), (1111, 5)])) == "keyframe"
    now[0] += 1
    assert psfb(RTCP_PSFB_FIR, 0, fir_fci([(1111, 5)])) == "repeated_fir"
    assert psfb(RTCP_PSFB_FIR, 0, fir_fci([(1111, 5)]), ssrc=8) == "keyframe"  # other requester
    now[0] += 1
    assert psfb(RTCP_PSFB_FIR, 0, fir_fci([(2222, 9)])) == "wrong_ssrc"
    assert psfb(RTCP_PSFB_FIR, 0, fir_fci([(1111, 6)])) == "keyframe"


async def test_one_keyframe_at_start_then_only_when_asked() -> None:
    async with link(SimMediaSettings(keyframes="on_request", **SMALL)) as peer:
        await peer.frames(40)  # more than 2 s at 15 fps: the old GOP would have keyed again
        stats = peer.doorbell.stats
        assert stats.keyframe_requests == 0  # nobody asked
        assert peer.keyframes() == [0]
        assert stats.keyframes_sent == 1

        before = len(peer.video)
        await peer.pli()
        await peer.frames(15)  # a second of stream
        assert len(peer.keyframes(before)) == 1
        assert (stats.pli_received, stats.keyframe_requests_honoured) == (1, 1)
        assert stats.keyframes_sent == 2


async def test_pli_throttle_and_ssrc_rules() -> None:
    async with link(
        SimMediaSettings(keyframes="on_request", image_quality=0)
    ) as peer:  # with audio: BUNDLE'd SSRCs
        stats = peer.doorbell.stats
        assert peer.audio_ssrc is not None
        # Two PLIs 50 ms apart: libwebrtc acts on the first only (300 ms minimum interval).
        before = len(peer.video)
        await peer.pli()
        await asyncio.sleep(0.05)
        await peer.pli()
        await peer.frames(15)
        assert len(peer.keyframes(before)) == 1
        assert (stats.keyframe_requests_honoured, stats.ignored_throttled) == (1, 1)

        # PLIs naming the RTX SSRC, the audio SSRC or nothing at all are not for the encoder.
        before = len(peer.video)
        for ssrc in (peer.rtx_ssrc, peer.audio_ssrc, 0):
            await peer.pli(ssrc)
        await peer.frames(15)
        assert peer.keyframes(before) == []
        assert stats.ignored_wrong_ssrc == 3
        assert stats.pli_received == 5
        assert stats.keyframe_requests_ignored == 4
        assert stats.keyframes_sent == 2


async def test_fir_needs_a_new_sequence_number() -> None:
    async with link(SimMediaSettings(keyframes="on_request", **SMALL)) as peer:
        stats = peer.doorbell.stats
        before = len(peer.video)
        await peer.fir(seq=1)
        await peer.frames(15)
        assert len(peer.keyframes(before)) == 1
        # The same number again is a retransmission of that request: no keyframe.
        before = len(peer.video)
        await peer.fir(seq=1)
        await peer.fir(seq=2, ssrc=peer.rtx_ssrc)  # and a FIR for another stream
        await peer.frames(15)
        assert peer.keyframes(before) == []
        before = len(peer.video)
        await peer.fir(seq=2)
        await peer.frames(15)
        assert len(peer.keyframes(before)) == 1
        assert stats.fir_received == 4
        assert (stats.keyframe_requests_honoured, stats.ignored_repeated_fir) == (2, 1)
        assert stats.ignored_wrong_ssrc == 1
        assert stats.keyframes_sent == 3


async def test_bridge_fir_reaches_the_doorbell() -> None:
    """The bridge's own FIR (aiortc_patch.request_keyframe) is honoured, each time anew."""
    async with link(SimMediaSettings(keyframes="on_request", **SMALL)) as peer:
        receiver = peer.source._transceivers["video"].receiver
        for expected in (1, 2):
            assert await aiortc_patch.request_keyframe(receiver, "fir")
            await until(lambda n=expected: peer.doorbell.stats.keyframe_requests_honoured >= n)
            await peer.frames(6)  # > 300 ms, past the throttle
        assert peer.doorbell.stats.ignored_repeated_fir == 0
        assert len(peer.keyframes()) == 3


async def test_gop_mode_keys_on_schedule_and_still_answers_pli() -> None:
    settings = SimMediaSettings(fps=15, keyframes="gop", gop_seconds=1.0, **SMALL)
    async with link(settings) as peer:
        await peer.frames(40)
        numbers = [n for n, _w, _h, _key in decode(peer.video)]
        keyed = [numbers[i] for i in peer.keyframes()]
        assert keyed == [n for n in range(numbers[0], numbers[-1] + 1) if n % 15 == 0]
        assert peer.doorbell.stats.keyframe_requests == 0
        await peer.pli()
        await until(lambda: peer.doorbell.stats.keyframe_requests_honoured == 1)
        await peer.frames(5)
        after = decode(peer.video)
        assert any(key and n % 15 != 0 for n, _w, _h, key in after)  # off-schedule: answered


# -- NACK and RTX -------------------------------------------------------------------------------


@pytest.mark.slow
async def test_nacks_are_answered_with_rtx() -> None:
    settings = SimMediaSettings(bitrate=300_000, loss_percent=5, seed=3, **SMALL)
    async with link(settings) as peer:
        await peer.frames(60)
        stats = peer.doorbell.stats
        received = peer.source.stats["video"]
    # RTX negotiated as Chrome does: its own payload type with apt= the H.264 one, its own SSRC.
    rtx = re.search(r"a=rtpmap:(\d+) rtx/90000", peer.answer)
    h264 = re.search(r"a=rtpmap:(\d+) H264/90000", peer.answer)
    assert rtx is not None
    assert h264 is not None
    assert f"a=fmtp:{rtx[1]} apt={h264[1]}" in peer.answer
    assert peer.rtx_ssrc != peer.video_ssrc
    assert stats.rtp_dropped > 0
    assert stats.nack_received > 0
    assert stats.nacked_packets >= stats.nack_received
    assert stats.rtx_sent > 0
    # Retransmissions repaired the losses (an RTX packet may itself be lost, then a PLI
    # restarts the picture): far fewer frames lost than packets dropped, and every frame
    # delivered arrived whole and decodes, after a gap always starting at a keyframe.
    assert received.frames_lost * 4 <= stats.rtp_dropped, (received, stats)
    decoded = decode(peer.video)
    for (prev, _w, _h, _k), (frame_no, _w2, _h2, key) in itertools.pairwise(decoded):
        assert frame_no == prev + 1 or key


# -- resolution changes -------------------------------------------------------------------------


async def test_resolution_changes_mid_stream_with_an_idr_and_new_sps() -> None:
    # The quality scaler steps down by schedule, then back up by the method.
    settings = SimMediaSettings(
        fps=15, resolution=(640, 360), scale_schedule=((1.0, 320, 180),), **SMALL
    )
    async with link(settings) as peer:
        await until(lambda: peer.doorbell.stats.resolution_changes == 1)
        await peer.frames(5)
        assert peer.doorbell.resolution == (320, 180)
        peer.doorbell.set_resolution(640, 360)
        await until(lambda: peer.doorbell.stats.resolution_changes == 2)
        await peer.frames(5)
        stats = peer.doorbell.stats
        assert (stats.width, stats.height) == (640, 360)
    decoded = decode(peer.video)
    sizes = [(w, h) for _n, w, h, _k in decoded]
    runs = [sizes[0]] + [b for a, b in itertools.pairwise(sizes) if a != b]
    assert runs == [(640, 360), (320, 180), (640, 360)]
    # Every first frame at a size is an IDR carrying SPS and PPS; no other keyframes.
    firsts = {0} | {i for i in range(1, len(sizes)) if sizes[i] != sizes[i - 1]}
    assert {i for i, (_n, _w, _h, key) in enumerate(decoded) if key} == firsts
    for i in firsts:
        assert all(part is not None for part in extract_sps_pps(peer.video[i].data))
    numbers = [n for n, _w, _h, _k in decoded]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


# -- control API --------------------------------------------------------------------------------


@pytest.fixture
async def world() -> AsyncIterator[SimWorld]:
    world = SimWorld()
    await world.start()
    try:
        yield world
    finally:
        await world.close()


async def test_control_api_reads_and_changes_media(world: SimWorld) -> None:
    bell = world.doorbell(FRONT)
    world.cloud.devices[FRONT].settings["image_quality"] = 0
    url = f"{world.base_url}/_sim/doorbells/{bell.device.name}/media"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
        assert body["id"] == FRONT
        assert body["settings"]["keyframes"] in ("on_request", "gop")
        assert body["settings"]["resolution"] == [854, 480]
        assert body["stats"]["resolution"] is None  # nobody watching
        change = {"keyframes": "gop", "gop_seconds": 1.5, "loss_percent": 0, "fps": 10}
        async with http.post(url, json=change) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert {k: body["settings"][k] for k in change} == change
        assert bell.media.keyframes == "gop"

        for bad, reason in [
            ({"keyframes": "hourly"}, "keyframes"),
            ({"gop_seconds": 0}, "gop_seconds"),
            ({"resolution": [641, 360]}, "resolution"),
            ({"resolution": "720p"}, "resolution"),
            ({"retransmit": 1}, "retransmit"),
            ({"colour": "red"}, "colour"),
            ([1, 2], "object"),
        ]:
            async with http.post(url, json=bad) as resp:
                assert resp.status == 400, bad
                error = (await resp.json())["error"]
                assert reason in error
                assert "\n" not in error
        async with http.post(url, data=b"{not json") as resp:
            assert resp.status == 400
        assert bell.media.gop_seconds == 1.5  # nothing bad was applied
        for method in ("GET", "POST"):
            missing = f"{world.base_url}/_sim/doorbells/no-such-door/media"
            async with http.request(method, missing, json={"fps": 5}) as resp:
                assert resp.status == 404
                assert "no-such-door" in (await resp.json())["error"]


@pytest.mark.slow
async def test_control_api_resolution_reaches_a_live_viewer(world: SimWorld) -> None:
    bell = world.doorbell(FRONT)
    bell.configure(image_quality=0, audio_codec=None)
    world.cloud.devices[FRONT].settings["image_quality"] = 0
    url = f"{world.base_url}/_sim/doorbells/{FRONT}/media"
    async with aiohttp.ClientSession() as http:
        client = SkyBellClient(
            http, base_url=world.base_url + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
        )
        session = await open_live_call(client, http, FRONT)
        video: list[MediaPacket] = []
        try:
            packets = session.packets().__aiter__()
            while len(video) < 5:
                packet = await asyncio.wait_for(anext(packets), 20)
                if packet.kind == "video":
                    video.append(packet)
            async with http.post(url, json={"resolution": [320, 180]}) as resp:
                assert resp.status == 200
            while len(video) < 20:
                packet = await asyncio.wait_for(anext(packets), 20)
                if packet.kind == "video":
                    video.append(packet)
            # The viewer's requests show up in the counters (whatever the bridge asked for).
            session.request_keyframe()
            await until(lambda: bell.media_stats()["stats"]["pli_received"] >= 1)
            async with http.get(url) as resp:
                stats = (await resp.json())["stats"]
        finally:
            await session.close()
    sizes = [(w, h) for _n, w, h, _k in decode(video)]
    assert sizes[0] == (854, 480)
    assert sizes[-1] == (320, 180)
    assert stats["resolution"] == [320, 180]
    assert stats["resolution_changes"] == 1
    assert stats["keyframes_sent"] >= 2
    assert stats["frames_sent"] >= 20
    for key in ("fir_received", "nack_received", "keyframe_requests_ignored"):
        assert key in stats
    assert bell.media_stats()["viewers"] == 0  # the call ended; its counters stay summed
    assert bell.media_stats()["stats"]["frames_sent"] >= 20
