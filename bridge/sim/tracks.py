"""The simulated doorbell's media tracks: live-paced libx264 video with a burned-in clock, and a tone.

Video is real H.264 from PyAV's libx264 (not aiortc's encoder, which is Baseline-only and cannot
be told the GOP): the track returns pre-encoded ``av.Packet`` objects, which aiortc's
RTCRtpSender only packetizes. Each picture carries a burned-in clock, frame counter and a
machine-readable stamp (see picture.py). Audio is a 440 Hz tone through aiortc's encoders.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections import deque
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack

from .media_settings import SimMediaSettings, SimPeerStats, note_media_for_test, resolution_for
from .picture import render_frame

__all__ = ["Cut", "H264Encoder", "ToneTrack", "VideoTrack"]


class Cut:
    """Shared by both tracks and the loss filter: once cut, nothing more is sent."""

    def __init__(self, after: float | None) -> None:
        self._after = after
        self._start: float | None = None
        self._forever = asyncio.Event()  # never set: a cut track waits until it is stopped

    def started(self) -> None:
        if self._start is None:
            self._start = time.monotonic()

    @property
    def active(self) -> bool:
        return (
            self._after is not None
            and self._start is not None
            and time.monotonic() - self._start >= self._after
        )

    def now(self) -> None:
        """Cut from this moment on, whatever ``after`` was."""
        self._after, self._start = 0.0, time.monotonic()

    async def hang(self) -> None:
        await self._forever.wait()


class H264Encoder:
    """libx264 via PyAV; used from one worker thread at a time."""

    def __init__(self, settings: SimMediaSettings, size: tuple[int, int]) -> None:
        width, height = size
        default_bitrate = resolution_for(settings.image_quality)[2]
        self.width, self.height, self.fps = width, height, settings.fps
        self.label = settings.label
        if settings.keyframes == "gop":
            # Keyframes exactly every GOP, never on scene cuts, so tests can predict them.
            gop = max(1, round(settings.gop_seconds * settings.fps))
            keyint = f"keyint={gop}:min-keyint={gop}"
        else:
            # libwebrtc: the first frame is an IDR (a new encoder's always is), then none
            # unless asked for.
            keyint = "keyint=infinite"
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = fractions.Fraction(1, settings.fps)
        codec.framerate = fractions.Fraction(settings.fps, 1)
        codec.bit_rate = settings.bitrate or default_bitrate
        codec.options = {
            "preset": "superfast" if height <= 720 else "ultrafast",
            "tune": "zerolatency",  # no lookahead, no B-frames: one packet out per frame in
            "profile": settings.profile,
            "forced-idr": "1",  # a forced keyframe (PLI) must be an IDR, not a recovery point
            # No scene-cut keyframes either: each one is on schedule or asked for.
            # SPS/PPS stay in-band before every IDR (no global header), as a camera sends them.
            "x264-params": f"{keyint}:scenecut=0:bframes=0",
        }
        self._codec = codec

    def encode(self, frame_no: int, capture_ms: int, keyframe: bool) -> list[Any]:
        picture = render_frame(self.width, self.height, frame_no, capture_ms, self.label)
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        frame.pts = frame_no
        frame.time_base = self._codec.time_base
        frame.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        packets = list(self._codec.encode(frame))
        for packet in packets:
            packet.time_base = self._codec.time_base
        return packets


class VideoTrack(MediaStreamTrack):
    """Paces frames in real time and encodes each off the event loop."""

    kind = "video"

    def __init__(self, settings: SimMediaSettings, cut: Cut, stats: SimPeerStats) -> None:
        super().__init__()
        self._settings = settings
        self._encoder = H264Encoder(settings, settings.size)
        self._size = settings.size  # what frames are encoded at from the next one on
        self._fps = settings.fps
        self._schedule = deque(settings.scale_schedule)
        self._cut = cut
        self._stats = stats
        self._frame_no = 0
        self._start: float | None = None
        self._force_keyframe = False
        self._rebuild: tuple[SimMediaSettings, tuple[int, int]] | None = None
        self._pending: deque[Any] = deque()

    @property
    def size(self) -> tuple[int, int]:
        """The size frames are encoded at now (or from the next frame on)."""
        return self._size

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    def reconfigure(self, settings: SimMediaSettings, size: tuple[int, int]) -> None:
        """Encode from the next frame on with a new encoder (so: an IDR with new SPS/PPS)."""
        self._settings = settings
        self._size = size
        self._rebuild = (settings, size)

    def _encode(
        self,
        frame_no: int,
        capture_ms: int,
        force: bool,
        rebuild: tuple[SimMediaSettings, tuple[int, int]] | None,
    ) -> list[Any]:
        # Runs in a worker thread; recv() awaits it, so there is never more than one.
        if rebuild is not None:
            old = (self._encoder.width, self._encoder.height)
            self._encoder = H264Encoder(*rebuild)
            if rebuild[1] != old:
                self._stats.resolution_changes += 1
        return self._encoder.encode(frame_no, capture_ms, force)

    async def recv(self) -> Any:
        while not self._pending:
            if self._start is None:
                self._start = time.monotonic()
                self._cut.started()
            delay = self._start + self._frame_no / self._fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._cut.active:
                await self._cut.hang()
            while self._schedule and self._schedule[0][0] * self._fps <= self._frame_no:
                _at, width, height = self._schedule.popleft()
                self.reconfigure(self._settings, (width, height))
            # Both switches are taken here, on the loop, so a request arriving while the
            # worker encodes is kept for the next frame instead of racing the thread.
            force, self._force_keyframe = self._force_keyframe, False
            rebuild, self._rebuild = self._rebuild, None
            capture_ms = int(time.time() * 1000)
            packets = await asyncio.to_thread(
                self._encode, self._frame_no, capture_ms, force, rebuild
            )
            self._frame_no += 1
            note_media_for_test()  # a cheap no-op outside the test run's first pass
            self._stats.width, self._stats.height = self._encoder.width, self._encoder.height
            self._pending.extend(packets)
        packet = self._pending.popleft()
        self._stats.frames_sent += 1
        if packet.is_keyframe:
            self._stats.keyframes_sent += 1
        return packet


class ToneTrack(MediaStreamTrack):
    """A 440 Hz sine in 20 ms frames at the codec's native rate (no resampling needed)."""

    kind = "audio"

    def __init__(self, sample_rate: int, cut: Cut) -> None:
        super().__init__()
        self._rate = sample_rate
        self._samples = sample_rate // 50
        self._cut = cut
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
            self._cut.started()
        delay = self._start + self._sent / self._rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._cut.active:
            await self._cut.hang()
        t = (np.arange(self._samples) + self._sent) / self._rate
        tone = (np.sin(2 * math.pi * 440.0 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, self._rate)
        self._sent += self._samples
        return frame
