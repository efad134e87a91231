"""Media: the encoded-packet model, the SkyBell WebRTC source and aiortc's passthrough patch.

Exports what other packages use; aiortc internals stay behind ``aiortc_patch``.
"""

from .packet import MediaPacket, extract_sps_pps, h264_is_keyframe, h264_nal_types, h264_profile
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
