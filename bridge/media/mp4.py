"""Writing hub packets to MP4 by remuxing: H.264 is copied, audio becomes AAC.

The file is fragmented (a fragment per keyframe, moov up front), so a clip being written is
playable up to its last fragment even if the process is killed mid-write.
"""

from __future__ import annotations

import fractions
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import av

from bridge.media.aac import AacTranscoder
from bridge.media.packet import MediaPacket, extract_sps_pps
from bridge.media.sps import parse_sps

__all__ = ["Mp4Writer"]

_LOGGER = logging.getLogger(__name__)
_VIDEO_TB = fractions.Fraction(1, 90000)
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


class Mp4Writer:
    """Remuxes a stream of hub packets into one MP4 file.

    Streams are created lazily from the first keyframe (for the picture size) and the first
    audio packet; packets before the first keyframe are skipped so the file starts decodable.
    ``audio=False`` writes video only. Timestamps are made relative to the first keyframe.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        audio: bool = True,
        wait_for_audio: float = 0.5,
        fragment_seconds: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.frames = 0
        self.audio_frames = 0
        self.width = self.height = 0
        self.video_codec = ""
        self.audio_codec = ""
        self._want_audio = audio
        self._wait_for_audio = wait_for_audio
        self._options = dict(FRAGMENTED)
        if fragment_seconds is not None:
            # Cut a fragment at least this often, not only at keyframes (a doorbell's GOP can be
            # long), and flush after each muxed packet: the mp4 muxer only hands bytes to the
            # file when it cuts a fragment, so each fragment reaches the disk whole, and a killed
            # process loses at most the fragment in progress instead of a 32 KiB I/O buffer.
            self._options["frag_duration"] = str(round(fragment_seconds * 1_000_000))
            self._options["flush_packets"] = "1"
        self._metadata = dict(metadata or {})  # mvhd/udta tags, written with the moov up front
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._aac: AacTranscoder | None = None
        self._t0: float | None = None  # seconds of the first keyframe, the file's zero
        self._pending: list[MediaPacket] = []
        self._last_dts: dict[str, int] = {}

    @property
    def duration(self) -> float:
        """Seconds of video written."""
        last = self._last_dts.get("video")
        return 0.0 if last is None else last / 90000 + 1 / 15

    def write(self, packet: MediaPacket) -> None:
        """Add one packet (blocking: call from a worker thread for large volumes)."""
        if self._container is None:
            self._buffer_until_ready(packet)
            return
        self._mux(packet)

    def _buffer_until_ready(self, packet: MediaPacket) -> None:
        # Both tracks must exist before the header is written, so hold packets briefly until
        # the first keyframe and (if any comes soon) the first audio packet have been seen.
        if not self._pending and not (packet.kind == "video" and packet.keyframe):
            return
        self._pending.append(packet)
        has_audio = any(p.kind == "audio" for p in self._pending)
        waited = packet.arrival - self._pending[0].arrival
        if (has_audio or not self._want_audio or waited >= self._wait_for_audio) and any(
            p.kind == "video" for p in self._pending
        ):
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w", format="mp4", options=self._options)
        self._container.metadata.update(self._metadata)
        self._video = self._container.add_mux_stream("h264", width=info.width, height=info.height)
        self._video.time_base = _VIDEO_TB
        self.video_codec = "h264"
        self._t0 = key.pts / key.clock_rate
        audio = next((p for p in self._pending if p.kind == "audio"), None)
        if self._want_audio and audio is not None:
            self._aac = AacTranscoder(audio.codec, audio.clock_rate)
            stream = self._container.add_stream("aac", rate=self._aac.sample_rate)
            stream.codec_context.layout = "mono"
            # The encoder's AudioSpecificConfig, so the track header describes what we mux.
            stream.codec_context.extradata = self._aac.extradata
            stream.time_base = fractions.Fraction(1, self._aac.sample_rate)
            self._audio = stream
            self.audio_codec = f"aac (from {audio.codec})"

    def _mux(self, packet: MediaPacket) -> None:
        assert self._t0 is not None
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
            return  # before the file's first keyframe
        last = self._last_dts.get(kind)
        if last is not None and pts <= last:
            pts = last + 1  # muxers refuse non-increasing timestamps
        self._last_dts[kind] = pts
        # A fresh av.Packet per sink: mux() rewrites timestamps in place.
        out = av.Packet(packet.data)
        out.pts = out.dts = pts
        out.time_base = tb
        out.stream = stream
        out.is_keyframe = packet.keyframe
        self._container.mux(out)

    def close(self) -> None:
        """Finish the file; safe to call twice. A file with no keyframe is not created."""
        if self._container is not None:
            container, self._container = self._container, None
            container.close()
            _LOGGER.debug(
                "wrote %s: %d video frames, %d audio frames",
                self.path,
                self.frames,
                self.audio_frames,
            )
