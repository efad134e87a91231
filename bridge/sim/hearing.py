"""What the simulated doorbell hears: audio a viewer sends it, decoded and measured.

Packets come encoded (the doorbell's audio receiver is a passthrough one, see aiortc_patch), so
the byte and packet counts are the wire's, and each is decoded here with PyAV as the doorbell's
speaker would play it. What a test reads (``GET /_sim/doorbells/{id}/heard``):

- ``level_dbfs``: RMS level of the last ~0.5 s heard, in dB below full scale (a full-scale
  sine is -3 dBFS; -120 for silence);
- ``frequency_hz``: the dominant frequency over the same 0.5 s (numpy FFT, Hann window,
  refined between bins), None while silent;
- ``onset_at``: the wall-clock time (``time.time()``) sound last started after a pause, for
  latency measurements; ``onsets`` counts them;
- ``packets``, ``bytes``, ``seconds`` (audio decoded) and ``sound_seconds`` (of it, not silent).

No jitter buffer stands between the network and the measurement: a real doorbell adds its own
(tens of milliseconds) before its speaker.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import av
import numpy as np

from bridge.media.packet import MediaPacket

__all__ = ["SILENCE_DBFS", "Ear", "dominant_frequency"]

SILENCE_DBFS = -120.0
_WINDOW_SECONDS = 0.5
_SOUND_DBFS = -45.0  # a packet louder than this is sound, not silence or codec noise
_PAUSE_SECONDS = 0.3  # this much silence (or nothing) before sound makes a new onset
_DECODERS = {"opus": "opus", "pcmu": "pcm_mulaw", "pcma": "pcm_alaw"}


def _dbfs(samples: np.ndarray[Any, Any]) -> float:
    if samples.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(SILENCE_DBFS, 20 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


def dominant_frequency(samples: np.ndarray[Any, Any], rate: int) -> float | None:
    """The strongest frequency in ``samples`` (Hz), refined between FFT bins; None if silent."""
    if samples.size < 64 or _dbfs(samples) <= _SOUND_DBFS:
        return None
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spectrum[0] = 0.0  # DC says nothing about pitch
    peak = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < peak < spectrum.size - 1:
        # Parabolic interpolation on log magnitudes: a bin is rate/N wide (2 Hz at 0.5 s).
        a, b, c = (math.log(max(float(v), 1e-12)) for v in spectrum[peak - 1 : peak + 2])
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom else 0.0
    return (peak + offset) * rate / samples.size


class Ear:
    """One viewer's audio as the doorbell hears it (see the module docstring)."""

    def __init__(self) -> None:
        self.codec: str | None = None
        self.rate = 0
        self.packets = 0
        self.bytes = 0
        self.samples = 0
        self.sound_samples = 0
        self.onsets = 0
        self.onset_at: float | None = None
        self.last_packet_at: float | None = None
        self.errors = 0
        self._decoder: av.AudioCodecContext | None = None
        self._window: deque[np.ndarray[Any, Any]] = deque()
        self._window_samples = 0
        self._last_sound: float | None = None

    def hear(self, packet: MediaPacket) -> None:
        """Count and decode one encoded audio frame."""
        now = time.time()
        self.packets += 1
        self.bytes += len(packet.data)
        self.last_packet_at = now
        try:
            pcm = self._decode(packet)
        except (av.FFmpegError, ValueError):
            self.errors += 1
            return
        if pcm.size == 0:
            return
        self.samples += pcm.size
        if _dbfs(pcm) > _SOUND_DBFS:
            self.sound_samples += pcm.size
            if self._last_sound is None or now - self._last_sound >= _PAUSE_SECONDS:
                self.onsets += 1
                self.onset_at = now
            self._last_sound = now
        self._window.append(pcm)
        self._window_samples += pcm.size
        while self._window and self._window_samples - self._window[0].size >= (
            _WINDOW_SECONDS * self.rate
        ):
            self._window_samples -= self._window.popleft().size

    def _decode(self, packet: MediaPacket) -> np.ndarray[Any, Any]:
        if self._decoder is None or packet.codec != self.codec:
            name = _DECODERS.get(packet.codec)
            if name is None:
                raise ValueError(f"cannot decode {packet.codec}")
            decoder = av.CodecContext.create(name, "r")
            assert isinstance(decoder, av.AudioCodecContext)
            decoder.sample_rate = packet.clock_rate
            decoder.layout = "stereo" if packet.codec == "opus" else "mono"
            self._decoder, self.codec, self.rate = decoder, packet.codec, packet.clock_rate
            self._window.clear()
            self._window_samples = 0
        chunks = []
        for frame in self._decoder.decode(av.Packet(packet.data)):
            # Mono float in [-1, 1]: planar or packed, whatever the decoder gives.
            data = frame.to_ndarray().astype(np.float64)
            if frame.format.name.startswith("s16"):
                data /= 32768.0
            channels = len(frame.layout.channels)
            if not frame.format.is_planar:
                data = data.reshape(-1, channels).T
            chunks.append(data.reshape(channels, -1).mean(axis=0))
        return np.concatenate(chunks) if chunks else np.zeros(0)

    def stats(self) -> dict[str, Any]:
        """What was heard, as the control API shows it."""
        window = np.concatenate(list(self._window)) if self._window else np.zeros(0)
        frequency = dominant_frequency(window, self.rate) if self.rate else None
        rate = self.rate or 1
        return {
            "codec": self.codec,
            "packets": self.packets,
            "bytes": self.bytes,
            "seconds": round(self.samples / rate, 3),
            "sound_seconds": round(self.sound_samples / rate, 3),
            "level_dbfs": round(_dbfs(window), 1),
            "frequency_hz": None if frequency is None else round(frequency, 1),
            "onsets": self.onsets,
            "onset_at": self.onset_at,
            "last_packet_at": self.last_packet_at,
            "decode_errors": self.errors,
        }
