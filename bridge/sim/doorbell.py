"""The simulated doorbell's media: an aiortc peer in the KVS *master* role that answers offers.

The media (libx264 video with a burned-in clock, a tone) is in tracks.py; what it sends and
counts is in media_settings.py.

Keyframes behave like a libwebrtc (Chromium) sender, unkind parts included:

* ``keyframes="on_request"`` (the default): one IDR at the start, then an IDR only when a PLI
  or FIR asks for it, judged and throttled as libwebrtc does (see feedback.py: PLI must name
  the video SSRC, a FIR's repeated sequence number is ignored, 300 ms between keyframes).
* ``keyframes="gop"``: a camera-style fixed interval of ``gop_seconds``, and PLI/FIR as above.

The default mode comes from the env var ``SKYBELL_BRIDGE_SIM_KEYFRAMES`` (media_settings.py).

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
import inspect
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamError,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from bridge.media import aiortc_patch
from bridge.media.aiortc_patch import FeedbackPacket
from bridge.media.packet import MediaPacket
from bridge.media.webrtc_source import parse_candidate
from bridge.tasks import TaskSet

from .feedback import KeyframeGate
from .hearing import Ear
from .media_settings import (
    AUDIO_MIME,
    KEYFRAMES_ENV,
    LIVE_FIELDS,
    KeyframeMode,
    SimMediaSettings,
    SimPeerStats,
    check_resolution,
    resolution_for,
)
from .tracks import Cut, ToneTrack, VideoTrack

# The only host address of a simulated peer: no other address may be a target here.
LOOPBACK = ("127.0.0.1",)

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
CandidateCallback = Callable[[str, str | None, int | None], Awaitable[None] | None]


@dataclass(slots=True)
class _LossFilter:
    """Decides per outgoing RTP packet whether the simulated network loses it."""

    settings: Callable[[], SimMediaSettings]  # the peer's, read live: loss can change
    cut: Cut
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
        self._video: VideoTrack | None = None
        self._gate: KeyframeGate | None = None
        self._cut = Cut(self.settings.cut_after)
        self.ear = Ear()  # what a viewer says to the visitor through this doorbell
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

    def vanish(self) -> None:
        """Go silent without a word: no more media, no BYE, no close (power or Wi-Fi lost)."""
        self._cut.now()

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
        policy = RTCIceTransportPolicy.RELAY if settings.relay_only else RTCIceTransportPolicy.ALL
        # Loopback whatever the bridge's peers in this process offer. The scope covers setRemoteDescription,
        # which may add transports.
        with aiortc_patch.scoped_host_candidates(LOOPBACK):
            pc = RTCPeerConnection(
                RTCConfiguration(iceServers=self._ice_servers, iceTransportPolicy=policy)
            )
            self._pc = pc
            video_track = VideoTrack(settings, self._cut, self.stats)
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
                # sendrecv: the doorbell's speaker plays what a viewer sends (see hearing.py).
                direction = "sendrecv" if settings.talk else "sendonly"
                audio = pc.addTransceiver(ToneTrack(rate, self._cut), direction=direction)
                if settings.talk:
                    # Encoded packets, so the ear counts the wire's bytes and decodes them itself.
                    aiortc_patch.enable_passthrough(audio.receiver)
                mime = AUDIO_MIME[settings.audio_codec]
                audio.setCodecPreferences(
                    [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == mime]
                )
                senders.append(audio.sender)
            elif "\nm=audio" in offer_sdp:
                # No audio either way, as before talk existed: left to aiortc, a viewer's
                # sendrecv offer would get a recvonly answer (a speaker nobody listens to).
                pc.addTransceiver("audio", direction="inactive")

            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        if settings.audio_codec is not None and settings.talk:
            heard = audio.receiver.track
            if heard is not None and audio.currentDirection in ("sendrecv", "recvonly"):
                self._tasks.spawn(self._listen(heard))
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

    async def _listen(self, track: Any) -> None:
        """Feed the ear every audio packet a viewer sends until the track ends."""
        while True:
            try:
                packet = await track.recv()
            except MediaStreamError:
                return
            if isinstance(packet, MediaPacket):
                self.ear.hear(packet)

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
