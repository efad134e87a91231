"""Test helpers for the outputs: a live-paced fake doorbell session, a hub stream, a server,
and ffmpeg/ffprobe run without blocking the event loop that serves RTSP."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import av
import numpy as np

from bridge.clock import SYSTEM_CLOCK, Clock
from bridge.media.hub import Hub, LiveCall, Stream
from bridge.media.packet import MediaPacket

from .h264util import x264

FPS = 15
WIDTH, HEIGHT = 160, 128


@cache
def noisy_video(frames: int = 30, gop: int = 15) -> tuple[MediaPacket, ...]:
    """Real H.264 whose IDR slices are larger than one RTP packet (so FU-A is exercised).

    x264 repeats the parameter sets in front of every IDR, as most cameras do.
    """
    codec = x264(WIDTH, HEIGHT, FPS, gop)
    noise = np.random.default_rng(7).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    out: list[MediaPacket] = []
    for n in range(frames):
        img = noise.copy()
        img[:, (n * 5) % WIDTH : (n * 5) % WIDTH + 8] = 255  # a moving bar
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        out += [_video_packet(p) for p in codec.encode(frame)]
    out += [_video_packet(p) for p in codec.encode(None)]
    return tuple(out)


def _video_packet(pkt: av.Packet) -> MediaPacket:
    assert pkt.pts is not None
    return MediaPacket(
        "video", "h264", bytes(pkt), int(pkt.pts) * 90000 // FPS, 90000, pkt.is_keyframe, 0.0
    )


@cache
def g711_audio(seconds: float = 1.0) -> tuple[MediaPacket, ...]:
    """20 ms PCMU frames of a 440 Hz tone, RTP-style pts at 8 kHz."""
    enc = av.CodecContext.create("pcm_mulaw", "w")
    enc.sample_rate = 8000
    enc.layout = "mono"
    enc.format = "s16"
    enc.open()
    out = []
    for n in range(int(seconds * 50)):
        t = np.arange(160) + n * 160
        tone = (np.sin(2 * np.pi * 440 * t / 8000) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = 8000
        out += [
            MediaPacket("audio", "pcmu", bytes(p), n * 160, 8000, True, 0.0)
            for p in enc.encode(frame)
        ]
    return tuple(out)


class CloudLiveCall:
    """A fake doorbell: loops real video and G.711 audio at the pace of ``clock`` (real time
    unless a test passes a virtual clock), with RTP-like timestamps from random origins, for
    ``duration`` seconds (or until closed)."""

    def __init__(
        self, duration: float | None = None, audio: bool = True, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.duration = duration
        self.audio = audio
        self.clock = clock
        self.sent_video: list[tuple[float, MediaPacket]] = []  # (wall time sent, packet)
        self.closed = False

    async def packets(self) -> AsyncIterator[MediaPacket]:
        video, audio = noisy_video(), g711_audio()
        v0, a0 = random.randrange(1 << 32), random.randrange(1 << 32)
        start = self.clock.now()
        vi = ai = 0
        while not self.closed:
            vt = vi / FPS
            at = ai * 0.02 if self.audio else float("inf")
            t = min(vt, at)
            if self.duration is not None and t >= self.duration:
                return
            await self.clock.sleep(max(0.0, start + t - self.clock.now()))
            now = self.clock.now()
            if vt <= at:
                src = video[vi % len(video)]
                pts = (v0 + vi * 90000 // FPS) % (1 << 32)
                packet = MediaPacket("video", "h264", src.data, pts, 90000, src.keyframe, now)
                self.sent_video.append((now, packet))
                vi += 1
            else:
                src = audio[ai % len(audio)]
                pts = (a0 + ai * 160) % (1 << 32)
                packet = MediaPacket("audio", "pcmu", src.data, pts, 8000, True, now)
                ai += 1
            yield packet

    def request_keyframe(self, kind: str = "pli") -> None:
        pass

    async def close(self) -> None:
        self.closed = True


@dataclass
class Connector:
    """Makes a new CloudLiveCall per connect; the first ``durations`` ones end on their own."""

    durations: list[float | None] = field(default_factory=list)
    audio: bool = True
    made: list[CloudLiveCall] = field(default_factory=list)
    clock: Clock = SYSTEM_CLOCK  # the sessions' and make_stream's hub's

    async def __call__(self) -> LiveCall:
        duration = self.durations.pop(0) if self.durations else None
        session = CloudLiveCall(duration, self.audio, self.clock)
        self.made.append(session)
        return session


def make_stream(connector: Connector) -> tuple[Hub, Stream]:
    hub = Hub(backoff=(0.05, 0.2), idle_timeout=5.0, clock=connector.clock)
    return hub, hub.add("dev-1", "front-door", connector)


async def run(*cmd: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run a command without blocking the loop; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def probe(path_or_url: str, *extra: str, timeout: float = 30.0) -> dict[str, Any]:
    """ffprobe's JSON for streams (and whatever ``extra`` asks for)."""
    code, out, err = await run(
        "ffprobe",
        "-v",
        "error",
        "-of",
        "json",
        "-show_streams",
        *extra,
        path_or_url,
        timeout=timeout,
    )
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result
