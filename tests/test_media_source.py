"""The WebRTC source against the simulated doorbell, peer to peer on 127.0.0.1 (no signaling)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import av
import pytest

from bridge.media import aiortc_patch
from bridge.media.packet import MediaPacket, extract_sps_pps, h264_profile
from bridge.media.webrtc_source import (
    MAX_SIGNALING_PAYLOAD,
    IceServerHealth,
    WebRtcSource,
    WebRtcSourceError,
    choose_ice_servers,
    parse_candidate,
)
from bridge.sim.doorbell import SimDoorbellPeer, SimMediaSettings
from bridge.sim.picture import read_stamp

SKYBELL_ICE: list[dict[str, Any]] = [
    {"urls": "stun:stun.kinesisvideo.us-east-1.amazonaws.com:443"},
    {
        "urls": [
            "turns:1-2-3-4.t-abc.kinesisvideo.us-east-1.amazonaws.com:443?transport=udp",
            "turns:1-2-3-4.t-abc.kinesisvideo.us-east-1.amazonaws.com:443?transport=tcp",
            "turn:1-2-3-4.t-abc.kinesisvideo.us-east-1.amazonaws.com:443?transport=udp",
        ],
        "username": "user1",
        "credential": "pass1",
    },
    {
        "urls": ["turn:5-6-7-8.t-abc.kinesisvideo.us-east-1.amazonaws.com:443?transport=udp"],
        "username": "user2",
        "credential": "pass2",
    },
]


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    # Process-wide and deliberately never undone: no test may gather a non-loopback address.
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])


@asynccontextmanager
async def session(
    settings: SimMediaSettings, **source_args: Any
) -> AsyncIterator[tuple[WebRtcSource, SimDoorbellPeer]]:
    source = WebRtcSource([], **source_args)
    doorbell = SimDoorbellPeer(settings, on_candidate=source.add_remote_candidate)
    try:
        offer = await source.create_offer()
        await source.set_answer(await doorbell.handle_offer(offer))
        yield source, doorbell
    finally:
        await source.close()
        await doorbell.close()


async def collect(source: WebRtcSource, video_frames: int, timeout: float) -> list[MediaPacket]:
    packets: list[MediaPacket] = []

    async def run() -> None:
        seen = 0
        async for packet in source.packets():
            packets.append(packet)
            seen += packet.kind == "video"
            if seen >= video_frames:
                return

    await asyncio.wait_for(run(), timeout)
    return packets


def decode_video(packets: list[MediaPacket]) -> list[tuple[int, bool, bool]]:
    """(frame number from the stamp, packet keyframe flag, decoder says keyframe) per frame."""
    decoder = av.CodecContext.create("h264", "r")
    result = []
    for packet in packets:
        if packet.kind != "video":
            continue
        frames = decoder.decode(av.Packet(packet.data))
        assert len(frames) == 1  # zerolatency: one AU in, one picture out
        frame = frames[0]
        frame_no, _ms = read_stamp(frame.to_ndarray(format="gray"))
        result.append((frame_no, packet.keyframe, bool(frame.key_frame)))
    return result


# -- ICE server choice --------------------------------------------------------------------------


def test_choose_prefers_turn_udp_and_one_of_each() -> None:
    servers = choose_ice_servers(SKYBELL_ICE, IceServerHealth())
    assert [s.urls for s in servers] == [
        "stun:stun.kinesisvideo.us-east-1.amazonaws.com:443",
        "turn:1-2-3-4.t-abc.kinesisvideo.us-east-1.amazonaws.com:443?transport=udp",
    ]
    assert (servers[1].username, servers[1].credential) == ("user1", "pass1")


def test_choose_falls_back_to_turns_tcp_and_never_turns_udp() -> None:
    ice: list[dict[str, Any]] = [
        {
            "urls": [
                "turns:h:443?transport=udp",
                "turn:h:443?transport=tcp",
                "turns:h:443?transport=tcp",
            ],
            "username": "u",
            "credential": "c",
        }
    ]
    servers = choose_ice_servers(ice, IceServerHealth())
    assert [s.urls for s in servers] == ["turns:h:443?transport=tcp"]
    only_udp_tls = [{"urls": "turns:h:443?transport=udp", "username": "u", "credential": "c"}]
    assert choose_ice_servers(only_udp_tls, IceServerHealth()) == []


def test_choose_skips_dead_servers_and_turn_without_credentials() -> None:
    health = IceServerHealth()
    health.mark_dead("turn:1-2-3-4.t-abc.kinesisvideo.us-east-1.amazonaws.com:443?transport=udp")
    health.mark_dead("stun:stun.kinesisvideo.us-east-1.amazonaws.com:443")
    servers = choose_ice_servers(SKYBELL_ICE, health)
    # The next UDP TURN wins over TLS; the dead STUN is left out.
    assert [s.urls for s in servers] == [
        "turn:5-6-7-8.t-abc.kinesisvideo.us-east-1.amazonaws.com:443?transport=udp"
    ]
    assert choose_ice_servers([{"urls": "turn:h:3478"}], IceServerHealth()) == []


def test_dead_servers_come_back_after_the_ttl() -> None:
    now = [0.0]
    health = IceServerHealth(ttl=60, clock=lambda: now[0])
    health.mark_dead("stun:h:3478")
    assert health.is_dead("stun:h:3478")
    now[0] = 61
    assert not health.is_dead("stun:h:3478")


def test_parse_candidate_kvs_format() -> None:
    text = "candidate:842163049 1 udp 1677729535 203.0.113.7 54321 typ srflx raddr 10.0.0.2 rport 5"
    candidate = parse_candidate(text, "0", 0)
    assert candidate is not None
    assert (candidate.ip, candidate.port, candidate.type) == ("203.0.113.7", 54321, "srflx")
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("0", 0)
    assert parse_candidate("", "0", 0) is None
    with pytest.raises(WebRtcSourceError):
        parse_candidate("candidate:garbage", "0", 0)


# -- the offer ----------------------------------------------------------------------------------


async def test_offer_is_h264_only_lean_and_under_the_kvs_limit() -> None:
    source = WebRtcSource([])
    try:
        offer = await source.create_offer()
    finally:
        await source.close()
    video, audio = offer.split("m=audio")
    assert "VP8" not in offer
    for profile_level_id in ("42e01f", "4d001f", "64001f"):
        assert f"profile-level-id={profile_level_id}" in video
    for codec in ("opus/48000/2", "PCMU/8000", "PCMA/8000"):
        assert codec in audio
    assert "G722" not in audio
    # Audio both ways (talk), video receive-only: nothing of ours to show the doorbell.
    assert "a=sendrecv" in audio
    assert "a=recvonly" in video
    assert "sha-512" not in offer
    assert "a=end-of-candidates" in offer  # non-trickle: everything is inside
    payload = base64.b64encode(json.dumps({"type": "offer", "sdp": offer}).encode())
    assert len(payload) < MAX_SIGNALING_PAYLOAD // 2


# -- media --------------------------------------------------------------------------------------


async def test_passthrough_delivers_decodable_access_units() -> None:
    # A fixed-GOP camera, so the keyframe flag is checked on more than the first frame.
    settings = SimMediaSettings(
        image_quality=0, fps=15, keyframes="gop", gop_seconds=1.0, audio_codec=None
    )
    async with session(settings) as (source, _doorbell):
        packets = await collect(source, video_frames=20, timeout=20)
    video = [p for p in packets if p.kind == "video"]
    assert all(p.codec == "h264" and p.clock_rate == 90000 for p in video)
    assert video[0].keyframe
    decoded = decode_video(video)
    numbers = [n for n, _flag, _key in decoded]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for frame_no, flag, decoder_key in decoded:
        assert flag == decoder_key
        assert flag == (frame_no % 15 == 0)  # GOP of 1 s at 15 fps
    pts = [p.pts for p in video]
    assert pts[0] == 0
    assert all(b - a == 6000 for a, b in itertools.pairwise(pts))
    sps, pps = extract_sps_pps(video[0].data)
    assert sps is not None
    assert pps is not None


@pytest.mark.parametrize(
    ("profile", "profile_level_id", "sps_profile"),
    [("baseline", "42", "constrained-baseline"), ("main", "4d", "main"), ("high", "64", "high")],
)
async def test_each_h264_profile_negotiates(
    profile: Any, profile_level_id: str, sps_profile: str
) -> None:
    settings = SimMediaSettings(image_quality=0, profile=profile, audio_codec=None)
    async with session(settings) as (source, _doorbell):
        packets = await collect(source, video_frames=2, timeout=20)
        negotiated = source.negotiated_codecs()["video"]
    assert negotiated.startswith(f"video/H264 {profile_level_id}")
    sps, _pps = extract_sps_pps(packets[0].data)
    assert sps is not None
    assert h264_profile(sps)[0] in (sps_profile, "baseline")
    if profile != "baseline":
        assert h264_profile(sps)[0] == sps_profile


@pytest.mark.parametrize(("codec", "clock_rate"), [("opus", 48000), ("pcmu", 8000)])
async def test_audio_packets_arrive(codec: Any, clock_rate: int) -> None:
    settings = SimMediaSettings(image_quality=0, audio_codec=codec)
    async with session(settings) as (source, _doorbell):
        packets = await collect(source, video_frames=8, timeout=20)
    audio = [p for p in packets if p.kind == "audio"]
    assert len(audio) >= 5
    assert {p.codec for p in audio} == {codec}
    assert all(p.clock_rate == clock_rate and p.keyframe for p in audio)
    step = clock_rate // 50  # 20 ms frames
    assert all(b.pts - a.pts == step for a, b in itertools.pairwise(audio))
    if codec == "opus":
        decoder = av.CodecContext.create("opus", "r")
        assert decoder.decode(av.Packet(audio[1].data))
    else:
        assert all(len(p.data) == 160 for p in audio)


async def test_request_keyframe_sends_a_pli() -> None:
    settings = SimMediaSettings(image_quality=0, gop_seconds=60, audio_codec=None)
    async with session(settings) as (source, doorbell):
        await collect(source, video_frames=2, timeout=20)
        source.request_keyframe()
        packets = await collect(source, video_frames=6, timeout=20)
        assert doorbell.stats.keyframe_requests == 1
    assert any(p.keyframe for p in packets)


async def test_trickled_answer_candidates_connect() -> None:
    settings = SimMediaSettings(image_quality=0, audio_codec=None, trickle=True)
    async with session(settings) as (source, _doorbell):
        await source.wait_connected(10)
        packets = await collect(source, video_frames=2, timeout=20)
    assert packets[0].keyframe


async def test_close_ends_packets_and_is_idempotent() -> None:
    settings = SimMediaSettings(image_quality=0, audio_codec=None)
    async with session(settings) as (source, _doorbell):
        await collect(source, video_frames=1, timeout=20)
        states: list[str] = []
        await source.close()
        await source.close()
        async for _packet in source.packets():
            states.append("packet")  # leftovers are fine; the iterator must end
        assert source.connection_state == "closed"


@pytest.mark.slow
async def test_packet_loss_never_delivers_broken_frames() -> None:
    # No retransmissions: every loss must go through PLI and drop-until-keyframe.
    settings = SimMediaSettings(
        image_quality=0,
        bitrate=300_000,
        gop_seconds=60,  # only PLIs make keyframes, so recovery is provably PLI-driven
        audio_codec=None,
        loss_percent=5,
        retransmit=False,
        seed=7,
    )
    async with session(settings) as (source, doorbell):
        packets = await collect(source, video_frames=40, timeout=60)
        stats = source.stats["video"]
        plis = doorbell.stats.keyframe_requests
    assert stats.frames_lost > 0
    assert stats.keyframe_requests > 0
    assert plis > 0
    decoded = decode_video(packets)  # raises if anything fails to decode
    for (prev, _f, _k), (frame_no, flag, decoder_key) in itertools.pairwise(decoded):
        assert flag == decoder_key
        # After a gap the next delivered frame is a keyframe, never a broken P-frame.
        assert frame_no == prev + 1 or flag
    assert sum(1 for _n, flag, _k in decoded if flag) >= 2  # recovered at least once
