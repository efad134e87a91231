"""Fuzzing the H.264 ingest path (issue 12): arbitrary RTP through aiortc's parser and H.264
depayloader and our frame assembler, and the Annex-B helpers on arbitrary bytes.

What the doorbell (or anyone who can reach the WebRTC port) sends is outside input. Each stage
gives a result or its documented error (aiortc raises ValueError, which its receiver drops), the
assembler never hands out more bytes than it was given, never releases a picture before a
usable keyframe, and reassembles a real stream exactly whatever its sequence and timestamp
origins and however its packets are reordered.
"""

from __future__ import annotations

import random
import tracemalloc

from aiortc import RTCRtpCodecParameters
from aiortc.codecs import depayload
from aiortc.rtp import RtpPacket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.media.assembler import AudioAssembler, VideoAssembler
from bridge.media.packet import (
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    extract_sps_pps,
    h264_is_keyframe,
    h264_nal_types,
    h264_profile,
    iter_nal_units,
)
from bridge.rtsp.rtp import h264_payloads

from .fake_doorbell import noisy_video

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=96)


class Clock:
    """A clock that never moves unless told: gaps wait for retransmissions, not for time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# Bytes shaped like H.264: start codes, NAL headers of every type, FU-A/STAP-A indicators.
_pieces = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x00", b"\x00\x00\x03"]),
    st.integers(0, 255).map(lambda b: bytes([b])),
    st.sampled_from([b"\x67\x42\xc0\x1e", b"\x68\xce", b"\x65\x88", b"\x41\x9a", b"\x09\xf0"]),
    st.sampled_from([b"\x7c\x85", b"\x7c\x45", b"\x7c\x05", b"\x78\x00\x04", b"\x78\xff\xff"]),
)
h264_like = st.one_of(st.binary(max_size=400), st.lists(_pieces, max_size=30).map(b"".join))


# -- Annex-B helpers ------------------------------------------------------------------------------


@FUZZ
@given(h264_like)
def test_fuzz_annex_b_helpers_on_arbitrary_bytes(data: bytes) -> None:
    nals = list(iter_nal_units(data))
    assert all(nals)
    assert sum(len(n) for n in nals) <= len(data)
    assert all(n in data for n in nals)
    types = h264_nal_types(data)
    assert types == [n[0] & 0x1F for n in nals]
    assert h264_is_keyframe(data) == (NAL_IDR in types)
    sps, pps = extract_sps_pps(data)
    assert sps is None or sps[0] & 0x1F == NAL_SPS
    assert pps is None or pps[0] & 0x1F == NAL_PPS
    for nal in nals:
        try:
            name, level_id = h264_profile(nal)
        except ValueError:
            continue
        assert name
        assert len(level_id) == 6


# -- aiortc's RTP parser and H.264 depayloader, as the receiver uses them -------------------------


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"\x80\x60" + b)))
def test_fuzz_rtp_packet_parse_gives_a_packet_or_value_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except ValueError:
        return
    assert 0 <= packet.sequence_number < 1 << 16
    assert 0 <= packet.timestamp < 1 << 32
    assert len(packet.payload) <= len(data)


@FUZZ
@given(h264_like)
def test_fuzz_h264_depayload_gives_annex_b_or_value_error(payload: bytes) -> None:
    try:
        data = depayload(H264, payload)
    except ValueError:
        return  # the receiver logs it at debug and drops the packet
    # Bounded: at most a 4-byte start code more per NAL unit than the payload held.
    assert len(data) <= 3 * len(payload) + 4


# -- the frame assembler ------------------------------------------------------------------------

_rtp = st.tuples(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.booleans(),
    h264_like,
)


def _depayloaded(packets: list[tuple[int, int, bool, bytes]]) -> list[tuple[int, int, bool, bytes]]:
    out = []
    for seq, ts, marker, payload in packets:
        try:
            out.append((seq, ts, marker, depayload(H264, payload)))
        except ValueError:
            continue
    return out


@settings(FUZZ, max_examples=200)
@given(
    st.lists(_rtp, max_size=60),
    st.lists(st.floats(0, 0.5), max_size=60),
    st.booleans(),
)
def test_fuzz_assembler_on_arbitrary_rtp(
    packets: list[tuple[int, int, bool, bytes]], steps: list[float], depayload_first: bool
) -> None:
    if depayload_first:
        packets = _depayloaded(packets)
    clock = Clock()
    assembler = VideoAssembler(clock=clock, capacity=32)
    given_bytes = released = 0
    frames = []
    for i, packet in enumerate(packets):
        clock.now += steps[i] if i < len(steps) else 0.0
        given_bytes += len(packet[3])
        pli, out = assembler.push(*packet)
        assert isinstance(pli, bool)
        frames += out
        released += sum(len(f.data) for f in out)
    # Each packet's bytes go out at most once, and every frame holds some.
    assert released <= given_bytes
    assert all(f.data for f in frames)
    assert assembler.stats.frames_delivered == len(frames)
    # Never a picture a decoder cannot start from: the first one out is a keyframe.
    if frames:
        assert frames[0].keyframe


def _real_rtp(seq0: int, ts0: int) -> tuple[list[bytes], list[tuple[int, int, bool, bytes]]]:
    """A real encoded stream as RTP (our packetizer) and depayloaded by aiortc."""
    units = [p.data for p in noisy_video()]
    packets = []
    seq = seq0
    for n, unit in enumerate(units):
        payloads = h264_payloads(unit)
        for i, payload in enumerate(payloads):
            ts = (ts0 + n * 6000) & 0xFFFFFFFF
            packets.append((seq & 0xFFFF, ts, i == len(payloads) - 1, depayload(H264, payload)))
            seq += 1
    return units, packets


def _nals(data: bytes) -> list[bytes]:
    return [n for n in iter_nal_units(data) if n[0] & 0x1F != 9]  # no access unit delimiters


@settings(FUZZ, max_examples=60)
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 8),
    st.randoms(use_true_random=False),
)
def test_fuzz_assembler_reassembles_a_real_stream_whatever_the_origins_and_order(
    seq0: int, ts0: int, window: int, rng: random.Random
) -> None:
    units, packets = _real_rtp(seq0, ts0)
    # Reorder within a small window (no loss): a jitter that NACK-free networks do produce. The
    # very first packet stays first: before any packet the assembler cannot know where a frame
    # starts, so a stream whose first arrival is its second packet (the PPS, which begins with a
    # start code) is taken to start there, that frame is unusable, and the first GOP is dropped
    # with a PLI. That costs one GOP once per session; trading it for start-up latency is not
    # worth it.
    shuffled = packets[:1]
    for start in range(1, len(packets), window + 1):
        chunk = packets[start : start + window + 1]
        rng.shuffle(chunk)
        shuffled += chunk
    assembler = VideoAssembler(clock=Clock())
    frames = []
    for packet in shuffled:
        frames += assembler.push(*packet)[1]
    assert [_nals(f.data) for f in frames] == [_nals(u) for u in units]
    assert [f.keyframe for f in frames] == [h264_is_keyframe(u) for u in units]
    assert [f.pts for f in frames] == [n * 6000 for n in range(len(units))]


def test_fuzz_assembler_memory_is_bounded_without_frame_boundaries() -> None:
    # A sender that never completes a frame (no marker, one timestamp, no start codes) must not
    # make the assembler hold everything it sent.
    rng = random.Random(12)
    assembler = VideoAssembler(clock=Clock(), capacity=64)
    tracemalloc.start()
    try:
        for seq in range(3000):
            assembler.push(seq & 0xFFFF, 1234, False, b"\x41" + rng.randbytes(999))
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 2 * 64 * 1100  # about capacity packets, not the 3 MB sent


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)), max_size=80))
def test_fuzz_audio_assembler_releases_each_packet_once_in_order(
    packets: list[tuple[int, int]],
) -> None:
    assembler = AudioAssembler(clock=Clock())
    released = 0
    for seq, ts in packets:
        pli, frames = assembler.push(seq, ts, False, b"x")
        assert not pli
        assert len(frames) <= 1
        released += len(frames)
    stats = assembler.stats
    assert stats.frames_delivered == released
    assert stats.frames_delivered + stats.frames_dropped == len(packets)
