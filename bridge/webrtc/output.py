"""Every WebRTC viewer of every stream: created under a per-stream cap, found by id, closed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TypedDict

from aiortc import RTCIceServer

from bridge.media.hub import Stream

from .errors import StreamUnavailable, ViewerLimitError
from .offer import parse_offer
from .viewer import KeyframeGate, ViewerStats, WhepViewer

__all__ = ["WebRtcOutput", "WebRtcStats"]

logger = logging.getLogger(__name__)


class WebRtcStats(TypedDict):
    """A stream's WebRTC viewers, in its entry of ``/api/streams``."""

    sessions: int
    limit: int  # the most sessions the stream takes (webrtc.max_sessions)
    keyframes_forwarded: int  # viewers' keyframe requests passed on to the doorbell
    viewers: list[ViewerStats]


class WebRtcOutput:
    """Creates, finds and ends viewer sessions; the HTTP glue's only entry point."""

    def __init__(
        self,
        *,
        max_sessions_per_stream: int = 10,
        ice_servers: Sequence[RTCIceServer] = (),
        keyframe_timeout: float = 20.0,
        keyframe_interval: float = 1.0,
        connect_timeout: float = 30.0,
        host_addresses: Sequence[str] | None = None,
    ) -> None:
        self.max_sessions_per_stream = max_sessions_per_stream
        # Empty by default: viewers are on the LAN, and aiortc would otherwise add Google STUN.
        self._ice_servers = list(ice_servers)
        self._keyframe_timeout = keyframe_timeout
        self._keyframe_interval = keyframe_interval
        self._connect_timeout = connect_timeout
        # Host candidates offered to viewers; None: every interface (or the process-wide list).
        self._host_addresses = host_addresses
        self._sessions: dict[str, WhepViewer] = {}
        self._gates: dict[Stream, KeyframeGate] = {}
        self._closed = False

    async def create(self, stream: Stream, offer_sdp: str) -> tuple[WhepViewer, str]:
        """Answer a viewer's offer for ``stream``: (session, answer SDP with all candidates).

        Raises OfferError (bad or unsuitable offer), ViewerLimitError, StreamUnavailable.
        """
        if self._closed:
            raise StreamUnavailable("the bridge is shutting down")
        offer = parse_offer(offer_sdp)  # before subscribing: junk must not wake a doorbell
        count = len(self.sessions(stream))
        if count >= self.max_sessions_per_stream:
            raise ViewerLimitError(
                f"stream {stream.name} already has {count} WebRTC viewers "
                f"(limit {self.max_sessions_per_stream})"
            )
        gate = self._gates.get(stream)
        if gate is None:
            gate = self._gates[stream] = KeyframeGate(stream, self._keyframe_interval)
        session = WhepViewer(
            stream,
            gate,
            ice_servers=self._ice_servers,
            keyframe_timeout=self._keyframe_timeout,
            connect_timeout=self._connect_timeout,
            on_closed=self._forget,
            host_addresses=self._host_addresses,
        )
        # Registered before the first await, so concurrent offers count against the cap.
        self._sessions[session.id] = session
        try:
            answer = await session.negotiate(offer)
        except BaseException:
            await session.close("negotiation failed")
            raise
        return session, answer

    def get(self, session_id: str) -> WhepViewer | None:
        """The live session with this id."""
        return self._sessions.get(session_id)

    async def end(self, session_id: str) -> bool:
        """End a session (the viewer said goodbye); False if there is no such session."""
        session = self._sessions.get(session_id)
        if session is None:
            return False
        await session.close("ended by the viewer")
        return True

    def sessions(self, stream: Stream | None = None) -> list[WhepViewer]:
        """Live sessions, of one stream or all."""
        return [s for s in self._sessions.values() if stream is None or s.stream is stream]

    def _forget(self, session: WhepViewer) -> None:
        self._sessions.pop(session.id, None)
        if not self.sessions(session.stream):
            self._gates.pop(session.stream, None)

    def stats(self, stream: Stream) -> WebRtcStats:
        """Viewer sessions of ``stream``: count, limit, and each one's state and audio."""
        gate = self._gates.get(stream)
        return {
            "sessions": len(self.sessions(stream)),
            "limit": self.max_sessions_per_stream,
            "keyframes_forwarded": gate.forwarded if gate else 0,
            "viewers": [s.stats() for s in self.sessions(stream)],
        }

    async def close(self) -> None:
        """End every session; safe to call twice."""
        self._closed = True
        sessions = list(self._sessions.values())
        if sessions:
            logger.info("closing %d WebRTC session(s)", len(sessions))
        await asyncio.gather(*(s.close("shutting down") for s in sessions))
