"""KVS WebRTC signaling: SigV4 presigning, the wire format, and the bridge's viewer client.

The flow: the live-call response gives an endpoint, a channel ARN and temporary credentials;
``choose_signed_url`` picks or makes a presigned URL; ``KvsViewer`` connects, sends the offer and
returns the doorbell's answer; the caller closes it once media flows.

Exports are imported on first use (``bridge.lazy``), so presigning loads without the viewer.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from bridge.kvs.errors import (
        GoAway,
        PayloadTooLarge,
        SignalingAuthError,
        SignalingClosed,
        SignalingError,
        SignalingStatusError,
        SignalingTimeout,
    )
    from bridge.kvs.messages import (
        MAX_PAYLOAD_B64,
        Closed,
        GoAwayNotice,
        Malformed,
        ReconnectIceServer,
        RemoteCandidate,
        SdpAnswer,
        SdpOffer,
        StatusResponse,
        ViewerEvent,
    )
    from bridge.kvs.presign import KvsCredentials, describe_url, expires_at, is_fresh, presign_wss
    from bridge.kvs.viewer import Answer, KvsViewer, choose_signed_url, new_client_id

__all__ = [
    "MAX_PAYLOAD_B64",
    "Answer",
    "Closed",
    "GoAway",
    "GoAwayNotice",
    "KvsCredentials",
    "KvsViewer",
    "Malformed",
    "PayloadTooLarge",
    "ReconnectIceServer",
    "RemoteCandidate",
    "SdpAnswer",
    "SdpOffer",
    "SignalingAuthError",
    "SignalingClosed",
    "SignalingError",
    "SignalingStatusError",
    "SignalingTimeout",
    "StatusResponse",
    "ViewerEvent",
    "choose_signed_url",
    "describe_url",
    "expires_at",
    "is_fresh",
    "new_client_id",
    "presign_wss",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "bridge.kvs.errors": (
            "GoAway",
            "PayloadTooLarge",
            "SignalingAuthError",
            "SignalingClosed",
            "SignalingError",
            "SignalingStatusError",
            "SignalingTimeout",
        ),
        "bridge.kvs.messages": (
            "MAX_PAYLOAD_B64",
            "Closed",
            "GoAwayNotice",
            "Malformed",
            "ReconnectIceServer",
            "RemoteCandidate",
            "SdpAnswer",
            "SdpOffer",
            "StatusResponse",
            "ViewerEvent",
        ),
        "bridge.kvs.presign": (
            "KvsCredentials",
            "describe_url",
            "expires_at",
            "is_fresh",
            "presign_wss",
        ),
        "bridge.kvs.viewer": (
            "Answer",
            "KvsViewer",
            "choose_signed_url",
            "new_client_id",
        ),
    },
)
