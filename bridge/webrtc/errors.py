"""Why a WebRTC viewer could not be served; the HTTP glue maps each to a status code."""

from __future__ import annotations

from bridge.errors import BridgeError

__all__ = ["OfferError", "StreamUnavailable", "ViewerLimitError", "WebRtcOutError"]


class WebRtcOutError(BridgeError):
    """A viewer's WebRTC session could not be set up."""


class OfferError(WebRtcOutError):
    """The viewer's offer is malformed or cannot receive what the doorbell sends (a 400)."""


class ViewerLimitError(WebRtcOutError):
    """The stream already has as many WebRTC viewers as allowed (a 503)."""

    transient = True


class StreamUnavailable(WebRtcOutError):
    """The doorbell gave no picture in time, so there is nothing to negotiate for (a 503)."""

    transient = True
