"""Media: the encoded-packet model, the SkyBell WebRTC source and aiortc's passthrough patch.

Exports what other packages use; aiortc internals stay behind ``aiortc_patch``. The exports are
imported on first use (``bridge.lazy``), so ``bridge.media.options`` loads without aiortc.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from .packet import (
        MediaPacket,
        extract_sps_pps,
        h264_is_keyframe,
        h264_nal_types,
        h264_profile,
    )
    from .webrtc_source import (
        IceServerHealth,
        WebRtcSource,
        WebRtcSourceError,
        choose_ice_servers,
        parse_candidate,
    )

__all__ = [
    "IceServerHealth",
    "MediaPacket",
    "WebRtcSource",
    "WebRtcSourceError",
    "choose_ice_servers",
    "extract_sps_pps",
    "h264_is_keyframe",
    "h264_nal_types",
    "h264_profile",
    "parse_candidate",
]

__getattr__ = lazy_exports(
    __name__,
    {
        ".packet": (
            "MediaPacket",
            "extract_sps_pps",
            "h264_is_keyframe",
            "h264_nal_types",
            "h264_profile",
        ),
        ".webrtc_source": (
            "IceServerHealth",
            "WebRtcSource",
            "WebRtcSourceError",
            "choose_ice_servers",
            "parse_candidate",
        ),
    },
)
