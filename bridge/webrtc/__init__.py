"""WebRTC output: the doorbell's H.264 (and audio when the codec allows) relayed to browsers.

``WebRtcOutput`` is the only entry point the app needs (WHEP and go2rtc's JSON form are the
HTTP glue's business, in ``bridge.routes.webrtc``). Nothing is re-encoded: hub packets become
pre-encoded ``av.Packet`` objects that aiortc only packetizes. Exports are imported on first use
(``bridge.lazy``), so ``bridge.webrtc.options`` loads without aiortc.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from .errors import OfferError, StreamUnavailable, ViewerLimitError, WebRtcOutError
    from .options import WebRtcOptions
    from .output import WebRtcOutput, WebRtcStats
    from .viewer import WhepViewer

__all__ = [
    "OfferError",
    "StreamUnavailable",
    "ViewerLimitError",
    "WebRtcOptions",
    "WebRtcOutError",
    "WebRtcOutput",
    "WebRtcStats",
    "WhepViewer",
]

__getattr__ = lazy_exports(
    __name__,
    {
        ".errors": ("OfferError", "ViewerLimitError", "StreamUnavailable", "WebRtcOutError"),
        ".options": ("WebRtcOptions",),
        ".output": ("WebRtcOutput", "WebRtcStats"),
        ".viewer": ("WhepViewer",),
    },
)
