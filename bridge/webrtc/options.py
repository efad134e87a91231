"""The ``[webrtc]`` options: WebRTC to browsers (read by ``WebRtcOutput``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.options import bounds

__all__ = ["WebRtcOptions"]


@dataclass(frozen=True)
class WebRtcOptions:
    """WebRTC to browsers."""

    # Each browser costs a few % of a core and a share of the doorbell's uplink.
    max_sessions: int = field(default=10, metadata=bounds(1, 100))
    # Comma-separated addresses offered to browsers as host candidates (empty: every
    # interface). Separate from streams.ice_host_addresses, which is the doorbell side's.
    ice_host_addresses: str = ""
