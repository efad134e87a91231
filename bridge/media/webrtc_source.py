"""The SkyBell WebRTC source: an aiortc viewer peer that yields encoded MediaPackets.

It knows nothing about signaling: the KVS viewer hands it the ICE servers from the live call,
sends :meth:`WebRtcSource.create_offer`'s SDP, and feeds back the answer and any trickled
candidates. Nothing on this path decodes; see aiortc_patch.py for how the receivers are made
to pass encoded frames through.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import candidate_from_sdp

from bridge.errors import BridgeError
from bridge.tasks import TaskSet

from . import aiortc_patch
from .keyframes import KeyframeKind
from .packet import MediaPacket
from .talk_track import TalkTrack

__all__ = [
    "MAX_SIGNALING_PAYLOAD",
    "IceServerHealth",
    "WebRtcSource",
    "WebRtcSourceError",
    "choose_ice_servers",
    "parse_candidate",
]

logger = logging.getLogger(__name__)

# KVS refuses a signaling message whose base64 payload exceeds 10 KB.
MAX_SIGNALING_PAYLOAD = 10 * 1024
_AUDIO_CODECS = ("audio/opus", "audio/PCMU", "audio/PCMA")
_URL_RE = re.compile(r"(?P<scheme>stuns?|turns?):[^?]+(\?transport=(?P<transport>\w+))?$")


class WebRtcSourceError(BridgeError):
    """The WebRTC session could not be set up, or it failed."""

    transient = True


# -- ICE servers -------------------------------------------------------------------------------


class IceServerHealth:
    """Remembers STUN/TURN URLs that made gathering time out, for ``ttl`` seconds.

    aiortc gathers every candidate before the SDP exists, so a dead server costs the full
    gathering timeout on each start; after one such start we leave it out until the TTL ends.
    """

    def __init__(self, ttl: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._dead: dict[str, float] = {}

    def is_dead(self, url: str) -> bool:
        """Whether ``url`` timed out less than ``ttl`` seconds ago."""
        until = self._dead.get(_url_key(url))
        return until is not None and self._clock() < until

    def mark_dead(self, url: str) -> None:
        """Skip ``url`` for the next ``ttl`` seconds."""
        self._dead[_url_key(url)] = self._clock() + self._ttl


def _url_key(url: str) -> str:
    return url.strip().lower()


_default_health = IceServerHealth()


def _turn_rank(scheme: str, transport: str | None) -> int | None:
    """Lower is better; None means aiortc cannot use it."""
    if scheme == "turn" and transport in (None, "udp"):
        return 0  # plain UDP relay: cheapest, lowest latency
    if scheme == "turns" and transport in (None, "tcp"):
        return 1  # TLS on 443 gets through firewalls that block UDP
    if scheme == "turn" and transport == "tcp":
        return 2
    # turns:...?transport=udp would be DTLS to the TURN server, which aioice lacks.
    return None


def choose_ice_servers(
    ice: Sequence[Mapping[str, Any]], health: IceServerHealth | None = None
) -> list[RTCIceServer]:
    """Pick at most one STUN and one TURN URL from a browser-style ICE server list.

    aiortc only ever uses the first STUN and the first TURN URL it is given, so the choice is
    made here: TURN over UDP first, then TURN over TLS/TCP, never ``turns:`` over UDP. URLs that
    recently made gathering time out are skipped.
    """
    health = health or _default_health
    stun: str | None = None
    turns: list[tuple[int, int, str, Mapping[str, Any]]] = []
    order = 0
    for entry in ice:
        urls = entry.get("urls") or entry.get("url") or []
        for url in [urls] if isinstance(urls, str) else list(urls):
            match = _URL_RE.match(url.strip())
            if match is None or health.is_dead(url):
                continue
            scheme, transport = match["scheme"], match["transport"]
            if scheme == "stun" and stun is None:
                stun = url.strip()
            elif scheme in ("turn", "turns") and entry.get("username") and entry.get("credential"):
                rank = _turn_rank(scheme, transport)
                if rank is not None:
                    turns.append((rank, order, url.strip(), entry))
                    order += 1
    servers = [RTCIceServer(urls=stun)] if stun else []
    if turns:
        _rank, _order, url, entry = min(turns, key=lambda t: (t[0], t[1]))
        servers.append(
            RTCIceServer(
                urls=url, username=str(entry["username"]), credential=str(entry["credential"])
            )
        )
    return servers


def parse_candidate(
    candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
) -> RTCIceCandidate | None:
    """Turn a KVS/browser ICE candidate into aiortc's; None for end-of-candidates ("")."""
    text = candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    if not text:
        return None
    try:
        parsed = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError) as err:
        raise WebRtcSourceError(f"malformed ICE candidate: {candidate!r}") from err
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    return parsed


def _capabilities(kind: str, wanted: Callable[[RTCRtpCodecCapability], bool]) -> list[Any]:
    caps = RTCRtpReceiver.getCapabilities(kind)
    assert caps is not None
    return [c for c in caps.codecs if wanted(c)]


def _lean(sdp: str) -> str:
    """Drop what the camera does not need, to stay far from KVS's 10 KB message limit.

    aiortc lists its DTLS certificate fingerprint three times (SHA-256/384/512) in every
    m-section; SHA-256 is the one every WebRTC stack checks, so the others go.
    """
    lines = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=fingerprint:sha-384", "a=fingerprint:sha-512"))
    ]
    return "\r\n".join(lines) + "\r\n"


def _signaling_size(sdp: str) -> int:
    payload = json.dumps({"type": "offer", "sdp": sdp}).encode()
    return len(base64.b64encode(payload))


# -- the source ------------------------------------------------------------------------------------

_END = object()


class WebRtcSource:
    """A recvonly H.264 + sendrecv audio peer delivering encoded packets (see the module docstring).

    Audio is offered ``sendrecv`` with a silent ``TalkTrack`` as what we send, so talking to the
    visitor needs no renegotiation; the track costs nothing until someone talks. A doorbell
    that answers without receiving audio leaves ``talk_track`` None and ``talk_refusal`` saying
    why; live view does not depend on it.

    Use ``packets()`` (an async iterator that ends on close and raises on failure) and/or pass
    ``on_packet``. ``on_state`` sees every connection-state change ("connecting",
    "connected", "failed", "closed").
    """

    def __init__(
        self,
        ice_servers: Sequence[RTCIceServer] = (),
        *,
        on_packet: Callable[[MediaPacket], None] | None = None,
        on_state: Callable[[str], None] | None = None,
        health: IceServerHealth | None = None,
        release_on_marker: bool = True,
        queue_size: int = 2048,
        host_addresses: Sequence[str] | None = None,
    ) -> None:
        aiortc_patch.install()
        # Host candidates of this peer only (streams.ice_host_addresses); None: every interface.
        self._host_addresses = host_addresses
        # An explicit (possibly empty) list: aiortc would otherwise add Google's STUN server.
        self._ice_servers = list(ice_servers)
        self._on_packet = on_packet
        self._on_state = on_state
        self._health = health or _default_health
        self._release_on_marker = release_on_marker
        self._pc: RTCPeerConnection | None = None
        self._transceivers: dict[str, RTCRtpTransceiver] = {}
        self._handles: dict[str, aiortc_patch.PassthroughHandle] = {}
        self._queue: asyncio.Queue[MediaPacket | object] = asyncio.Queue(maxsize=queue_size)
        self._overflowed = False
        self._tasks = TaskSet()
        self._failure: str | None = None
        self._closed = False
        self._connected = asyncio.Event()
        self._state = "new"
        self._talk: TalkTrack | None = None
        self.talk_refusal = "the doorbell has not answered yet"

    # -- negotiation -----------------------------------------------------------------------

    async def create_offer(self) -> str:
        """Build the peer and return a non-trickle offer SDP with every local candidate."""
        if self._pc is not None:
            raise WebRtcSourceError("offer already created")
        with aiortc_patch.scoped_host_candidates(self._host_addresses):
            # The ICE connections are made with the transceivers, so they keep these addresses.
            pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
            video = pc.addTransceiver("video", direction="recvonly")
            # sendrecv: the talk path (bridge.talk) sends on it; see TalkTrack for the cost.
            self._talk = TalkTrack()
            audio = pc.addTransceiver(self._talk, direction="sendrecv")
        self._pc = pc
        pc.on("connectionstatechange", self._state_changed)

        # H.264 only, every profile, plus RTX so NACKed packets come back (VP8 would be
        # offered first otherwise and a camera could pick it).
        video.setCodecPreferences(
            _capabilities("video", lambda c: c.mimeType.lower() in ("video/h264", "video/rtx"))
        )
        # We are the offerer, so offer all three SkyBell codecs and take what the camera picks.
        audio.setCodecPreferences(
            _capabilities(
                "audio", lambda c: c.mimeType.lower() in [a.lower() for a in _AUDIO_CODECS]
            )
        )
        for kind, transceiver in (("video", video), ("audio", audio)):
            self._transceivers[kind] = transceiver
            self._handles[kind] = aiortc_patch.enable_passthrough(
                transceiver.receiver, release_on_marker=self._release_on_marker
            )

        started = time.monotonic()
        await pc.setLocalDescription(await pc.createOffer())
        elapsed = time.monotonic() - started
        sdp = _lean(pc.localDescription.sdp)
        self._note_dead_servers(sdp, elapsed)
        size = _signaling_size(sdp)
        if size > MAX_SIGNALING_PAYLOAD:
            raise WebRtcSourceError(f"offer too large for KVS: {size} bytes after base64")
        logger.debug("offer ready in %.3f s, %d bytes as KVS payload", elapsed, size)
        return sdp

    def _note_dead_servers(self, sdp: str, elapsed: float) -> None:
        # Why: aiortc gathers every candidate before createOffer's SDP exists, and aioice waits
        # up to 5 s for STUN/TURN. Measured here with a silent STUN server on 127.0.0.1:
        # 5.0 s on every start before; now 2.0 s once (aiortc_patch's gathering timeout), then
        # 0.003 s while the server is remembered as dead (IceServerHealth, 10 minutes).
        # Only a server that made gathering run into the timeout is "dead": a DNS failure
        # returns at once and costs nothing, so it may be retried next time.
        if elapsed < 0.9 * aiortc_patch.current_gather_timeout():
            return
        for server in self._ice_servers:
            url = server.urls if isinstance(server.urls, str) else server.urls[0]
            wanted = "typ relay" if url.startswith("turn") else "typ srflx"
            if wanted not in sdp:
                logger.warning("ICE server %s did not answer; skipping it for a while", url)
                self._health.mark_dead(url)

    async def set_answer(self, sdp: str) -> None:
        """Apply the camera's answer; media readers start here."""
        pc = self._require_pc()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except (ValueError, AssertionError) as err:
            raise WebRtcSourceError(f"unusable SDP answer: {err}") from err
        except Exception as err:  # aiortc raises its own OperationError/InternalError
            if type(err).__module__.startswith("aiortc"):
                raise WebRtcSourceError(f"answer rejected: {err}") from err
            raise
        for kind, transceiver in self._transceivers.items():
            track = transceiver.receiver.track
            if track is not None:
                self._tasks.spawn(self._read(kind, track))
        self._settle_talk()

    def _settle_talk(self) -> None:
        """Keep the talk track only if the doorbell's answer lets it receive our audio."""
        audio = self._transceivers.get("audio")
        talk = self._talk
        if audio is None or talk is None:
            return
        direction = audio.currentDirection
        codecs = getattr(audio, "_codecs", [])  # the answer's codecs, set by aiortc
        if direction in ("sendrecv", "sendonly") and codecs:
            codec = codecs[0]
            talk.configure(codec.mimeType, codec.clockRate)
            self.talk_refusal = ""
            logger.debug("talk: the doorbell takes %s audio", codec.mimeType)
        else:
            # Our direction is the mirror of the doorbell's: recvonly here is its sendonly.
            theirs = {"recvonly": "sendonly", "inactive": "inactive"}.get(direction or "", "")
            answered = f"answered audio {theirs}" if theirs else "answered without audio"
            self.talk_refusal = f"the doorbell {answered}: it takes no audio"
            logger.info("talk unsupported: %s", self.talk_refusal)
            talk.stop()
            self._talk = None

    @property
    def talk_track(self) -> TalkTrack | None:
        """What the doorbell hears, once it accepted audio; None before or without."""
        return self._talk if not self.talk_refusal else None

    async def add_remote_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """Add one trickled remote candidate in KVS format ("" means end of candidates)."""
        pc = self._require_pc()
        await pc.addIceCandidate(parse_candidate(candidate, sdp_mid, sdp_mline_index))

    # -- media -------------------------------------------------------------------------------

    async def packets(self) -> AsyncIterator[MediaPacket]:
        """Every packet in arrival order; stops on close(), raises WebRtcSourceError on failure."""
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # let another iterator see the end too
                if self._failure is not None:
                    raise WebRtcSourceError(self._failure)
                return
            assert isinstance(item, MediaPacket)
            yield item

    async def _read(self, kind: str, track: Any) -> None:
        while True:
            try:
                packet = await track.recv()
            except MediaStreamError:
                # The track ends on RTCP BYE or a dead transport; without video the session
                # is over even if ICE still says "connected".
                if kind == "video" and not self._closed:
                    self._failure = "the camera stopped the video stream"
                    self._enqueue(_END)
                return
            if not isinstance(packet, MediaPacket):  # pragma: no cover - patch not applied
                raise WebRtcSourceError(f"{kind} receiver decoded instead of passing through")
            if self._on_packet is not None:
                self._on_packet(packet)
            self._enqueue(packet)

    def _enqueue(self, item: MediaPacket | object) -> None:
        if item is not _END and self._queue.full():
            # Nobody is draining packets(): drop rather than grow without bound.
            if not self._overflowed:
                logger.warning("packet queue full; dropping packets until it drains")
                self._overflowed = True
            return
        self._overflowed = False
        if item is _END and self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(item)

    def request_keyframe(self, kind: KeyframeKind = "pli") -> None:
        """Send a PLI or FIR to the camera (asynchronously; a no-op before media arrives)."""
        video = self._transceivers.get("video")
        if video is not None and not self._closed:
            self._tasks.spawn(self._send_keyframe_request(video.receiver, kind))

    async def _send_keyframe_request(self, receiver: RTCRtpReceiver, kind: KeyframeKind) -> None:
        if await aiortc_patch.request_keyframe(receiver, kind):
            logger.debug("keyframe requested (%s)", kind)

    # -- state -------------------------------------------------------------------------------

    @property
    def connection_state(self) -> str:
        """aiortc's connection state: new, connecting, connected, failed or closed."""
        return self._state

    @property
    def stats(self) -> dict[str, Any]:
        """Assembler counters per kind (delivered, dropped, lost, keyframe requests)."""
        return {kind: handle.stats for kind, handle in self._handles.items()}

    def negotiated_codecs(self) -> dict[str, str]:
        """kind -> "mime/type profile-level-id?" of the first negotiated codec."""
        result: dict[str, str] = {}
        for kind, transceiver in self._transceivers.items():
            codecs = getattr(transceiver, "_codecs", [])  # set by aiortc on negotiation
            if codecs:
                first = codecs[0]
                plid = first.parameters.get("profile-level-id")
                result[kind] = f"{first.mimeType} {plid}" if plid else first.mimeType
        return result

    async def wait_connected(self, timeout: float) -> None:
        """Wait until the peer connects; WebRtcSourceError on failure or timeout."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError as err:
            raise WebRtcSourceError(f"not connected after {timeout} s") from err
        if self._failure is not None:
            raise WebRtcSourceError(self._failure)

    def _state_changed(self) -> None:
        if self._pc is None:
            return
        state = self._pc.connectionState
        self._state = state
        logger.debug("connection state %s", state)
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed") and not self._closed:
            self._failure = f"WebRTC connection {state}"
            self._connected.set()
            self._enqueue(_END)
        if self._on_state is not None:
            self._on_state(state)

    def _require_pc(self) -> RTCPeerConnection:
        if self._pc is None or self._closed:
            raise WebRtcSourceError("create_offer() first, and not after close()")
        return self._pc

    async def close(self) -> None:
        """Stop the peer and every reader; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._talk is not None:
            self._talk.stop()
        await self._tasks.cancel_all()
        if self._pc is not None:
            await self._pc.close()
        self._enqueue(_END)
