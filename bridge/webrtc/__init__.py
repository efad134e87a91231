"""WebRTC output: the doorbell's H.264 (and audio when the codec allows) relayed to browsers.

``WebRtcOutput`` is the only entry point the app needs (WHEP and go2rtc's JSON form are the
HTTP glue's business, in ``bridge.routes.webrtc``). Nothing is re-encoded: hub packets become
pre-encoded ``av.Packet`` objects that aiortc only packetizes.
"""

from .errors import OfferError, SessionLimitError, StreamUnavailable, WebRtcOutError
from .output import WebRtcOutput
from .session import WebRtcSession

__all__ = [
    "OfferError",
    "SessionLimitError",
    "StreamUnavailable",
    "WebRtcOutError",
    "WebRtcOutput",
    "WebRtcSession",
]
