"""Every use of aiortc and aioice internals, kept in this one module on purpose.

aiortc 1.16 has no public API for what the bridge needs, so this module reaches in, and
:func:`check_compat` asserts that each internal still has the shape we rely on. It is the
canary of an aiortc upgrade (pyproject pins aiortc to a minor for the same reason).

What it provides:

* H.264 Main and High profiles next to aiortc's Baseline ones, so a camera that offers or
  answers only Main/High negotiates.
* Passthrough receive: a receiver marked with :func:`enable_passthrough` delivers
  :class:`~bridge.media.packet.MediaPacket` objects from ``track.recv()`` instead of decoded
  frames. The receiver's jitter buffer is swapped for our assembler (marker release, gap
  detection, PLI, drop-until-keyframe) and ``rtcrtpreceiver.get_decoder`` is replaced by a
  dispatcher that passes our frames through untouched and decodes anything else as before, so
  peers that are not marked (the simulated doorbell, tests) keep normal decoding. NACK, RTX and
  RTCP stay aiortc's: we only replace what happens after depayloading. Measured at 720p15,
  2 Mbit/s (+ opus) on this 2-core box: 6.7-6.9 % of one core to ingest, against 14 % for
  aiortc's stock decoding receiver.
* Host candidates limited to chosen addresses, per peer (:func:`scoped_host_candidates`: the
  doorbell side, the simulated doorbells and the browser-facing peers each have their own) or
  process-wide for tests (:func:`restrict_host_candidates`), and a shorter STUN/TURN gathering
  timeout (aioice).
* Hooks for pre-encoded senders (aiortc ignores PLI for ``av.Packet`` tracks): an RTP send
  filter (the simulated doorbell's packet loss), a keyframe-request callback on a sender (WebRTC
  out), and a transport-level RTCP feedback tap that sees every PLI, FIR and NACK with its SSRCs
  (the simulated doorbell judges them the way libwebrtc does).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import types
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.rtcicetransport
import aiortc.rtcrtpreceiver
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)

from .assembler import AssembledFrame, AssemblerStats, AudioAssembler, VideoAssembler
from .packet import MediaPacket

__all__ = [
    "H264_PROFILE_LEVEL_IDS",
    "PassthroughHandle",
    "check_compat",
    "current_gather_timeout",
    "enable_passthrough",
    "install",
    "install_rtp_send_filter",
    "parse_host_addresses",
    "request_keyframe",
    "restrict_host_candidates",
    "scoped_host_candidates",
    "sender_ssrcs",
    "set_gather_timeout",
    "watch_keyframe_requests",
    "watch_rtcp_feedback",
]

logger = logging.getLogger(__name__)

# profile-level-id per profile, level 3.1 like aiortc's own entries. Negotiation compares
# only the profile (aiortc's is_codec_compatible ignores the level), so 3.1 matches a camera
# that says 4d0028 as well.
H264_PROFILE_LEVEL_IDS: dict[str, tuple[str, ...]] = {
    "baseline": ("42001f", "42e01f"),
    "main": ("4d001f",),
    "high": ("64001f",),
}
_EXTRA_PROFILES = ("4d001f", "64001f")

# Default aioice waits 5 s for STUN/TURN answers before the SDP can exist. KVS's STUN and TURN
# servers are regional AWS endpoints: a binding is one round trip and a UDP TURN allocation two,
# so 0.8 s covers a 250 ms RTT while keeping a dead server's first start under 1 s. A server that
# times out is remembered for 10 minutes by webrtc_source, so later starts pay nothing. The
# trade-off: TURN over TLS on a very slow link can miss the window; host and srflx candidates
# (the usual path to a doorbell) are unaffected.
DEFAULT_GATHER_TIMEOUT = 0.8

_state: dict[str, Any] = {
    "installed": False,
    "host_addresses": None,
    "gather_timeout": DEFAULT_GATHER_TIMEOUT,
}
# Typed Any: we read and replace module globals that aiortc does not export.
_receiver_module: Any = aiortc.rtcrtpreceiver
_original_get_decoder = _receiver_module.get_decoder
_original_get_host_addresses = aioice.ice.get_host_addresses
_original_get_component_candidates = aioice.ice.Connection.get_component_candidates
_original_connection_init = aioice.ice.Connection.__init__
_original_gather_candidates = aioice.ice.Connection.gather_candidates

# The host addresses of the peers being built in this context (scoped_host_candidates); None
# leaves them to the process-wide setting. Each aioice Connection copies the value when it is
# made, because aiortc gathers later (setLocalDescription), possibly from another task.
_scoped_hosts: ContextVar[tuple[str, ...] | None] = ContextVar(
    "bridge_ice_host_addresses", default=None
)
_CONN_HOSTS_ATTR = "_bridge_host_addresses"

# Private attribute names, spelled out once (Python name mangling).
_RX_JITTER = "_RTCRtpReceiver__jitter_buffer"
_RX_KIND = "_RTCRtpReceiver__kind"
_RX_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
_HANDLE_ATTR = "_bridge_passthrough"
_FILTERS_ATTR = "_bridge_send_filters"
_KEYFRAME_HOOK_ATTR = "_bridge_keyframe_hook"


# -- compatibility canary ----------------------------------------------------------------------


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(
            f"aiortc {aiortc.__version__} / aioice: {what} is missing or changed shape; "
            "bridge/media/aiortc_patch.py must be updated for this version"
        )


def _names(func: object) -> tuple[str, ...]:
    """Global and attribute names a function uses, including nested comprehensions/lambdas."""
    code = getattr(func, "__code__", func)
    if not isinstance(code, types.CodeType):
        return ()
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_names(const))
    return tuple(names)


def _params(func: object) -> tuple[str, ...]:
    code = getattr(func, "__code__", None)
    return tuple(code.co_varnames[: code.co_argcount]) if code is not None else ()


def check_compat() -> None:
    """Assert every aiortc/aioice internal used here still exists with the expected shape."""
    rx = aiortc.rtcrtpreceiver
    codecs = getattr(aiortc.codecs, "CODECS", None)
    _require(isinstance(codecs, dict) and isinstance(codecs.get("video"), list), "codecs.CODECS")
    _require(callable(getattr(rx, "get_decoder", None)), "rtcrtpreceiver.get_decoder")
    # The decoder thread must look get_decoder up as a module global, or replacing it is moot.
    _require(
        "get_decoder" in _names(getattr(rx, "decoder_worker", None)),
        "rtcrtpreceiver.decoder_worker calling the module-global get_decoder",
    )
    handle_rtp = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    _require(
        {_RX_JITTER, "add", "_data", "_send_rtcp_pli"} <= set(_names(handle_rtp)),
        "RTCRtpReceiver._handle_rtp_packet (jitter buffer add / _data / PLI)",
    )
    _require(
        {_RX_JITTER, _RX_KIND} <= set(_names(RTCRtpReceiver.__init__)),
        "RTCRtpReceiver.__init__ jitter buffer and kind attributes",
    )
    _require(
        _params(getattr(RTCRtpReceiver, "_send_rtcp_pli", None)) == ("self", "media_ssrc"),
        "RTCRtpReceiver._send_rtcp_pli(media_ssrc)",
    )
    _require(callable(getattr(RTCRtpReceiver, "_send_rtcp", None)), "RTCRtpReceiver._send_rtcp")
    _require(
        _RX_RTCP_SSRC in set(_names(RTCRtpReceiver.__init__)),
        "RTCRtpReceiver.__init__ rtcp_ssrc attribute (the sender SSRC of our feedback)",
    )
    _require(
        "pack" in _names(getattr(RTCRtpSender, "_next_encoded_frame", None)),
        "RTCRtpSender._next_encoded_frame packing pre-encoded av.Packet",
    )
    _require(
        callable(getattr(RTCRtpSender, "_handle_rtcp_packet", None)),
        "RTCRtpSender._handle_rtcp_packet",
    )
    _require(
        {"_ssrc", "_rtx_ssrc"} <= set(_names(RTCRtpSender.__init__)),
        "RTCRtpSender._ssrc/_rtx_ssrc",
    )
    _require(callable(getattr(RTCDtlsTransport, "_send_rtp", None)), "RTCDtlsTransport._send_rtp")
    _require(callable(getattr(aioice.ice, "get_host_addresses", None)), "ice.get_host_addresses")
    # aiortc makes one aioice Connection per ICE gatherer, with keyword arguments only.
    _require(
        "Connection" in _names(getattr(aiortc.rtcicetransport.RTCIceGatherer, "__init__", None)),
        "RTCIceGatherer.__init__ making an aioice Connection",
    )
    # The original, not whatever is installed now: after install() it is our wrapper.
    gather = _original_gather_candidates
    _require(
        {"get_host_addresses", "get_component_candidates"} <= set(_names(gather)),
        "aioice Connection.gather_candidates",
    )
    _require(
        "timeout" in _params(_original_get_component_candidates),
        "aioice Connection.get_component_candidates(timeout=)",
    )


# -- codecs --------------------------------------------------------------------------------------


def _register_h264_profiles() -> None:
    video: list[RTCRtpCodecParameters] = aiortc.codecs.CODECS["video"]
    # aiortc offers "nack pli" only; the hub escalates to FIR when a PLI brings no keyframe,
    # so say so in the SDP as Chrome does ("ccm fir").
    for codec in video:
        if codec.mimeType.lower() == "video/h264" and not any(
            fb.type == "ccm" for fb in codec.rtcpFeedback
        ):
            codec.rtcpFeedback.append(RTCRtcpFeedback(type="ccm", parameter="fir"))
    present = {str(c.parameters.get("profile-level-id", "")) for c in video}
    used = {c.payloadType for c in video} | {c.payloadType for c in aiortc.codecs.CODECS["audio"]}
    for profile_level_id in _EXTRA_PROFILES:
        if profile_level_id in present:
            continue
        pt = next(p for p in range(97, 128) if p not in used and p + 1 not in used)
        used |= {pt, pt + 1}
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=pt,
                rtcpFeedback=[
                    RTCRtcpFeedback(type="nack"),
                    RTCRtcpFeedback(type="nack", parameter="pli"),
                    RTCRtcpFeedback(type="ccm", parameter="fir"),
                    RTCRtcpFeedback(type="goog-remb"),
                ],
                parameters={
                    "level-asymmetry-allowed": "1",
                    "packetization-mode": "1",
                    "profile-level-id": profile_level_id,
                },
            )
        )
        # aiortc pairs every video codec with an RTX entry; filter_preferred_codecs looks it
        # up by apt, so NACK retransmissions work for these profiles too.
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx", clockRate=90000, payloadType=pt + 1, parameters={"apt": pt}
            )
        )


# -- passthrough receive -------------------------------------------------------------------------


class _PassthroughBatch:
    """What our jitter-buffer stand-in hands the receiver: zero or more complete frames.

    The receiver overwrites ``timestamp`` with its own mapping; we keep our own pts.
    """

    __slots__ = ("frames", "timestamp")

    def __init__(self, frames: list[AssembledFrame]) -> None:
        self.frames = frames
        self.timestamp = 0


@dataclass(slots=True)
class PassthroughHandle:
    """Per-receiver passthrough state: the assembler's counters, the remote SSRC, FIR numbering."""

    kind: str
    stats: AssemblerStats
    media_ssrc: int | None = None
    fir_seq: int = 0  # RFC 5104: a new request carries a new number, a repeat the same one


class _AssemblerSlot:
    """Sits in ``RTCRtpReceiver.__jitter_buffer``; aiortc only ever calls ``add``."""

    def __init__(self, assembler: VideoAssembler | AudioAssembler, handle: PassthroughHandle):
        self._assembler = assembler
        self._handle = handle

    def add(self, packet: RtpPacket) -> tuple[bool, _PassthroughBatch | None]:
        self._handle.media_ssrc = packet.ssrc
        # The receiver stores the depayloaded bytes (Annex-B for H.264) in packet._data.
        data: bytes = getattr(packet, "_data", b"")
        pli, frames = self._assembler.push(
            packet.sequence_number, packet.timestamp, bool(packet.marker), data
        )
        return pli, (_PassthroughBatch(frames) if frames else None)


class _DispatchDecoder:
    """Returns MediaPackets for our batches; decodes everything else with aiortc's decoder."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self._codec = codec
        self._kind = "video" if codec.mimeType.lower().startswith("video/") else "audio"
        self._name = codec.name.lower()
        self._fallback: Any = None

    def decode(self, encoded_frame: Any) -> list[Any]:
        if isinstance(encoded_frame, _PassthroughBatch):
            return [
                MediaPacket(
                    kind="video" if self._kind == "video" else "audio",
                    codec=self._name,
                    data=f.data,
                    pts=f.pts,
                    clock_rate=self._codec.clockRate,
                    keyframe=f.keyframe,
                    arrival=f.arrival,
                )
                for f in encoded_frame.frames
            ]
        if self._fallback is None:
            self._fallback = _original_get_decoder(self._codec)
        return cast(list[Any], self._fallback.decode(encoded_frame))


def _get_decoder(codec: RTCRtpCodecParameters) -> _DispatchDecoder:
    return _DispatchDecoder(codec)


def enable_passthrough(
    receiver: RTCRtpReceiver, *, release_on_marker: bool = True, max_wait: float = 0.25
) -> PassthroughHandle:
    """Make ``receiver`` deliver MediaPackets (no decoding); call before negotiation.

    ``release_on_marker=False`` reproduces aiortc's release-on-next-frame timing (benchmarks).
    """
    install()
    existing = getattr(receiver, _HANDLE_ATTR, None)
    if isinstance(existing, PassthroughHandle):
        return existing
    kind = str(getattr(receiver, _RX_KIND))
    assembler: VideoAssembler | AudioAssembler
    if kind == "video":
        assembler = VideoAssembler(release_on_marker=release_on_marker, max_wait=max_wait)
    else:
        assembler = AudioAssembler()
    handle = PassthroughHandle(kind=kind, stats=assembler.stats)
    setattr(receiver, _RX_JITTER, _AssemblerSlot(assembler, handle))
    setattr(receiver, _HANDLE_ATTR, handle)
    return handle


async def request_keyframe(receiver: RTCRtpReceiver, kind: str = "pli") -> bool:
    """Send a PLI (or a FIR) for the stream ``receiver`` gets; False before any packet arrived.

    The request names the primary SSRC: ``media_ssrc`` is taken from packets after aiortc has
    unwrapped RTX, and libwebrtc ignores feedback naming any other SSRC.
    """
    handle = getattr(receiver, _HANDLE_ATTR, None)
    if not isinstance(handle, PassthroughHandle) or handle.media_ssrc is None:
        return False
    if kind != "fir":
        await receiver._send_rtcp_pli(handle.media_ssrc)
        return True
    sender_ssrc = getattr(receiver, _RX_RTCP_SSRC, None)
    if sender_ssrc is None:
        return False
    handle.fir_seq = (handle.fir_seq + 1) & 0xFF
    # FIR (RFC 5104 4.3.1): media SSRC 0 in the header; the FCI names the stream and a sequence
    # number that must change for each new request, or the sender takes it for a repeat.
    fci = struct.pack("!LB3x", handle.media_ssrc, handle.fir_seq)
    await receiver._send_rtcp(
        RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=sender_ssrc, media_ssrc=0, fci=fci)
    )
    return True


# -- ICE -----------------------------------------------------------------------------------------


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    allowed: tuple[str, ...] | list[str] | None = _scoped_hosts.get()
    if allowed is None:
        allowed = _state["host_addresses"]
    if allowed is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    # aioice itself skips 127.0.0.1; an explicit list is taken as is, filtered by family.
    return [
        a
        for a in allowed
        if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a and socket.has_ipv6)
    ]


def restrict_host_candidates(addresses: list[str] | None) -> None:
    """Gather host candidates only on ``addresses`` (e.g. ["127.0.0.1"]); None restores.

    Process-wide, for tests and benchmarks that must keep every peer on loopback. The bridge
    itself never calls it: it scopes each kind of peer with :func:`scoped_host_candidates`,
    which wins over this for the peers made inside it.
    """
    install()
    _state["host_addresses"] = list(addresses) if addresses is not None else None


def parse_host_addresses(text: str) -> list[str] | None:
    """A setting's comma-separated addresses as a list; None when empty (every interface)."""
    return [a.strip() for a in text.split(",") if a.strip()] or None


@contextlib.contextmanager
def scoped_host_candidates(addresses: Sequence[str] | None) -> Iterator[None]:
    """Peers built inside this block gather host candidates only on ``addresses``.

    None means no restriction of their own (the process-wide one, if any, applies) and also
    undoes an enclosing scope: a peer of one kind never inherits another kind's addresses
    through a task that happened to be started inside that scope. Build the peer, add its
    transceivers and apply the remote description inside the block; gathering may then happen
    anywhere, since each ICE connection keeps the addresses it was made with.
    """
    install()
    token = _scoped_hosts.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _scoped_hosts.reset(token)


def _connection_init(self: aioice.ice.Connection, *args: Any, **kwargs: Any) -> None:
    _original_connection_init(self, *args, **kwargs)
    setattr(self, _CONN_HOSTS_ATTR, _scoped_hosts.get())


async def _gather_candidates(self: aioice.ice.Connection) -> None:
    # Gathering runs in whatever task calls setLocalDescription (or one it spawns): put back
    # the addresses this connection was made under, for aioice's get_host_addresses call.
    token = _scoped_hosts.set(getattr(self, _CONN_HOSTS_ATTR, None))
    try:
        await _original_gather_candidates(self)
    finally:
        _scoped_hosts.reset(token)


async def _get_component_candidates(
    self: aioice.ice.Connection, component: int, addresses: list[str], timeout: float | None = None
) -> list[aioice.Candidate]:
    limit = _state["gather_timeout"] if timeout is None else timeout
    original = cast(
        Callable[..., Coroutine[Any, Any, list[aioice.Candidate]]],
        _original_get_component_candidates,
    )
    return await original(self, component=component, addresses=addresses, timeout=limit)


def current_gather_timeout() -> float:
    """The STUN/TURN gathering timeout in force, in seconds."""
    return float(_state["gather_timeout"])


def set_gather_timeout(seconds: float) -> None:
    """Cap how long gathering waits for STUN/TURN answers (aioice's default is 5 s)."""
    install()
    _state["gather_timeout"] = float(seconds)


# -- hooks for the simulated doorbell ------------------------------------------------------------

SendFilter = Callable[[int, bool], bool]
"""drop(sequence_number, is_rtx_retransmission) -> True to drop the RTP packet."""


def install_rtp_send_filter(sender: RTCRtpSender, drop: SendFilter) -> None:
    """Let ``drop`` discard outgoing RTP packets of ``sender`` (call after negotiation).

    The hook sits on the sender's DTLS transport, before SRTP, and sees plaintext RTP of every
    stream on it; packets of other SSRCs and all RTCP pass untouched.
    """
    transport = sender.transport
    filters: dict[int, tuple[SendFilter, bool]] | None = getattr(transport, _FILTERS_ATTR, None)
    if filters is None:
        filters = {}
        original = transport._send_rtp

        async def send_rtp(data: bytes) -> None:
            # RFC 5761 demux: RTCP packet types 192-223 share the second byte with RTP's PT.
            if len(data) >= 12 and not 192 <= data[1] <= 223:
                entry = filters.get(int.from_bytes(data[8:12], "big"))
                if entry is not None:
                    seq = int.from_bytes(data[2:4], "big")
                    if entry[0](seq, entry[1]):
                        return
            await original(data)

        setattr(transport, "_send_rtp", send_rtp)  # noqa: B010 - instance override on purpose
        setattr(transport, _FILTERS_ATTR, filters)
    filters[sender._ssrc] = (drop, False)
    filters[sender._rtx_ssrc] = (drop, True)


def watch_keyframe_requests(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the remote peer sends PLI or FIR for ``sender``.

    aiortc only honours PLI when it encodes frames itself; a track of pre-encoded av.Packets
    never hears about it, so the simulated doorbell forces its keyframes through this.
    """
    if getattr(sender, _KEYFRAME_HOOK_ATTR, None) is not None:
        setattr(sender, _KEYFRAME_HOOK_ATTR, callback)
        return
    setattr(sender, _KEYFRAME_HOOK_ATTR, callback)
    original = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            hook: Callable[[], None] = getattr(sender, _KEYFRAME_HOOK_ATTR)
            hook()
        await original(packet)

    setattr(sender, "_handle_rtcp_packet", handle_rtcp)  # noqa: B010


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(primary SSRC, RTX SSRC) that ``sender`` sends with (aiortc picks both at creation)."""
    return int(sender._ssrc), int(sender._rtx_ssrc)


FeedbackPacket = RtcpPsfbPacket | RtcpRtpfbPacket
"""RTCP feedback as aiortc parses it: PSFB (PLI, FIR, REMB) or RTPFB (NACK)."""

_FEEDBACK_ATTR = "_bridge_feedback_hooks"


def watch_rtcp_feedback(sender: RTCRtpSender, callback: Callable[[FeedbackPacket], None]) -> None:
    """Call ``callback`` with every PSFB/RTPFB packet arriving on ``sender``'s transport.

    Call after negotiation (BUNDLE may move the sender). The hook sits on the DTLS transport,
    not the sender, on purpose: aiortc routes feedback to a sender by the common header's
    media SSRC, so a FIR (media SSRC 0, target in the FCI) or a PLI naming the RTX SSRC never
    reaches it. The callback sees them all, unfiltered, and judges the SSRCs itself.
    """
    recv_next = getattr(RTCDtlsTransport, "_recv_next", None)
    _require(
        callable(getattr(RTCDtlsTransport, "_handle_rtcp_data", None))
        and "_handle_rtcp_data" in _names(recv_next),
        "RTCDtlsTransport._recv_next calling self._handle_rtcp_data",
    )
    transport = sender.transport
    hooks: dict[int, Callable[[FeedbackPacket], None]] | None = getattr(
        transport, _FEEDBACK_ATTR, None
    )
    if hooks is None:
        hooks = {}
        original = transport._handle_rtcp_data

        async def handle_rtcp_data(data: bytes) -> None:
            try:
                packets = RtcpPacket.parse(data)
            except ValueError:
                packets = []  # aiortc's own handler logs and drops it
            for packet in packets:
                if isinstance(packet, RtcpPsfbPacket | RtcpRtpfbPacket):
                    for hook in list(hooks.values()):
                        hook(packet)
            await original(data)

        setattr(transport, "_handle_rtcp_data", handle_rtcp_data)  # noqa: B010
        setattr(transport, _FEEDBACK_ATTR, hooks)
    hooks[sender._ssrc] = callback


# -- installation --------------------------------------------------------------------------------


def install() -> None:
    """Check compatibility and apply the process-wide patches; safe to call repeatedly."""
    if _state["installed"]:
        return
    check_compat()
    _register_h264_profiles()
    _receiver_module.get_decoder = _get_decoder
    aioice.ice.get_host_addresses = _get_host_addresses
    aioice.ice.Connection.__init__ = _connection_init  # type: ignore[method-assign]
    aioice.ice.Connection.gather_candidates = _gather_candidates  # type: ignore[method-assign]
    aioice.ice.Connection.get_component_candidates = _get_component_candidates  # type: ignore[method-assign]
    _state["installed"] = True
    logger.debug("aiortc %s patched for passthrough", aiortc.__version__)
