"""One AAC encoder per stream, fed by the doorbell's audio (Opus or G.711).

MP4 recorders, HLS and NVRs over RTSP want AAC. A mux-only AAC stream lacks its
AudioSpecificConfig, so this is a real encoder; audio is cheap to transcode, unlike video.
"""

from __future__ import annotations

import fractions
from typing import Any, cast

import av
import av.audio.resampler

from bridge.media.packet import MediaPacket

__all__ = ["AacTranscoder"]

_DECODERS = {"opus": "opus", "pcmu": "pcm_mulaw", "pcma": "pcm_alaw"}


class AacTranscoder:
    """Turns encoded doorbell audio packets into AAC-LC packets on the same timeline."""

    def __init__(self, source_codec: str, source_rate: int, bitrate: int = 64000) -> None:
        if source_codec not in _DECODERS:
            raise ValueError(f"cannot transcode {source_codec!r} audio to AAC")
        self.source_codec = source_codec
        # Opus is 48 kHz wideband; G.711 is 8 kHz telephone audio, 16 kHz AAC keeps it honest
        # without the bitrate a 48 kHz track would spend on nothing.
        self.sample_rate = 48000 if source_codec == "opus" else 16000
        self._decoder = cast(
            av.AudioCodecContext, av.CodecContext.create(_DECODERS[source_codec], "r")
        )
        self._decoder.sample_rate = source_rate
        self._decoder.layout = "mono"
        self._source_rate = source_rate
        self._resampler = av.audio.resampler.AudioResampler(
            format="fltp", layout="mono", rate=self.sample_rate
        )
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate = self.sample_rate
        enc.layout = "mono"
        enc.format = "fltp"
        enc.bit_rate = bitrate
        enc.time_base = fractions.Fraction(1, self.sample_rate)
        # The encoder is nearly all of an audio-carrying output's CPU; the "fast" coder costs
        # about a fifth less than the default two-loop search, inaudibly so on doorbell audio.
        enc.options = {"aac_coder": "fast"}
        enc.open()
        self._encoder = enc
        self._next_pts: int | None = None
        self._last_in: int | None = None

    @property
    def extradata(self) -> bytes:
        """The AudioSpecificConfig (RTSP ``config=``, MP4 ``esds``)."""
        return bytes(self._encoder.extradata or b"")

    def transcode(self, packet: MediaPacket) -> list[MediaPacket]:
        """Decode one source packet and return whatever AAC frames are ready."""
        in_pts = packet.pts * self.sample_rate // packet.clock_rate
        expected = self._next_pts
        # Re-anchor on the first packet, after a reconnect, or when the source skipped ahead
        # (lost packets): the AAC clock follows the source instead of drifting from it.
        if (
            expected is None
            or packet.discontinuity
            or abs(in_pts - expected) > self.sample_rate // 5
        ):
            self._next_pts = in_pts
        out: list[MediaPacket] = []
        try:
            frames = self._decoder.decode(av.Packet(packet.data))
        except av.error.InvalidDataError:
            return out  # one corrupt audio frame is a click, not a reason to stop
        for frame in frames:
            for resampled in self._resampler.resample(frame):
                resampled.pts = None
                for aac in self._encoder.encode(resampled):
                    out.append(self._wrap(aac, packet.arrival))
        return out

    def _wrap(self, aac: av.Packet[Any], arrival: float) -> MediaPacket:
        assert self._next_pts is not None
        pts = self._next_pts
        self._next_pts += 1024  # AAC-LC frames are always 1024 samples
        return MediaPacket("audio", "aac", bytes(aac), pts, self.sample_rate, True, arrival)
