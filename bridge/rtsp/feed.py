"""Per-stream work shared by every RTSP client: the track list, packetizing, and the audio fan-out.

Each client has its own hub subscriber (so the hub's GOP cache and slow-consumer handling apply
per client), but the hub hands every subscriber the *same* packet objects. The feed exploits that:
the first client to reach a packet packetizes (and, for audio, transcodes) it, and the others
find the result by the packet's timeline position and identity. Per client, only RTP headers are
written. Audio is transcoded once per stream, in timeline order, by exactly one AAC encoder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Literal

from bridge.media.aac import AacTranscoder
from bridge.media.hub import Stream
from bridge.media.packet import MediaPacket
from bridge.media.sps import ParameterSetTracker
from bridge.rtsp.rtp import aac_payload, h264_payloads
from bridge.rtsp.sdp import TrackInfo, aac_track, g711_track, h264_track

__all__ = ["AudioMode", "FeedRegistry", "StreamFeed"]

_LOGGER = logging.getLogger(__name__)

AudioMode = Literal["aac", "passthrough"]
_G711 = ("pcmu", "pcma")
_TRANSCODABLE = ("opus", "pcmu", "pcma")
_VIDEO_CACHE = 300  # access units: 20 s at 15 fps, more than any client's normal lag
_AUDIO_CACHE = 1500  # source audio frames: 30 s of 20 ms frames


class StreamFeed:
    """Tracks and packetized payloads of one stream, shared by all its RTSP clients."""

    def __init__(self, stream: Stream, audio: AudioMode = "aac") -> None:
        self.stream = stream
        self.audio_mode = audio
        self._video: OrderedDict[int, tuple[MediaPacket, list[bytes]]] = OrderedDict()
        self._audio: OrderedDict[int, tuple[MediaPacket, list[tuple[int, bytes]]]] = OrderedDict()
        self._transcoder: AacTranscoder | None = None
        self._audio_done: int | None = None  # pts of the newest source audio frame transcoded
        # The parameter sets in force at the live edge, for IDRs that arrive without them.
        self._params = ParameterSetTracker(lambda: (stream.sps, stream.pps))

    async def describe(self, keyframe_timeout: float, audio_wait: float = 1.0) -> list[TrackInfo]:
        """The stream's tracks once a picture is available; empty if none came in time."""
        stream = self.stream
        if not await stream.wait_keyframe(keyframe_timeout):
            return []
        sps, pps = stream.sps, stream.pps
        if sps is None or pps is None:
            return []
        tracks = [h264_track(sps, pps)]
        # Audio may trail the first keyframe by a moment on a fresh session. Only a stream that
        # just went live is worth waiting for; otherwise its audio would be known already.
        started = stream.started_at
        # (Polled: the hub has no per-packet event, and this runs once per DESCRIBE at most.)
        if started is not None and time.monotonic() - started < 2 * audio_wait:
            for _ in range(max(1, round(audio_wait / 0.05))):
                if "audio" in stream.codecs:
                    break
                await asyncio.sleep(0.05)
        audio = self._audio_track(stream.codecs.get("audio"))
        if audio is not None:
            tracks.append(audio)
        return tracks

    def _audio_track(self, codec: str | None) -> TrackInfo | None:
        if codec is None:
            return None
        if self.audio_mode == "passthrough" and codec in _G711:
            return g711_track(codec)
        if codec not in _TRANSCODABLE:
            _LOGGER.warning("stream %s: no RTSP audio for codec %s", self.stream.name, codec)
            return None
        transcoder = self._transcoder_for(codec)
        return aac_track(transcoder.extradata, transcoder.sample_rate)

    def _transcoder_for(self, codec: str) -> AacTranscoder:
        if self._transcoder is None or self._transcoder.source_codec != codec:
            rate = 48000 if codec == "opus" else 8000
            self._transcoder = AacTranscoder(codec, rate)
            self._audio.clear()
            self._audio_done = None
        return self._transcoder

    def video_payloads(self, packet: MediaPacket) -> list[bytes]:
        """RTP payloads for a video access unit (the marker goes on the last)."""
        cached = self._video.get(packet.pts)
        if cached is not None and cached[0] is packet:
            return cached[1]
        newest = not self._video or packet.pts > next(reversed(self._video))
        if packet.keyframe and newest:
            self._params.update(packet.data)
        # Every IDR goes out with the SPS/PPS that apply to it (after a resolution change, the
        # new ones, carried in-band by the change's IDR): clients that DESCRIBEd before the
        # change learn the new size from the RTP stream itself.
        payloads = h264_payloads(packet.data, *self._params.current)
        # Only the newest packets are cached: a lagging client repacketizes rather than evicting
        # what the clients at the live edge are about to need.
        if newest:
            self._video[packet.pts] = (packet, payloads)
            if len(self._video) > _VIDEO_CACHE:
                self._video.popitem(last=False)
        return payloads

    def audio_payloads(self, packet: MediaPacket, track: TrackInfo) -> list[tuple[int, bytes]]:
        """(pts in the track's clock, RTP payload) pairs to send for one source audio frame."""
        if track.encoding in ("PCMU", "PCMA"):
            if packet.codec != track.encoding.lower():
                return []
            return [(packet.pts, packet.data)]
        if packet.codec not in _TRANSCODABLE:
            return []
        cached = self._audio.get(packet.pts)
        if cached is not None and cached[0] is packet:
            out = cached[1]
        elif self._audio_done is not None and packet.pts <= self._audio_done:
            # Already transcoded past this frame but no longer cached: only a client far behind
            # the others gets here, and it loses this bit of audio rather than desync the encoder.
            return []
        else:
            out = self._transcode(packet)
        if self._transcoder is None or self._transcoder.sample_rate != track.clock_rate:
            return []  # the source codec changed under this client's SDP; say nothing
        return out

    def _transcode(self, packet: MediaPacket) -> list[tuple[int, bytes]]:
        transcoder = self._transcoder_for(packet.codec)
        out = [(aac.pts, aac_payload(aac.data)) for aac in transcoder.transcode(packet)]
        self._audio_done = packet.pts
        self._audio[packet.pts] = (packet, out)
        if len(self._audio) > _AUDIO_CACHE:
            self._audio.popitem(last=False)
        return out


class FeedRegistry:
    """One feed per stream while any RTSP connection uses it; dropped with the last one."""

    def __init__(self, audio: AudioMode = "aac") -> None:
        self.audio = audio
        self._feeds: dict[Stream, tuple[StreamFeed, int]] = {}

    def acquire(self, stream: Stream) -> StreamFeed:
        """The stream's feed, created on first use; pair each call with ``release``."""
        feed, refs = self._feeds.get(stream) or (StreamFeed(stream, self.audio), 0)
        self._feeds[stream] = (feed, refs + 1)
        return feed

    def release(self, stream: Stream) -> None:
        """Drop one reference; the last one frees the encoder and caches."""
        entry = self._feeds.get(stream)
        if entry is None:
            return
        if entry[1] <= 1:
            del self._feeds[stream]
        else:
            self._feeds[stream] = (entry[0], entry[1] - 1)

    def __len__(self) -> int:
        return len(self._feeds)
