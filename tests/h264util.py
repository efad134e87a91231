"""Real H.264 for tests: tiny frames encoded with PyAV's libx264, as hub packets."""

from __future__ import annotations

import fractions
import time
from functools import cache

import av
import numpy as np

from bridge.media.packet import MediaPacket


def x264(width: int, height: int, fps: int, gop: int) -> av.VideoCodecContext:
    """A live-style libx264 encoder: no B-frames, an IDR every ``gop`` frames exactly."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.options = {
        "tune": "zerolatency",
        "preset": "ultrafast",
        "bf": "0",
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "forced-idr": "1",
    }
    return codec  # type: ignore[return-value]


@cache
def encode(
    frames: int = 30, fps: int = 15, gop: int = 10, size: int = 64
) -> tuple[MediaPacket, ...]:
    """``frames`` access units (Annex-B, IDR every ``gop``), pts in 90 kHz from 0."""
    codec = x264(size, size, fps, gop)
    out: list[MediaPacket] = []
    for n in range(frames):
        img = np.full((size, size, 3), (n * 8) % 256, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        for pkt in codec.encode(frame):
            out.append(_to_packet(pkt, fps))
    for pkt in codec.encode(None):
        out.append(_to_packet(pkt, fps))
    return tuple(out)


def _to_packet(pkt: av.Packet, fps: int) -> MediaPacket:
    assert pkt.pts is not None
    return MediaPacket(
        kind="video",
        codec="h264",
        data=bytes(pkt),
        pts=int(pkt.pts) * 90000 // fps,
        clock_rate=90000,
        keyframe=bool(pkt.is_keyframe),
        arrival=time.monotonic(),
    )


def decode_all(packets: list[MediaPacket]) -> int:
    """Decode the packets in order; returns the frame count, raising on any broken frame."""
    codec = av.CodecContext.create("h264", "r")
    count = 0
    for p in packets:
        for _ in codec.decode(av.Packet(p.data)):
            count += 1
    for _ in codec.decode(None):
        count += 1
    return count
