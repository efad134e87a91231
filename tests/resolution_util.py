"""Real H.264 that changes picture size mid-stream, as libwebrtc's quality scaler does, and a
live-paced fake doorbell session that sends it through a hub stream.

The clip is 320x240, then 160x128, then 320x240 again (``SECTION`` seconds each), encoded by
one libx264 encoder per size, so every change brings a new SPS/PPS in front of an IDR (Chrome's
STAP-A before each IDR). With ``sparse=True`` the parameter sets ride only on the first IDR of
each size, as cameras that send them "when they change" do: later IDRs of the same size lack
them, and an output that must repeat them has to know which ones apply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache

import av
import numpy as np

from bridge.media.hub import Hub, LiveCall, Stream
from bridge.media.packet import NAL_PPS, NAL_SPS, MediaPacket, iter_nal_units

from .fake_doorbell import FPS, g711_audio
from .h264util import x264

BIG = (320, 240)
SMALL = (160, 128)
SIZES = (BIG, SMALL, BIG)
SECTION = 1.0  # seconds of each size
GOP = 8  # two IDRs per section: the second one shows whether parameter sets are repeated


def _picture(width: int, height: int, n: int) -> av.VideoFrame:
    # A gradient with a moving bar: cheap to encode, and a decoder error would show as a
    # failed decode rather than pass unnoticed on a flat picture.
    x = np.linspace(0, 255, width, dtype=np.uint8)
    img = np.broadcast_to(x, (height, width)).copy()
    bar = (n * 7) % width
    img[:, bar : bar + 6] = 255 - img[:, bar : bar + 6]
    rgb = np.stack([img, img[::-1], np.full_like(img, (n * 9) % 256)], axis=-1)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def _strip_parameter_sets(data: bytes) -> bytes:
    kept = [n for n in iter_nal_units(data) if n[0] & 0x1F not in (NAL_SPS, NAL_PPS)]
    return b"".join(b"\x00\x00\x00\x01" + n for n in kept)


@cache
def changing_video(sparse: bool = False) -> tuple[MediaPacket, ...]:
    """The three sections back to back: pts in 90 kHz from 0, arrival unset."""
    out: list[MediaPacket] = []
    n = 0
    for width, height in SIZES:
        codec = x264(width, height, FPS, GOP)
        first_key = True
        packets: list[av.Packet] = []
        for i in range(round(SECTION * FPS)):
            frame = _picture(width, height, n + i)
            frame.pts = i
            packets += codec.encode(frame)
        packets += codec.encode(None)
        for i, pkt in enumerate(packets):
            data = bytes(pkt)
            if pkt.is_keyframe and not first_key and sparse:
                data = _strip_parameter_sets(data)
            first_key = first_key and not pkt.is_keyframe
            out.append(
                MediaPacket(
                    "video", "h264", data, (n + i) * 90000 // FPS, 90000, pkt.is_keyframe, 0.0
                )
            )
        n += len(packets)
    return tuple(out)


def sizes_of(packets: list[MediaPacket] | tuple[MediaPacket, ...]) -> list[tuple[int, int]]:
    """Decode in order (one decoder, as a player would) and return each picture's size."""
    codec = av.CodecContext.create("h264", "r")
    out = []
    for p in packets:
        out += [(f.width, f.height) for f in codec.decode(av.Packet(p.data))]
    out += [(f.width, f.height) for f in codec.decode(None)]
    return out


class ChangingSession:
    """A fake doorbell: the changing clip (and G.711 audio) at wall-clock pace, looped
    ``loops`` times (forever when None); records when each size started being sent."""

    def __init__(self, loops: int | None = None, *, sparse: bool = False, audio: bool = True):
        self.loops = loops
        self.sparse = sparse
        self.audio = audio
        self.closed = False
        self.keyframe_requests = 0
        self.sent: list[MediaPacket] = []

    async def packets(self) -> AsyncIterator[MediaPacket]:
        video = changing_video(self.sparse)
        tone = g711_audio()
        start = time.monotonic()
        vi = ai = 0
        end = None if self.loops is None else self.loops * len(video)
        while not self.closed and (end is None or vi < end):
            vt = vi / FPS
            at = ai * 0.02 if self.audio else float("inf")
            await asyncio.sleep(max(0.0, start + min(vt, at) - time.monotonic()))
            now = time.monotonic()
            if vt <= at:
                src = video[vi % len(video)]
                packet = dataclasses.replace(src, pts=vi * 90000 // FPS, arrival=now)
                self.sent.append(packet)
                vi += 1
            else:
                src = tone[ai % len(tone)]
                packet = dataclasses.replace(src, pts=ai * 160, arrival=now)
                ai += 1
            yield packet

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    async def close(self) -> None:
        self.closed = True


@dataclass
class ChangingConnector:
    """Makes a ChangingSession per connect."""

    loops: int | None = None
    sparse: bool = False
    audio: bool = True
    made: list[ChangingSession] = field(default_factory=list)

    async def __call__(self) -> LiveCall:
        session = ChangingSession(self.loops, sparse=self.sparse, audio=self.audio)
        self.made.append(session)
        return session


def changing_stream(connector: ChangingConnector) -> tuple[Hub, Stream]:
    """A hub with one stream fed by ``connector``."""
    hub = Hub(backoff=(0.05, 0.2), idle_timeout=5.0)
    return hub, hub.add("dev-1", "front-door", connector)
