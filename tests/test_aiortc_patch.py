"""The aiortc/aioice patch: compatibility canary, codecs, ICE restriction, and frame assembly."""

from __future__ import annotations

import socket

import aiortc.codecs
import aiortc.rtcrtpreceiver
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from bridge.media import aiortc_patch
from bridge.media.assembler import AudioAssembler, VideoAssembler
from bridge.media.webrtc_source import IceServerHealth, WebRtcSource, choose_ice_servers

SPS = b"\x00\x00\x00\x01\x67\x4d\x00\x1f\xaa"
PPS = b"\x00\x00\x00\x01\x68\xee\x3c\x80"
IDR_START = b"\x00\x00\x00\x01\x65\x88\x84"
P_START = b"\x00\x00\x00\x01\x41\x9a\x02"
TAIL = b"\x11\x22\x33\x44"  # an FU-A continuation: no start code


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    # Process-wide and deliberately never undone: no test may gather a non-loopback address.
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])


# -- canary -------------------------------------------------------------------------------------


def test_check_compat_passes_on_the_installed_aiortc() -> None:
    aiortc_patch.check_compat()
    aiortc_patch.install()
    aiortc_patch.install()  # idempotent


def test_check_compat_fails_loudly_when_an_internal_disappears(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(aiortc.rtcrtpreceiver, "decoder_worker")
    with pytest.raises(RuntimeError, match=r"aiortc 1\.16.*decoder_worker"):
        aiortc_patch.check_compat()


def test_check_compat_notices_a_renamed_pli_method(monkeypatch: pytest.MonkeyPatch) -> None:
    async def changed(self: object, ssrc: int, reason: str) -> None:  # pragma: no cover
        return None

    monkeypatch.setattr(aiortc.RTCRtpReceiver, "_send_rtcp_pli", changed)
    with pytest.raises(RuntimeError, match="_send_rtcp_pli"):
        aiortc_patch.check_compat()


def test_main_and_high_profiles_registered_once() -> None:
    aiortc_patch.install()
    aiortc_patch.install()
    ids = [
        c.parameters.get("profile-level-id")
        for c in aiortc.codecs.CODECS["video"]
        if c.mimeType == "video/H264"
    ]
    for profile_level_id in ("42001f", "42e01f", "4d001f", "64001f"):
        assert ids.count(profile_level_id) == 1
    payload_types = [c.payloadType for c in aiortc.codecs.CODECS["video"]]
    assert len(payload_types) == len(set(payload_types))


# -- ICE ----------------------------------------------------------------------------------------


async def test_host_candidates_restricted_to_loopback() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    candidates = [
        line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")
    ]
    await pc.close()
    assert candidates
    assert all(" 127.0.0.1 " in line for line in candidates)


async def test_silent_stun_server_is_remembered_as_dead() -> None:
    # A bound UDP socket that never answers: the worst case, no ICMP error to fail fast on.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    url = f"stun:127.0.0.1:{silent.getsockname()[1]}"
    health = IceServerHealth()
    previous = aiortc_patch.current_gather_timeout()
    aiortc_patch.set_gather_timeout(0.3)
    try:
        source = WebRtcSource([RTCIceServer(urls=url)], health=health)
        await source.create_offer()
        await source.close()
    finally:
        aiortc_patch.set_gather_timeout(previous)
        silent.close()
    assert health.is_dead(url)
    assert choose_ice_servers([{"urls": url}], health) == []


# -- video assembly -----------------------------------------------------------------------------


def keyframe_packets(seq: int, ts: int) -> list[tuple[int, int, bool, bytes]]:
    return [
        (seq, ts, False, SPS),
        (seq + 1, ts, False, PPS),
        (seq + 2, ts, False, IDR_START),
        (seq + 3, ts, True, TAIL),
    ]


def p_frame_packets(seq: int, ts: int) -> list[tuple[int, int, bool, bytes]]:
    return [(seq, ts, False, P_START), (seq + 1, ts, True, TAIL)]


def push_all(
    assembler: VideoAssembler, packets: list[tuple[int, int, bool, bytes]]
) -> tuple[bool, list[bytes]]:
    pli = False
    out: list[bytes] = []
    for packet in packets:
        wants_pli, frames = assembler.push(*packet)
        pli |= wants_pli
        out.extend(f.data for f in frames)
    return pli, out


def test_frame_released_on_marker_packet_before_next_frame_starts() -> None:
    clock = Clock()
    assembler = VideoAssembler(clock=clock)
    packets = keyframe_packets(1000, 90000)
    for packet in packets[:-1]:
        assert assembler.push(*packet) == (False, [])
    clock.now += 0.004
    pli, frames = assembler.push(*packets[-1])  # the marker packet: no next frame needed
    assert not pli
    assert len(frames) == 1
    frame = frames[0]
    assert frame.keyframe
    assert frame.data == SPS + PPS + IDR_START + TAIL
    assert frame.pts == 0
    assert frame.arrival == clock.now
    _pli, data = push_all(assembler, p_frame_packets(1004, 96000))
    assert data == [P_START + TAIL]


def test_without_marker_release_a_frame_waits_for_the_next_one() -> None:
    assembler = VideoAssembler(release_on_marker=False, clock=Clock())
    _pli, data = push_all(assembler, keyframe_packets(1000, 90000))
    assert data == []
    _pli, frames = assembler.push(1004, 96000, False, P_START)
    assert [f.data for f in frames] == [SPS + PPS + IDR_START + TAIL]
    assert frames[0].arrival == 100.0


def test_sequence_and_timestamp_wraparound() -> None:
    assembler = VideoAssembler(clock=Clock())
    _pli, first = push_all(assembler, keyframe_packets(65534, 2**32 - 3000))
    _pli, second = push_all(assembler, p_frame_packets(2, 3000))
    assert len(first) == len(second) == 1
    pli, frames = assembler.push(*keyframe_packets(4, 9000)[0])
    assert not pli
    assert frames == []
    assert assembler.stats.frames_delivered == 2


def test_retransmission_inside_the_wait_fills_the_gap_without_pli() -> None:
    clock = Clock()
    assembler = VideoAssembler(clock=clock, max_wait=0.25)
    push_all(assembler, keyframe_packets(10, 0))
    p1 = p_frame_packets(14, 6000)
    p2 = p_frame_packets(16, 12000)
    pli, frames = push_all(assembler, [p1[1], *p2])  # 14 lost for now
    assert (pli, frames) == (False, [])
    clock.now += 0.1
    pli, frames = push_all(assembler, [p1[0]])  # the RTX copy
    assert not pli
    assert frames == [P_START + TAIL, P_START + TAIL]
    assert assembler.stats.frames_lost == 0


def test_unrecovered_gap_sends_pli_and_drops_until_a_keyframe() -> None:
    clock = Clock()
    assembler = VideoAssembler(clock=clock, max_wait=0.25, pli_min_interval=0.5)
    push_all(assembler, keyframe_packets(10, 0))
    pli, frames = push_all(assembler, [p_frame_packets(14, 6000)[1], *p_frame_packets(16, 12000)])
    assert (pli, frames) == (False, [])
    clock.now += 0.3
    pli, frames = push_all(assembler, p_frame_packets(18, 18000))
    assert pli  # loss declared: ask for a keyframe
    assert frames == []  # the P-frames after the loss would decode broken
    assert assembler.waiting_for_keyframe
    clock.now += 0.1
    pli, frames = push_all(assembler, p_frame_packets(20, 24000))
    assert not pli  # rate limited
    assert frames == []
    pli, frames = push_all(assembler, keyframe_packets(22, 30000))
    assert frames == [SPS + PPS + IDR_START + TAIL]
    assert assembler.stats.frames_delivered == 2  # the first keyframe and this one
    assert assembler.stats.frames_lost == 1
    assert assembler.stats.keyframe_requests == 1


def test_a_buffered_keyframe_ends_the_wait_at_once() -> None:
    assembler = VideoAssembler(clock=Clock(), max_wait=10.0)
    push_all(assembler, keyframe_packets(10, 0))
    lost_p = p_frame_packets(14, 6000)
    pli, frames = push_all(assembler, [lost_p[1], *keyframe_packets(16, 12000)])
    assert not pli
    assert frames == [SPS + PPS + IDR_START + TAIL]


def test_stream_joined_mid_gop_asks_for_a_keyframe() -> None:
    assembler = VideoAssembler(clock=Clock())
    pli, frames = push_all(assembler, p_frame_packets(50, 3000))
    assert pli
    assert frames == []
    assert assembler.stats.frames_dropped == 1


def test_keyframe_with_missing_first_packet_is_not_trusted() -> None:
    assembler = VideoAssembler(clock=Clock())
    # SPS lost: PPS + IDR alone can start no decoder; wait for a whole keyframe.
    pli, frames = push_all(assembler, keyframe_packets(10, 0)[1:])
    assert frames == []
    assert pli
    _pli, frames = push_all(assembler, keyframe_packets(14, 6000))
    assert frames == [SPS + PPS + IDR_START + TAIL]


def test_audio_released_per_packet_and_late_ones_dropped() -> None:
    assembler = AudioAssembler(clock=Clock())
    assert [f.pts for f in assembler.push(7, 960, True, b"a")[1]] == [0]
    assert [f.pts for f in assembler.push(9, 2880, True, b"c")[1]] == [1920]
    assert assembler.push(8, 1920, True, b"b") == (False, [])  # late: already past it
    assert assembler.stats.frames_dropped == 1
