"""Remuxing hub packets into an FFmpeg container: H.264 copied, never re-encoded; audio to AAC.

Shared by the clip writer (an MP4 file) and the publish muxer (RTSP, FLV, MPEG-TS to a media
server): both open the container at the first keyframe, size the video track from its SPS,
and keep each track's timestamps strictly increasing from zero. Blocking throughout.
"""

from __future__ import annotations

import fractions
from typing import Any

import av

from bridge.media.aac import AacTranscoder
from bridge.media.packet import MediaPacket, extract_sps_pps
from bridge.media.sps import parse_sps

__all__ = ["Remuxer"]

_VIDEO_TB = fractions.Fraction(1, 90000)


class Remuxer:
    """Opens its container lazily, then muxes packet by packet.

    Tracks are created from the first keyframe (for the picture size) and the first audio
    packet; packets before the first keyframe are skipped so the output starts decodable.
    ``audio=False`` writes video only. Subclasses say where the container goes (``_create``).
    """

    def __init__(self, *, audio: bool = True, wait_for_audio: float = 0.5) -> None:
        self.bytes = 0
        self.frames = 0
        self.audio_frames = 0
        self.width = self.height = 0
        self.audio_codec = ""
        self._want_audio = audio
        self._wait_for_audio = wait_for_audio
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._aac: AacTranscoder | None = None
        self._t0: float | None = None  # seconds of the first keyframe, the output's zero
        self._pending: list[MediaPacket] = []
        self._last_dts: dict[str, int] = {}

    @property
    def opened(self) -> bool:
        """True once the container exists (for a push: the target accepted the stream)."""
        return self._container is not None

    def write(self, packet: MediaPacket) -> None:
        """Add one packet (blocking; raises av.FFmpegError or OSError when the output fails)."""
        if self._container is None:
            self._buffer_until_ready(packet)
        else:
            self._mux(packet)

    def _create(self) -> Any:
        """Open the output container (write mode, nothing muxed yet)."""
        raise NotImplementedError

    def _buffer_until_ready(self, packet: MediaPacket) -> None:
        # Both tracks go in the header (moov, SDP, FLV metadata), so hold packets from the first
        # keyframe until audio shows up, or briefly when the doorbell sends none.
        if not self._pending and not (packet.kind == "video" and packet.keyframe):
            return
        self._pending.append(packet)
        has_audio = any(p.kind == "audio" for p in self._pending)
        waited = packet.arrival - self._pending[0].arrival
        if has_audio or not self._want_audio or waited >= self._wait_for_audio:
            self._open()
            pending, self._pending = self._pending, []
            for p in pending:
                self._mux(p)

    def _open(self) -> None:
        key = self._pending[0]
        sps, _ = extract_sps_pps(key.data)
        if sps is None:
            raise ValueError("the first keyframe carries no SPS; cannot size the video track")
        info = parse_sps(sps)
        self.width, self.height = info.width, info.height
        self._container = self._create()
        # No codec context: packets are muxed as they are. PyAV takes the track's extradata
        # (SPS/PPS) from the first keyframe; the size is set because the RTSP muxer refuses a
        # video track without it ("dimensions not set").
        self._video = self._container.add_mux_stream("h264", width=info.width, height=info.height)
        self._video.time_base = _VIDEO_TB
        self._t0 = key.pts / key.clock_rate
        audio = next((p for p in self._pending if p.kind == "audio"), None)
        if self._want_audio and audio is not None:
            self._aac = AacTranscoder(audio.codec, audio.clock_rate)
            stream = self._container.add_stream("aac", rate=self._aac.sample_rate)
            stream.codec_context.layout = "mono"
            # The encoder's AudioSpecificConfig, so the header describes what follows.
            stream.codec_context.extradata = self._aac.extradata
            stream.time_base = fractions.Fraction(1, self._aac.sample_rate)
            self._audio = stream
            self.audio_codec = f"aac (from {audio.codec})"

    def _mux(self, packet: MediaPacket) -> None:
        if packet.kind == "video":
            self._mux_one(self._video, packet, _VIDEO_TB, "video")
            self.frames += 1
        elif self._aac is not None:
            for aac in self._aac.transcode(packet):
                self._mux_one(self._audio, aac, fractions.Fraction(1, aac.clock_rate), "audio")
                self.audio_frames += 1

    def _mux_one(self, stream: Any, packet: MediaPacket, tb: fractions.Fraction, kind: str) -> None:
        assert self._t0 is not None
        pts = packet.pts - round(self._t0 * packet.clock_rate)
        if pts < 0:
            return  # before the first keyframe
        last = self._last_dts.get(kind)
        if last is not None and pts <= last:
            pts = last + 1  # muxers refuse non-increasing dts (FLV even equal ones)
        self._last_dts[kind] = pts
        # A fresh av.Packet: mux() rescales its timestamps in place, and the hub's bytes are
        # shared with every other output.
        out = av.Packet(packet.data)
        out.pts = out.dts = pts
        out.time_base = tb
        out.stream = stream
        out.is_keyframe = packet.keyframe
        self._container.mux(out)
        self.bytes += len(packet.data)
