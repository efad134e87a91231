"""One WebRTC viewer: a sendonly aiortc peer that relays a hub stream without re-encoding.

aiortc never trickles, so the answer is returned once gathering is done and carries every
candidate. The session ends when the peer fails or closes (aiortc has no "disconnected" state:
a viewer that vanishes without a goodbye is caught by ICE consent freshness, ~30 s), when it
never connects, when the stream ends, or on ``close()``. Its hub subscriber is closed then, so
the hub can stop an unwatched doorbell.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender
from aiortc import RTCSessionDescription as Description
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError

from bridge.media import aiortc_patch
from bridge.media.buffers import Subscriber
from bridge.media.hub import Stream

from .errors import OfferError, StreamUnavailable
from .offer import Offer, VideoChoice, choose_audio, choose_video
from .talk import InboundTalk, TalkSink
from .tracks import AudioRelayTrack, H264RelayTrack, RelayFeed

__all__ = ["KeyframeGate", "VideoStats", "ViewerStats", "WhepViewer"]

logger = logging.getLogger(__name__)

# A browser asks for a keyframe (PLI) as soon as it sees packets it cannot decode. A viewer
# that has just been sent the cached keyframe has its answer on the way, so requests in this
# window after the first keyframe are not forwarded to the doorbell.
_JOIN_GRACE = 1.0
_AUDIO_WAIT = 1.0  # how long a just-started stream may take to show its audio codec
_NEGOTIATION_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    AssertionError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)
_labels = itertools.count(1)


class VideoStats(TypedDict):
    """The H.264 entry a viewer was answered with, against the doorbell's profile."""

    payload_type: int
    profile_level_id: str
    source_profile: str
    profile_match: bool


class ViewerStats(TypedDict):
    """One WebRTC viewer session in ``/api/streams`` (its label, never its secret id)."""

    id: str
    state: str  # "new", then aiortc's connection state
    age: float
    video: VideoStats | None  # None until the offer is answered
    audio: str | None  # the relayed audio codec; None: no audio
    audio_relayed: bool
    audio_note: str
    frames_sent: int
    keyframes_sent: int
    bytes_sent: int
    frames_squeezed: int
    audio_frames_sent: int
    keyframe_requests: int
    keyframes_forwarded: int
    talking: bool  # the viewer's microphone goes to the doorbell now (push-to-talk)


class KeyframeGate:
    """Lets at most one keyframe request per ``interval`` through to a stream's doorbell.

    Shared by every viewer of a stream: one keyframe from the doorbell serves them all, and a
    burst of PLIs after a network hiccup must not make it send keyframe after keyframe.
    """

    def __init__(
        self, stream: Stream, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.forwarded = 0
        self.suppressed = 0
        self._stream = stream
        self._clock = clock
        self._last: float | None = None

    def request(self) -> bool:
        """Forward a keyframe request unless one went out less than ``interval`` ago."""
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        self.forwarded += 1
        self._stream.request_keyframe()
        return True


class WhepViewer:
    """One viewer's peer connection, its hub subscriber and its relay tracks."""

    def __init__(
        self,
        stream: Stream,
        gate: KeyframeGate,
        *,
        ice_servers: Sequence[RTCIceServer] = (),
        keyframe_timeout: float = 20.0,
        connect_timeout: float = 30.0,
        on_closed: Callable[[WhepViewer], None] | None = None,
        host_addresses: Sequence[str] | None = None,
    ) -> None:
        aiortc_patch.install()
        # The id is the capability to end the session (WHEP DELETE): never log it.
        self.id = secrets.token_urlsafe(24)
        self.label = f"webrtc-{next(_labels)}"
        self.stream = stream
        self.state = "new"
        self.video: VideoChoice | None = None
        self.audio_codec: str | None = None
        self.audio_note = "not negotiated yet"
        self.keyframe_requests = 0
        self.keyframes_forwarded = 0
        self.created = time.monotonic()
        self._gate = gate
        self._ice_servers = list(ice_servers)
        self._host_addresses = host_addresses
        self._keyframe_timeout = keyframe_timeout
        self._connect_timeout = connect_timeout
        self._on_closed = on_closed
        self._sub: Subscriber | None = None
        self._pc: RTCPeerConnection | None = None
        self._video_track: H264RelayTrack | None = None
        self._audio_track: AudioRelayTrack | None = None
        self._connect_timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
        self.talk = InboundTalk(self.label)

    async def negotiate(self, offer: Offer) -> str:
        """Join the stream, wait for its picture, and return the answer SDP for ``offer``."""
        stream = self.stream
        self._sub = stream.subscribe("webrtc")
        if not await stream.wait_keyframe(self._keyframe_timeout) or stream.sps is None:
            why = f"{stream.state}: {stream.error}" if stream.error else stream.state
            raise StreamUnavailable(
                f"no picture from {stream.name} within {self._keyframe_timeout:g} s ({why})"
            )
        self.video = video_choice = choose_video(offer, stream.sps)
        if not video_choice.exact:
            logger.warning(
                "%s: the viewer offers no H.264 profile covering the doorbell's %s; sending it "
                "as %s anyway",
                self.label,
                video_choice.source_profile,
                video_choice.profile_level_id,
            )
        audio = choose_audio(offer, await self._source_audio_codec(offer))
        self._check_open()
        self.audio_codec, self.audio_note = audio.codec, audio.note
        if audio.codec is None:
            logger.debug("%s on %s: no audio: %s", self.label, stream.name, audio.note)

        # Host candidates of browser-facing peers only (webrtc.ice_host_addresses): the
        # doorbell side's setting must not reach them. setRemoteDescription may add
        # transports, so it runs inside the scope too.
        with aiortc_patch.scoped_host_candidates(self._host_addresses):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
            self._pc = pc
            pc.on("connectionstatechange", self._state_changed)
            feed = RelayFeed(self._sub, self.audio_codec, self._source_ended)
            self._video_track = H264RelayTrack(feed, lambda: (stream.sps, stream.pps))
            video = pc.addTransceiver(self._video_track, direction="sendonly")
            rtx = [c for c in _codecs("video") if c.mimeType.lower() == "video/rtx"]
            video.setCodecPreferences([video_choice.capability, *rtx])
            # A viewer that offers to send audio (the page, for push-to-talk) gets it read:
            # sendrecv when the doorbell's audio is relayed to it too; otherwise aiortc makes
            # the receiving (recvonly) transceiver itself.
            direction = "sendrecv" if offer.sends_audio else "sendonly"
            if audio.capability is not None:
                self._audio_track = AudioRelayTrack(feed)
                pc.addTransceiver(self._audio_track, direction=direction).setCodecPreferences(
                    [audio.capability]
                )
            if offer.sends_audio:
                pc.on("track", self._track_received)
            try:
                await pc.setRemoteDescription(Description(sdp=offer.sdp, type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
            except _NEGOTIATION_ERRORS as err:
                raise OfferError(f"the offer was refused: {err or type(err).__name__}") from err
        self._check_open()
        # After setRemoteDescription: BUNDLE may have moved the sender to another transport.
        aiortc_patch.watch_keyframe_requests(video.sender, self._keyframe_requested)
        self._connect_timer = asyncio.get_running_loop().call_later(
            self._connect_timeout, self._connect_timed_out
        )
        self.state = pc.connectionState
        logger.info(
            "%s on %s: H.264 %s as payload type %d, audio %s",
            self.label,
            stream.name,
            video_choice.profile_level_id,
            video_choice.payload_type,
            self.audio_codec or "none",
        )
        return str(pc.localDescription.sdp)

    def _check_open(self) -> None:
        # close() may run while negotiate() waits (shutdown, the stream ending); a peer made
        # after that would never be closed.
        if self._closing is not None:
            raise StreamUnavailable("the session was closed while it was being set up")

    async def _source_audio_codec(self, offer: Offer) -> str | None:
        stream = self.stream
        # Audio can trail the first keyframe on a session that just started; one that has
        # been live for a while would have shown its audio by now.
        started = stream.started_at
        if offer.audio and started is not None and time.monotonic() - started < 2 * _AUDIO_WAIT:
            # Polled: the hub has no per-packet event, and this runs once per viewer.
            for _ in range(round(_AUDIO_WAIT / 0.05)):
                if "audio" in stream.codecs:
                    break
                await asyncio.sleep(0.05)
        return stream.codecs.get("audio")

    # -- events ------------------------------------------------------------------------------

    def _track_received(self, track: Any) -> None:
        if track.kind == "audio" and self._closing is None:
            self.talk.attach(track)

    async def start_talk(self, sink: TalkSink) -> None:
        """Forward the viewer's microphone to ``sink`` (an opened talk session) until stopped.

        Closes ``sink`` and raises StreamUnavailable when the session ended meanwhile.
        """
        if self._closing is not None or not self.talk.available:
            await sink.close()
            raise StreamUnavailable("the viewer's session sends no audio or has ended")
        self.talk.start(sink)

    def _keyframe_requested(self) -> None:
        self.keyframe_requests += 1
        track = self._video_track
        first = track.first_keyframe_at if track is not None else None
        if first is None or time.monotonic() - first < _JOIN_GRACE:
            return  # the viewer started at the cached keyframe, which is on its way
        if self._gate.request():
            self.keyframes_forwarded += 1
            logger.debug("%s: keyframe request forwarded to %s", self.label, self.stream.name)

    def _state_changed(self) -> None:
        if self._pc is None or self._closing is not None:
            return
        self.state = self._pc.connectionState
        logger.debug("%s: connection %s", self.label, self.state)
        if self.state == "connected" and self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        elif self.state in ("failed", "closed"):
            self._close_soon(f"connection {self.state}")

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if self.state != "connected":
            self._close_soon(f"not connected after {self._connect_timeout:g} s")

    def _source_ended(self) -> None:
        self._close_soon("the stream ended")

    # -- closing -----------------------------------------------------------------------------

    def _close_soon(self, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._close(reason), name=f"close {self.label}"
            )

    async def close(self, reason: str = "closed") -> None:
        """End the session and leave the stream; safe to call twice (waits for the first)."""
        self._close_soon(reason)
        assert self._closing is not None
        await asyncio.shield(self._closing)

    async def _close(self, reason: str) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        # Leave the output's registry and the stream together, before the slow peer close, so
        # nobody sees a session that holds no subscription (nor counts it against the cap).
        if self._on_closed is not None:
            self._on_closed(self)
        if self._sub is not None:
            self._sub.close()
        await self.talk.close()  # the doorbell is free for other talkers at once
        try:
            if self._pc is not None:
                await self._pc.close()
        except Exception:
            logger.exception("%s: closing the peer connection failed", self.label)
        finally:
            self.state = "closed"
        sent = self._video_track.frames if self._video_track is not None else 0
        logger.info(
            "%s on %s ended (%s) after %.0f s, %d frames sent",
            self.label,
            self.stream.name,
            reason,
            time.monotonic() - self.created,
            sent,
        )

    # -- stats -------------------------------------------------------------------------------

    def stats(self) -> ViewerStats:
        """A JSON-friendly summary (without the session id, which is a credential)."""
        video, audio = self._video_track, self._audio_track
        choice = self.video
        return {
            "id": self.label,
            "state": self.state,
            "age": round(time.monotonic() - self.created, 1),
            "video": None
            if choice is None
            else {
                "payload_type": choice.payload_type,
                "profile_level_id": choice.profile_level_id,
                "source_profile": choice.source_profile,
                "profile_match": choice.exact,
            },
            "audio": self.audio_codec,
            "audio_relayed": self.audio_codec is not None,
            "audio_note": self.audio_note,
            "frames_sent": video.frames if video else 0,
            "keyframes_sent": video.keyframes if video else 0,
            "bytes_sent": video.bytes if video else 0,
            "frames_squeezed": video.squeezed if video else 0,
            "audio_frames_sent": audio.frames if audio else 0,
            "keyframe_requests": self.keyframe_requests,
            "keyframes_forwarded": self.keyframes_forwarded,
            "talking": self.talk.talking,
        }


def _codecs(kind: str) -> list[Any]:
    return list(RTCRtpSender.getCapabilities(kind).codecs)
