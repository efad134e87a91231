"""Pushing hub packets to a media server with FFmpeg's own muxers and protocols (via PyAV).

Blocking from end to end (connecting, the RTSP ANNOUNCE/RECORD handshake, every write), so
``Publisher`` calls it from its own thread. H.264 is copied, never re-encoded; audio becomes AAC.
"""

from __future__ import annotations

import contextlib
import fractions
from typing import Any
from urllib.parse import urlsplit

import av

from bridge.media.aac import AacTranscoder
from bridge.media.packet import MediaPacket, extract_sps_pps
from bridge.media.sps import parse_sps

__all__ = ["PushMuxer", "container_format"]

_VIDEO_TB = fractions.Fraction(1, 90000)
# Seconds a connect or a write may block before FFmpeg's interrupt callback gives up: a target
# that accepts and then stalls must fail (and be retried) rather than hold the thread forever.
IO_TIMEOUT = 10.0


def container_format(url: str) -> tuple[str, dict[str, str]]:
    """The FFmpeg muxer and its options for a publish URL's scheme."""
    scheme = urlsplit(url).scheme.lower()
    # Microseconds, as FFmpeg takes them. PyAV's own ``timeout`` is for reading: an output
    # container given one fails to open.
    io_timeout = str(round(IO_TIMEOUT * 1_000_000))
    if scheme in ("rtsp", "rtsps"):
        # RTP over the RTSP connection: one TCP stream that crosses NAT and firewalls, which
        # UDP to a media server often does not.
        return "rtsp", {"rtsp_transport": "tcp", "timeout": io_timeout}
    if scheme in ("rtmp", "rtmps"):
        return "flv", {"rw_timeout": io_timeout}
    if scheme == "srt":
        return "mpegts", {"rw_timeout": io_timeout}
    raise ValueError(f"cannot publish to {scheme!r} URLs")


class PushMuxer:
    """One connection to a target: opened at the first keyframe, written packet by packet.

    Timestamps start at zero at the first keyframe; the hub's timeline is already continuous
    across doorbell reconnects, and each kind's dts is kept strictly increasing on top.
    """

    def __init__(self, url: str, *, audio: bool = True, wait_for_audio: float = 0.5) -> None:
        self.url = url
        self.bytes = 0
        self.frames = 0
        self.audio_frames = 0
        self._want_audio = audio
        self._wait_for_audio = wait_for_audio
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._aac: AacTranscoder | None = None
        self._t0: float | None = None
        self._pending: list[MediaPacket] = []
        self._last: dict[str, int] = {}

    @property
    def opened(self) -> bool:
        """True once the target accepted the stream."""
        return self._container is not None

    def write(self, packets: list[MediaPacket]) -> None:
        """Mux packets in order (blocking; raises av.FFmpegError or OSError on a target failure)."""
        for packet in packets:
            if self._container is None:
                self._buffer_until_ready(packet)
            else:
                self._mux(packet)

    def _buffer_until_ready(self, packet: MediaPacket) -> None:
        # Both tracks go in the header (SDP, FLV metadata), so hold packets from the first
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
        fmt, options = container_format(self.url)
        key = self._pending[0]
        self._container = av.open(self.url, "w", format=fmt, options=options)
        # No codec context: the packets are muxed as they are. PyAV takes the stream's
        # extradata (SPS/PPS) from the first keyframe before it writes the header, but the
        # RTSP muxer refuses a video stream without its size ("dimensions not set").
        sps, _ = extract_sps_pps(key.data)
        if sps is None:
            raise ValueError("the first keyframe carries no SPS")
        info = parse_sps(sps)
        self._video = self._container.add_mux_stream("h264", width=info.width, height=info.height)
        self._video.time_base = _VIDEO_TB
        self._t0 = key.pts / key.clock_rate
        audio = next((p for p in self._pending if p.kind == "audio"), None)
        if self._want_audio and audio is not None:
            self._aac = AacTranscoder(audio.codec, audio.clock_rate)
            stream = self._container.add_stream("aac", rate=self._aac.sample_rate)
            stream.codec_context.layout = "mono"
            # The encoder's AudioSpecificConfig, so the SDP/FLV header describes what follows.
            stream.codec_context.extradata = self._aac.extradata
            stream.time_base = fractions.Fraction(1, self._aac.sample_rate)
            self._audio = stream

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
        last = self._last.get(kind)
        if last is not None and pts <= last:
            pts = last + 1  # muxers refuse non-increasing dts (FLV even on equal ones)
        self._last[kind] = pts
        # A fresh av.Packet: mux() rescales its timestamps in place, and the hub's bytes are
        # shared with every other output.
        out = av.Packet(packet.data)
        out.pts = out.dts = pts
        out.time_base = tb
        out.stream = stream
        out.is_keyframe = packet.keyframe
        self._container.mux(out)
        self.bytes += len(packet.data)

    def close(self) -> None:
        """Finish the push (RTSP TEARDOWN, FLV trailer); safe to call twice, never raises."""
        container, self._container = self._container, None
        if container is not None:
            # The target may be gone already; there is nothing left to tell it then.
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
