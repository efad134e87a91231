"""The KVS WebRTC signaling wire format: what each side sends and receives, as typed values.

Senders write ``{"action", "messagePayload", "recipientClientId"?, "correlationId"?}`` where the
payload is base64 of a JSON object. Receivers get ``{"messageType", "messagePayload",
"senderClientId", "statusResponse"?}``. The service relays the payload without looking inside.

Decoding policy (one place, so both the viewer and the simulated master agree):
- an empty, non-JSON, non-object or binary frame, or one without ``messageType``, is noise that the
  real service does send: ``decode_received`` returns ``None`` and logs at debug;
- an unknown ``messageType`` is ignored the same way, so new service features cannot break us;
- a known type whose payload is not base64 JSON becomes a ``Malformed`` event (logged as a
  warning), so a caller waiting for an answer can fail fast instead of timing out.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.kvs.errors import PayloadTooLarge

__all__ = [
    "GO_AWAY",
    "ICE_CANDIDATE",
    "MAX_PAYLOAD_B64",
    "RECONNECT_ICE_SERVER",
    "SDP_ANSWER",
    "SDP_OFFER",
    "STATUS_RESPONSE",
    "Closed",
    "GoAwayNotice",
    "Malformed",
    "OutgoingAction",
    "ReceivedMessage",
    "ReconnectIceServer",
    "RemoteCandidate",
    "SdpAnswer",
    "SdpOffer",
    "StatusResponse",
    "ViewerEvent",
    "decode_action",
    "decode_received",
    "encode_action",
    "encode_answer",
    "encode_candidate",
    "encode_offer",
    "encode_received",
    "encode_status",
]

_log = logging.getLogger(__name__)

SDP_OFFER = "SDP_OFFER"
SDP_ANSWER = "SDP_ANSWER"
ICE_CANDIDATE = "ICE_CANDIDATE"
STATUS_RESPONSE = "STATUS_RESPONSE"
GO_AWAY = "GO_AWAY"
RECONNECT_ICE_SERVER = "RECONNECT_ICE_SERVER"

# KVS documents "maximum length of 10K" for messagePayload, counted on the base64 text. Whether
# K is 1000 or 1024 is not documented [U]; the smaller reading never sends something refused.
MAX_PAYLOAD_B64 = 10_000


@dataclass(frozen=True, slots=True)
class SdpOffer:
    """A viewer's offer, as the master receives it."""

    sdp: str
    sender_client_id: str | None


@dataclass(frozen=True, slots=True)
class SdpAnswer:
    """The master's answer, as a viewer receives it."""

    sdp: str
    sender_client_id: str | None


@dataclass(frozen=True, slots=True)
class RemoteCandidate:
    """A trickled ICE candidate from the other side."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None
    sender_client_id: str | None


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """The service's verdict on a message we sent, matched by ``correlation_id``."""

    correlation_id: str | None
    error_type: str | None
    status_code: str | None
    description: str

    @property
    def is_error(self) -> bool:
        """True unless the status code says 2xx."""
        return not (self.status_code or "").startswith("2")


@dataclass(frozen=True, slots=True)
class GoAwayNotice:
    """The service will close this socket within a minute; reconnect."""


@dataclass(frozen=True, slots=True)
class ReconnectIceServer:
    """The TURN servers this session uses are going away; fetch new ones."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """A known message type whose payload could not be decoded."""

    message_type: str
    sender_client_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The socket is gone (not a wire message; the viewer's last event)."""

    reason: str
    code: int | None = None


ReceivedMessage = (
    SdpOffer
    | SdpAnswer
    | RemoteCandidate
    | StatusResponse
    | GoAwayNotice
    | ReconnectIceServer
    | Malformed
)
ViewerEvent = ReceivedMessage | Closed


@dataclass(frozen=True, slots=True)
class OutgoingAction:
    """A message as a client sent it, as the service (the simulator) parses it."""

    action: str
    message_payload: str
    recipient_client_id: str | None
    correlation_id: str | None


# ---- sending -------------------------------------------------------------------------------


def _encode_payload(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"))
    encoded = base64.b64encode(text.encode()).decode("ascii")
    if len(encoded) > MAX_PAYLOAD_B64:
        raise PayloadTooLarge(len(encoded), MAX_PAYLOAD_B64)
    return encoded


def encode_action(
    action: str,
    payload: Mapping[str, Any],
    *,
    recipient_client_id: str | None = None,
    correlation_id: str | None = None,
) -> str:
    """One send-format frame; raises ``PayloadTooLarge`` before anything goes on the wire."""
    message: dict[str, str] = {"action": action, "messagePayload": _encode_payload(payload)}
    if recipient_client_id is not None:
        message["recipientClientId"] = recipient_client_id
    if correlation_id is not None:
        message["correlationId"] = correlation_id
    return json.dumps(message, separators=(",", ":"))


def encode_offer(sdp: str, correlation_id: str | None = None) -> str:
    """A viewer's SDP_OFFER frame (no recipient: the service routes it to the master)."""
    return encode_action(SDP_OFFER, {"type": "offer", "sdp": sdp}, correlation_id=correlation_id)


def encode_answer(sdp: str, recipient_client_id: str, correlation_id: str | None = None) -> str:
    """A master's SDP_ANSWER frame for one viewer."""
    return encode_action(
        SDP_ANSWER,
        {"type": "answer", "sdp": sdp},
        recipient_client_id=recipient_client_id,
        correlation_id=correlation_id,
    )


def encode_candidate(
    candidate: str,
    sdp_mid: str | None,
    sdp_mline_index: int | None,
    *,
    recipient_client_id: str | None = None,
    correlation_id: str | None = None,
) -> str:
    """An ICE_CANDIDATE frame; a viewer leaves ``recipient_client_id`` out."""
    payload = {"candidate": candidate, "sdpMid": sdp_mid, "sdpMLineIndex": sdp_mline_index}
    return encode_action(
        ICE_CANDIDATE,
        payload,
        recipient_client_id=recipient_client_id,
        correlation_id=correlation_id,
    )


# ---- receiving -----------------------------------------------------------------------------


def _decode_payload(encoded: Any) -> dict[str, Any]:
    if not isinstance(encoded, str) or not encoded:
        raise ValueError("messagePayload missing")
    try:
        # Some senders drop the base64 padding; restore it rather than reject the message.
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        value = json.loads(raw)
    # RecursionError: a deeply nested array ("[[[[...") exhausts the C parser's stack guard.
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ValueError(f"messagePayload is not base64 JSON ({type(err).__name__})") from err
    if not isinstance(value, dict):
        raise ValueError("messagePayload is not a JSON object")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _load_object(frame: str | bytes) -> dict[str, Any] | None:
    if isinstance(frame, bytes):
        _log.debug("ignoring a binary signaling frame of %d bytes", len(frame))
        return None
    if not frame.strip():
        _log.debug("ignoring an empty signaling frame")
        return None
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack guard ("[[[[..."), which
        # fits in one frame; it is noise like any other unparsable frame.
        _log.debug("ignoring a non-JSON signaling frame of %d chars", len(frame))
        return None
    if not isinstance(message, dict):
        _log.debug("ignoring a signaling frame that is not a JSON object")
        return None
    return message


def decode_received(frame: str | bytes) -> ReceivedMessage | None:
    """Parse a receive-format frame; ``None`` for noise (see the module docstring). Never raises."""
    message = _load_object(frame)
    if message is None:
        return None
    kind = message.get("messageType")
    sender = _optional_str(message.get("senderClientId"))
    if kind == STATUS_RESPONSE:
        status = message.get("statusResponse")
        status = status if isinstance(status, dict) else {}
        return StatusResponse(
            correlation_id=_optional_str(status.get("correlationId")),
            error_type=_optional_str(status.get("errorType")),
            status_code=_optional_str(status.get("statusCode")),
            description=str(status.get("description") or ""),
        )
    if kind == GO_AWAY:
        return GoAwayNotice()
    if kind == RECONNECT_ICE_SERVER:
        return ReconnectIceServer()
    if kind not in (SDP_OFFER, SDP_ANSWER, ICE_CANDIDATE):
        _log.debug("ignoring signaling message of unknown type %r", kind)
        return None
    try:
        return _decode_sdp_or_candidate(kind, message.get("messagePayload"), sender)
    except ValueError as err:
        _log.warning("malformed %s from %s: %s", kind, sender or "the service", err)
        return Malformed(kind, sender, str(err))


def _decode_sdp_or_candidate(kind: str, encoded: Any, sender: str | None) -> ReceivedMessage:
    payload = _decode_payload(encoded)
    if kind == ICE_CANDIDATE:
        candidate = payload.get("candidate")
        if not isinstance(candidate, str):
            raise ValueError("candidate missing")
        index = payload.get("sdpMLineIndex")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise ValueError("sdpMLineIndex is not an integer")
        return RemoteCandidate(candidate, _optional_str(payload.get("sdpMid")), index, sender)
    sdp = payload.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise ValueError("sdp missing")
    return SdpOffer(sdp, sender) if kind == SDP_OFFER else SdpAnswer(sdp, sender)


# ---- the service's side (used by the simulator) --------------------------------------------


def decode_action(frame: str | bytes) -> OutgoingAction:
    """Parse a send-format frame as the service would; raises ``ValueError`` with the reason."""
    message = _load_object(frame)
    if message is None:
        raise ValueError("not a JSON object")
    action = message.get("action")
    if action not in (SDP_OFFER, SDP_ANSWER, ICE_CANDIDATE):
        raise ValueError(f"unknown action {action!r}")
    payload = message.get("messagePayload")
    if not isinstance(payload, str) or not payload:
        raise ValueError("messagePayload missing")
    if len(payload) > MAX_PAYLOAD_B64:
        raise ValueError(f"messagePayload longer than {MAX_PAYLOAD_B64}")
    return OutgoingAction(
        action=action,
        message_payload=payload,
        recipient_client_id=_optional_str(message.get("recipientClientId")),
        correlation_id=_optional_str(message.get("correlationId")),
    )


def encode_received(message_type: str, message_payload: str, sender_client_id: str | None) -> str:
    """A receive-format frame carrying an already-encoded payload, as the service relays it."""
    message: dict[str, str] = {"messageType": message_type, "messagePayload": message_payload}
    if sender_client_id is not None:
        message["senderClientId"] = sender_client_id
    return json.dumps(message, separators=(",", ":"))


def encode_status(
    correlation_id: str | None, error_type: str, status_code: str, description: str
) -> str:
    """A STATUS_RESPONSE frame, as the service sends it back to the sender of a bad message."""
    status: dict[str, str] = {
        "errorType": error_type,
        "statusCode": status_code,
        "description": description,
    }
    if correlation_id is not None:
        status["correlationId"] = correlation_id
    return json.dumps(
        {"messageType": STATUS_RESPONSE, "statusResponse": status}, separators=(",", ":")
    )
