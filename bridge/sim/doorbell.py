"""The simulated doorbell's media: an aiortc peer in the KVS *master* role that answers offers.

Video is real H.264 from PyAV's libx264 (not aiortc's encoder, which is Baseline-only and
cannot be told the GOP): the track returns pre-encoded ``av.Packet`` objects, which aiortc's
RTCRtpSender only packetizes. Each picture carries a burned-in clock, frame counter and a
machine-readable stamp (see picture.py). Audio is a 440 Hz tone through aiortc's encoders.

Signaling is not here: the simulated KVS service calls :meth:`SimDoorbellPeer.handle_offer`
and relays candidates. Faults a test can ask for: random RTP loss (optionally without
retransmissions), a stream cut after N seconds, trickled candidates.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from bridge.media import aiortc_patch
from bridge.media.webrtc_source import parse_candidate
from bridge.tasks import TaskSet

from .picture import render_frame

__all__ = ["SimDoorbellPeer", "SimMediaSettings", "SimPeerStats", "resolution_for"]

logger = logging.getLogger(__name__)

Profile = Literal["baseline", "main", "high"]
AudioCodec = Literal["opus", "pcmu", "pcma"]
CandidateCallback = Callable[[str, str | None, int | None], Awaitable[None] | None]

# SkyBell image_quality -> (width, height, default bitrate). 0 is the 16:9 480p SkyBell uses.
_QUALITIES: dict[int, tuple[int, int, int]] = {
    0: (854, 480, 800_000),
    1: (1280, 720, 1_000_000),
    2: (1280, 720, 2_000_000),
    3: (1920, 1080, 4_000_000),
}
_AUDIO_MIME = {"opus": "audio/opus", "pcmu": "audio/PCMU", "pcma": "audio/PCMA"}


def resolution_for(image_quality: int) -> tuple[int, int, int]:
    """(width, height, bitrate) for a SkyBell ``image_quality`` setting (0-3)."""
    try:
        return _QUALITIES[image_quality]
    except KeyError:
        raise ValueError(f"image_quality must be 0-3, not {image_quality}") from None


@dataclass(frozen=True, slots=True)
class SimMediaSettings:
    """What the simulated doorbell sends, and which faults it injects."""

    image_quality: int = 1
    fps: int = 15
    bitrate: int | None = None  # None: the quality's default
    profile: Profile = "main"
    gop_seconds: float = 2.0  # keyframe interval
    audio_codec: AudioCodec | None = "opus"  # None: no audio m-line answered
    loss_percent: float = 0.0  # outgoing RTP dropped at random
    retransmit: bool = True  # False: NACKed packets are lost too (forces PLI recovery)
    cut_after: float | None = None  # seconds of media before the stream is cut
    trickle: bool = False  # answer without candidates and trickle them via on_candidate
    label: str = "SIM DOORBELL"
    seed: int | None = None  # for reproducible loss


@dataclass(slots=True)
class SimPeerStats:
    """Counters a test can read."""

    frames_sent: int = 0
    keyframes_sent: int = 0
    keyframe_requests: int = 0  # PLI/FIR received from the viewer
    rtp_dropped: int = 0


class _Cut:
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

    async def hang(self) -> None:
        await self._forever.wait()


class _H264Encoder:
    """libx264 via PyAV; used from one worker thread at a time."""

    def __init__(self, settings: SimMediaSettings) -> None:
        width, height, default_bitrate = resolution_for(settings.image_quality)
        self.width, self.height, self.fps = width, height, settings.fps
        self.label = settings.label
        gop = max(1, round(settings.gop_seconds * settings.fps))
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
            # Keyframes exactly every GOP, never on scene cuts, so tests can predict them.
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
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


class _VideoTrack(MediaStreamTrack):
    """Paces frames in real time and encodes each off the event loop."""

    kind = "video"

    def __init__(self, settings: SimMediaSettings, cut: _Cut, stats: SimPeerStats) -> None:
        super().__init__()
        self._encoder = _H264Encoder(settings)
        self._cut = cut
        self._stats = stats
        self._frame_no = 0
        self._start: float | None = None
        self._force_keyframe = False
        self._pending: deque[Any] = deque()

    def request_keyframe(self) -> None:
        self._stats.keyframe_requests += 1
        self._force_keyframe = True

    async def recv(self) -> Any:
        while not self._pending:
            if self._start is None:
                self._start = time.monotonic()
                self._cut.started()
            delay = self._start + self._frame_no / self._encoder.fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._cut.active:
                await self._cut.hang()
            force, self._force_keyframe = self._force_keyframe, False
            capture_ms = int(time.time() * 1000)
            packets = await asyncio.to_thread(
                self._encoder.encode, self._frame_no, capture_ms, force
            )
            self._frame_no += 1
            self._pending.extend(packets)
        packet = self._pending.popleft()
        self._stats.frames_sent += 1
        if packet.is_keyframe:
            self._stats.keyframes_sent += 1
        return packet


class _ToneTrack(MediaStreamTrack):
    """A 440 Hz sine in 20 ms frames at the codec's native rate (no resampling needed)."""

    kind = "audio"

    def __init__(self, sample_rate: int, cut: _Cut) -> None:
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


@dataclass(slots=True)
class _LossFilter:
    """Decides per outgoing RTP packet whether the simulated network loses it."""

    settings: SimMediaSettings
    cut: _Cut
    stats: SimPeerStats
    rng: random.Random
    _seen: set[int] = field(default_factory=set)
    _order: deque[int] = field(default_factory=deque)

    def __call__(self, seq: int, rtx: bool) -> bool:
        retransmission = rtx or seq in self._seen
        if not rtx and not retransmission:
            # Without RTX a retransmission reuses the sequence number; remember recent ones.
            self._seen.add(seq)
            self._order.append(seq)
            if len(self._order) > 2048:
                self._seen.discard(self._order.popleft())
        drop = self.cut.active or (retransmission and not self.settings.retransmit)
        if not drop and self.settings.loss_percent > 0:
            drop = self.rng.random() * 100 < self.settings.loss_percent
        if drop:
            self.stats.rtp_dropped += 1
        return drop


class SimDoorbellPeer:
    """One viewer session of the simulated doorbell (KVS master side)."""

    def __init__(
        self,
        settings: SimMediaSettings | None = None,
        *,
        ice_servers: list[RTCIceServer] | None = None,
        on_candidate: CandidateCallback | None = None,
    ) -> None:
        aiortc_patch.install()
        self.settings = settings or SimMediaSettings()
        self.stats = SimPeerStats()
        self._ice_servers = list(ice_servers or [])
        self._on_candidate = on_candidate
        self._pc: RTCPeerConnection | None = None
        self._cut = _Cut(self.settings.cut_after)
        self._tasks = TaskSet()
        self._closed = False

    @property
    def connection_state(self) -> str:
        """aiortc's connection state of the peer ("new" before the offer)."""
        return self._pc.connectionState if self._pc is not None else "new"

    async def handle_offer(self, offer_sdp: str) -> str:
        """Answer a viewer's offer; the answer holds every candidate unless trickling."""
        if self._pc is not None or self._closed:
            raise RuntimeError("a SimDoorbellPeer answers exactly one offer")
        settings = self.settings
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
        self._pc = pc
        video_track = _VideoTrack(settings, self._cut, self.stats)
        video = pc.addTransceiver(video_track, direction="sendonly")
        wanted = aiortc_patch.H264_PROFILE_LEVEL_IDS[settings.profile]
        video.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() == "video/rtx"
                or (
                    c.mimeType.lower() == "video/h264"
                    and c.parameters.get("profile-level-id") in wanted
                )
            ]
        )
        senders = [video.sender]
        if settings.audio_codec is not None:
            rate = 48000 if settings.audio_codec == "opus" else 8000
            audio = pc.addTransceiver(_ToneTrack(rate, self._cut), direction="sendonly")
            mime = _AUDIO_MIME[settings.audio_codec]
            audio.setCodecPreferences(
                [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == mime]
            )
            senders.append(audio.sender)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        # Hooks go on after setRemoteDescription: BUNDLE may have moved the senders to
        # another transport by then.
        aiortc_patch.watch_keyframe_requests(video.sender, video_track.request_keyframe)
        rng = random.Random(settings.seed)
        for sender in senders:
            # One filter per sender: sequence numbers of different streams overlap.
            loss = _LossFilter(settings, self._cut, self.stats, rng)
            aiortc_patch.install_rtp_send_filter(sender, loss)
        sdp = pc.localDescription.sdp
        if settings.trickle:
            sdp, candidates = _split_candidates(sdp)
            self._tasks.spawn(self._trickle(candidates))
        return sdp

    async def _trickle(self, candidates: list[tuple[str, str | None, int]]) -> None:
        # Like the C SDK, candidates follow the answer a little later, one message each.
        await asyncio.sleep(0.05)
        for candidate, mid, index in candidates:
            if self._on_candidate is None:
                return
            result = self._on_candidate(candidate, mid, index)
            if inspect.isawaitable(result):
                await result

    async def add_remote_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """Add a candidate trickled by the viewer (KVS format)."""
        if self._pc is None or self._closed:
            return
        await self._pc.addIceCandidate(parse_candidate(candidate, sdp_mid, sdp_mline_index))

    async def close(self) -> None:
        """Stop sending and close the peer; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._tasks.cancel_all()
        if self._pc is not None:
            await self._pc.close()


def _split_candidates(sdp: str) -> tuple[str, list[tuple[str, str | None, int]]]:
    """Remove candidate lines from an SDP; return them as (candidate, mid, mline index)."""
    kept: list[str] = []
    found: list[tuple[str, str | None, int]] = []
    index = -1
    mid: str | None = None
    pending: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            found.extend((c, mid, index) for c in pending)
            pending, index, mid = [], index + 1, None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        if line.startswith("a=candidate:"):
            pending.append(line[2:])
            continue
        if line.startswith("a=end-of-candidates"):
            continue
        kept.append(line)
    found.extend((c, mid, index) for c in pending)
    return "\r\n".join(kept) + "\r\n", found
