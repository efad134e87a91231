"""The simulated doorbell's media: an aiortc peer in the KVS *master* role that answers offers.

Video is real H.264 from PyAV's libx264 (not aiortc's encoder, which is Baseline-only and
cannot be told the GOP): the track returns pre-encoded ``av.Packet`` objects, which aiortc's
RTCRtpSender only packetizes. Each picture carries a burned-in clock, frame counter and a
machine-readable stamp (see picture.py). Audio is a 440 Hz tone through aiortc's encoders.

Keyframes behave like a libwebrtc (Chromium) sender, unkind parts included:

* ``keyframes="on_request"`` (the default): one IDR at the start, then an IDR only when a PLI
  or FIR asks for it, judged and throttled as libwebrtc does (see feedback.py: PLI must name
  the video SSRC, a FIR's repeated sequence number is ignored, 300 ms between keyframes).
* ``keyframes="gop"``: a camera-style fixed interval of ``gop_seconds``, and PLI/FIR as above.

The default mode of every ``SimMediaSettings`` built without an explicit ``keyframes`` comes
from the env var ``SKYBELL_BRIDGE_SIM_KEYFRAMES`` (``on_request`` or ``gop``), so a whole test
run can be switched; settings a test passes explicitly win.

NACKs are answered by aiortc with RTX on its own SSRC (``a=ssrc-group:FID`` and ``apt=`` as
Chrome negotiates them). The resolution can change mid-stream like libwebrtc's quality
scaler (:meth:`SimDoorbellPeer.set_resolution` or ``scale_schedule``): the next frame is an
IDR at the new size with new SPS/PPS. ``SimPeerStats`` counts all of it.

Signaling is not here: the simulated KVS service calls :meth:`SimDoorbellPeer.handle_offer`
and relays candidates. Faults a test can ask for: random RTP loss (optionally without
retransmissions), a stream cut after N seconds, trickled candidates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import inspect
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
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
from bridge.media.aiortc_patch import FeedbackPacket
from bridge.media.webrtc_source import parse_candidate
from bridge.tasks import TaskSet

from .feedback import KeyframeGate
from .picture import render_frame

__all__ = [
    "KEYFRAMES_ENV",
    "LIVE_FIELDS",
    "KeyframeMode",
    "SimDoorbellPeer",
    "SimMediaSettings",
    "SimPeerStats",
    "check_resolution",
    "resolution_for",
]

logger = logging.getLogger(__name__)

Profile = Literal["baseline", "main", "high"]
AudioCodec = Literal["opus", "pcmu", "pcma"]
KeyframeMode = Literal["on_request", "gop"]
KEYFRAMES_ENV = "SKYBELL_BRIDGE_SIM_KEYFRAMES"
_KEYFRAME_MODES: tuple[KeyframeMode, ...] = ("on_request", "gop")
# What SimDoorbellPeer.update can change while a viewer is connected.
LIVE_FIELDS = frozenset({"loss_percent", "retransmit", "keyframes", "gop_seconds", "resolution"})
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


def check_resolution(width: int, height: int) -> tuple[int, int]:
    """Validate a picture size (even, big enough for the stamp); return it."""
    if not (160 <= width <= 3840 and 90 <= height <= 2160) or width % 2 or height % 2:
        raise ValueError(f"resolution must be even, 160x90 to 3840x2160, not {width}x{height}")
    return width, height


def _default_keyframe_mode() -> KeyframeMode:
    value = os.environ.get(KEYFRAMES_ENV, "on_request").strip() or "on_request"
    for mode in _KEYFRAME_MODES:
        if value == mode:
            return mode
    raise ValueError(f"{KEYFRAMES_ENV} must be one of {_KEYFRAME_MODES}, not {value!r}")


@dataclass(frozen=True, slots=True)
class SimMediaSettings:
    """What the simulated doorbell sends, and which faults it injects."""

    image_quality: int = 1
    fps: int = 15
    bitrate: int | None = None  # None: the quality's default
    profile: Profile = "main"
    # on_request: one IDR, then only on PLI/FIR (libwebrtc). gop: also every gop_seconds.
    keyframes: KeyframeMode = field(default_factory=_default_keyframe_mode)
    gop_seconds: float = 2.0  # keyframe interval in "gop" mode
    resolution: tuple[int, int] | None = None  # None: the image_quality's size
    # Quality-scaler script: (seconds after the first frame, width, height), in order.
    scale_schedule: tuple[tuple[float, int, int], ...] = ()
    audio_codec: AudioCodec | None = "opus"  # None: no audio m-line answered
    loss_percent: float = 0.0  # outgoing RTP dropped at random
    retransmit: bool = True  # False: NACKed packets are lost too (forces PLI recovery)
    cut_after: float | None = None  # seconds of media before the stream is cut
    trickle: bool = False  # answer without candidates and trickle them via on_candidate
    label: str = "SIM DOORBELL"
    seed: int | None = None  # for reproducible loss

    def __post_init__(self) -> None:
        resolution_for(self.image_quality)
        if self.keyframes not in _KEYFRAME_MODES:
            raise ValueError(f"keyframes must be one of {_KEYFRAME_MODES}, not {self.keyframes!r}")
        if not self.gop_seconds > 0:
            raise ValueError(f"gop_seconds must be positive, not {self.gop_seconds}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be 1-60, not {self.fps}")
        if self.profile not in aiortc_patch.H264_PROFILE_LEVEL_IDS:
            raise ValueError(f"profile must be baseline, main or high, not {self.profile!r}")
        if self.audio_codec is not None and self.audio_codec not in _AUDIO_MIME:
            raise ValueError(
                f"audio_codec must be opus, pcmu, pcma or null, not {self.audio_codec!r}"
            )
        if not 0 <= self.loss_percent <= 100:
            raise ValueError(f"loss_percent must be 0-100, not {self.loss_percent}")
        if self.resolution is not None:
            check_resolution(*self.resolution)
        for _at, width, height in self.scale_schedule:
            check_resolution(width, height)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the first frame."""
        return self.resolution or resolution_for(self.image_quality)[:2]


@dataclass(slots=True)
class SimPeerStats:
    """Counters a test can read (``as_dict`` for the control API)."""

    frames_sent: int = 0
    keyframes_sent: int = 0
    keyframe_requests: int = 0  # PLI + FIR received, whatever became of them
    pli_received: int = 0
    fir_received: int = 0
    nack_received: int = 0  # NACK packets
    nacked_packets: int = 0  # sequence numbers they asked for
    rtx_sent: int = 0  # retransmissions that left on the RTX SSRC
    keyframe_requests_honoured: int = 0
    keyframe_requests_ignored: int = 0  # the sum of the three reasons below
    ignored_throttled: int = 0
    ignored_wrong_ssrc: int = 0
    ignored_repeated_fir: int = 0
    resolution_changes: int = 0
    width: int = 0  # of the last frame sent
    height: int = 0
    rtp_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        """Every counter by name."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


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


class _VideoTrack(MediaStreamTrack):
    """Paces frames in real time and encodes each off the event loop."""

    kind = "video"

    def __init__(self, settings: SimMediaSettings, cut: _Cut, stats: SimPeerStats) -> None:
        super().__init__()
        self._settings = settings
        self._encoder = _H264Encoder(settings, settings.size)
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
            self._encoder = _H264Encoder(*rebuild)
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
            self._stats.width, self._stats.height = self._encoder.width, self._encoder.height
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

    settings: Callable[[], SimMediaSettings]  # the peer's, read live: loss can change
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
        settings = self.settings()
        drop = self.cut.active or (retransmission and not settings.retransmit)
        if not drop and settings.loss_percent > 0:
            drop = self.rng.random() * 100 < settings.loss_percent
        if drop:
            self.stats.rtp_dropped += 1
        elif rtx:
            self.stats.rtx_sent += 1
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
        self._video: _VideoTrack | None = None
        self._gate: KeyframeGate | None = None
        self._cut = _Cut(self.settings.cut_after)
        self._tasks = TaskSet()
        self._closed = False

    @property
    def connection_state(self) -> str:
        """aiortc's connection state of the peer ("new" before the offer)."""
        return self._pc.connectionState if self._pc is not None else "new"

    @property
    def resolution(self) -> tuple[int, int]:
        """The video size being sent (or to be sent from the next frame on)."""
        return self._video.size if self._video is not None else self.settings.size

    def set_resolution(self, width: int, height: int) -> None:
        """Switch size like libwebrtc's quality scaler: the next frame is an IDR at the new size."""
        size = check_resolution(width, height)
        self.settings = dataclasses.replace(self.settings, resolution=size)
        if self._video is not None and size != self._video.size:
            self._video.reconfigure(self.settings, size)

    def update(self, **changes: Any) -> None:
        """Change a live peer: loss_percent/retransmit at once; keyframes/gop_seconds restart
        the encoder (so an IDR follows); resolution as :meth:`set_resolution`."""
        unknown = set(changes) - LIVE_FIELDS
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} on a live peer")
        resolution = changes.pop("resolution", None)
        old = self.settings
        self.settings = dataclasses.replace(old, **changes)
        restart = (old.keyframes, old.gop_seconds) != (
            self.settings.keyframes,
            self.settings.gop_seconds,
        )
        if restart and self._video is not None:
            self._video.reconfigure(self.settings, self._video.size)
        if resolution is not None:
            self.set_resolution(*resolution)

    def _on_feedback(self, packet: FeedbackPacket) -> None:
        if self._gate is None or self._video is None:
            return
        verdict = self._gate.judge(packet)
        stats = self.stats
        if verdict.kind == "nack":
            stats.nack_received += 1
            stats.nacked_packets += verdict.nacked
            return
        if verdict.kind not in ("pli", "fir"):
            return
        stats.keyframe_requests += 1
        if verdict.kind == "pli":
            stats.pli_received += 1
        else:
            stats.fir_received += 1
        if verdict.outcome == "keyframe":
            stats.keyframe_requests_honoured += 1
            self._video.request_keyframe()
            return
        stats.keyframe_requests_ignored += 1
        if verdict.outcome == "throttled":
            stats.ignored_throttled += 1
        elif verdict.outcome == "repeated_fir":
            stats.ignored_repeated_fir += 1
        else:
            stats.ignored_wrong_ssrc += 1
        logger.debug("%s ignored: %s", verdict.kind.upper(), verdict.outcome)

    async def handle_offer(self, offer_sdp: str) -> str:
        """Answer a viewer's offer; the answer holds every candidate unless trickling."""
        if self._pc is not None or self._closed:
            raise RuntimeError("a SimDoorbellPeer answers exactly one offer")
        settings = self.settings
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
        self._pc = pc
        video_track = _VideoTrack(settings, self._cut, self.stats)
        self._video = video_track
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
        self._gate = KeyframeGate(aiortc_patch.sender_ssrcs(video.sender)[0])
        aiortc_patch.watch_rtcp_feedback(video.sender, self._on_feedback)
        rng = random.Random(settings.seed)
        for sender in senders:
            # One filter per sender: sequence numbers of different streams overlap.
            loss = _LossFilter(lambda: self.settings, self._cut, self.stats, rng)
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
