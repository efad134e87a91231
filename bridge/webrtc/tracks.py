"""The relay tracks: hub packets handed to aiortc as pre-encoded ``av.Packet`` objects.

aiortc's RTCRtpSender does not encode an ``av.Packet`` a track returns: its encoder's ``pack``
only splits the Annex-B access unit into RTP payloads (STAP-A/FU-A) and turns pts/time_base
into the RTP timestamp. So the doorbell's bitstream reaches the viewer untouched, at the cost
of packetizing and SRTP only.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from bridge.media.buffers import StreamEnded, Subscriber
from bridge.media.packet import NAL_AUD, NAL_PPS, NAL_SPS, MediaPacket, h264_nal_types
from bridge.media.sps import ParameterSetTracker

__all__ = ["AudioRelayTrack", "H264RelayTrack", "RelayFeed", "with_parameter_sets"]

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
_START = b"\x00\x00\x00\x01"
# A packet that waited this long inside the bridge is backlog (the GOP a viewer joins with, or
# a stall), not live. Video backlog is squeezed in time and audio backlog is dropped.
_BEHIND = 0.15
# Backlog frames go out 1 ms apart in RTP time. Sent with their real spacing, the cached GOP a
# viewer starts with would put the whole GOP's age (up to a few seconds) between the doorbell
# and the screen for good, because a browser plays frames at their RTP pace. Squeezed, the
# browser decodes through the GOP at once and lands at the live edge. Frames still need
# distinct timestamps: equal ones would be read as slices of one picture.
_CATCH_UP_STEP = 90
_AUDIO_QUEUE = 50  # 1 s of 20 ms frames; the video pull drains the hub far more often


def with_parameter_sets(data: bytes, sps: bytes | None, pps: bytes | None) -> bytes:
    """Prefix a keyframe with whichever of SPS/PPS it lacks, so a viewer can start there.

    Many encoders (x264 among them) send parameter sets with the first IDR only; a viewer that
    joins at a later keyframe would otherwise have nothing to decode it with.
    """
    types = h264_nal_types(data)
    prefix = b""
    if sps and NAL_SPS not in types:
        prefix += _START + sps
    if pps and NAL_PPS not in types:
        prefix += _START + pps
    if not prefix:
        return data
    cut = 0
    if types[:1] == [NAL_AUD]:  # an access unit delimiter must stay the first NAL unit
        first = data.find(b"\x00\x00\x01")
        nxt = data.find(b"\x00\x00\x01", first + 3)
        cut = len(data) if nxt == -1 else (nxt - 1 if data[nxt - 1] == 0 else nxt)
    return data[:cut] + prefix + data[cut:]


class RelayFeed:
    """One viewer's hub subscriber, split by kind: the video track pulls, audio is routed aside.

    The hub delivers both kinds through one bounded subscriber, whose skip-to-keyframe policy
    then protects a slow viewer; the video sender drains it, so audio only waits a frame.
    """

    def __init__(self, sub: Subscriber, audio_codec: str | None, on_end: Callable[[], None]):
        self.audio_codec = audio_codec
        self._sub = sub
        self._audio: deque[MediaPacket] = deque(maxlen=_AUDIO_QUEUE)
        self._audio_ready = asyncio.Event()
        self._ended = False
        self._on_end = on_end

    async def next_video(self) -> MediaPacket:
        """The next H.264 access unit; MediaStreamError once the subscriber has ended."""
        while True:
            try:
                packet = await self._sub.get()
            except StreamEnded:
                self._end()
                raise MediaStreamError from None
            if packet.kind == "video":
                if packet.codec == "h264":
                    return packet
            elif packet.codec == self.audio_codec:
                self._audio.append(packet)
                self._audio_ready.set()

    async def next_audio(self) -> MediaPacket:
        """The next audio frame of the negotiated codec; MediaStreamError at the end."""
        while not self._audio:
            if self._ended:
                raise MediaStreamError
            self._audio_ready.clear()
            await self._audio_ready.wait()
        return self._audio.popleft()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._audio_ready.set()
            self._on_end()


class H264RelayTrack(MediaStreamTrack):
    """Video: each hub access unit as an ``av.Packet`` with a 90 kHz pts (see module doc)."""

    kind = "video"

    def __init__(
        self, feed: RelayFeed, parameter_sets: Callable[[], tuple[bytes | None, bytes | None]]
    ) -> None:
        super().__init__()
        self._feed = feed
        # A resolution change arrives as new SPS/PPS in front of an IDR and is forwarded as is;
        # an IDR without them gets the ones this viewer last saw in-band (else the stream's
        # latest), so a viewer behind a change is not handed the new sets for an old IDR.
        self._params = ParameterSetTracker(parameter_sets)
        self._last_in: int | None = None
        self._out = 0
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.squeezed = 0  # backlog frames sent ahead of their time
        self.first_keyframe_at: float | None = None

    async def recv(self) -> av.Packet[Any]:
        """The next access unit, ready for aiortc's H.264 packetizer."""
        packet = await self._feed.next_video()
        now = time.monotonic()
        if self._last_in is not None:
            # The hub's timeline strictly increases, also across reconnects (with a gap).
            gap = packet.pts - self._last_in
            if now - packet.arrival > _BEHIND:
                gap = min(gap, _CATCH_UP_STEP)
                self.squeezed += 1
            self._out += max(gap, 1)
        self._last_in = packet.pts
        data = packet.data
        if packet.keyframe:
            self._params.update(data)
            data = with_parameter_sets(data, *self._params.current)
            self.keyframes += 1
            if self.first_keyframe_at is None:
                self.first_keyframe_at = now
        out = av.Packet(data)
        out.pts = self._out
        out.time_base = VIDEO_TIME_BASE
        self.frames += 1
        self.bytes += len(data)
        return out


class AudioRelayTrack(MediaStreamTrack):
    """Audio: encoded frames of the doorbell's codec, passed through; backlog is dropped."""

    kind = "audio"

    def __init__(self, feed: RelayFeed) -> None:
        super().__init__()
        self._feed = feed
        self.frames = 0
        self.dropped = 0

    async def recv(self) -> av.Packet[Any]:
        """The next live audio frame; pts stays in the codec's RTP clock."""
        while True:
            packet = await self._feed.next_audio()
            # Old audio would only build up delay in the browser's jitter buffer (it plays
            # every sample); the hub's timeline keeps the pts gap honest for lip sync.
            if time.monotonic() - packet.arrival > _BEHIND:
                self.dropped += 1
                continue
            out = av.Packet(packet.data)
            out.pts = packet.pts
            out.time_base = fractions.Fraction(1, packet.clock_rate)
            self.frames += 1
            return out
