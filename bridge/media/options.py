"""The ``[streams]`` options: how live sessions start, stop and buffer (read by the hub's setup)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.options import bounds

__all__ = ["StreamOptions"]


@dataclass(frozen=True)
class StreamOptions:
    """How live sessions start, stop and buffer."""

    # Stop the cloud live call this long after the last viewer leaves: it spares the doorbell's
    # battery, and a viewer coming back within the window joins without a new call.
    idle_timeout: float = field(default=30.0, metadata=bounds(1, 3600))
    # No media for this long after asking for a live call means the session is dead and is
    # reconnected.
    media_timeout: float = field(default=10.0, metadata=bounds(2, 120))
    # Once media flows, this much silence means the doorbell has gone without a word (a live one
    # sends many packets a second); it is reconnected at once rather than after media_timeout.
    silence_timeout: float = field(default=2.0, metadata=bounds(0.5, 120))
    # Seconds of encoded media kept per stream: new viewers start from its last keyframe and
    # recordings take their pre-roll from it, so it must exceed the longest pre-roll plus a GOP.
    buffer_seconds: float = field(default=12.0, metadata=bounds(2, 120))
    # Most doorbells (libwebrtc) send a keyframe only when asked. While pre-roll is wanted (a
    # live stream whose events are recorded with pre-roll, or one kept warm) the bridge asks
    # every this many seconds, so clips start within this much of the pre-roll asked for;
    # otherwise it asks only when a consumer needs a picture, sparing the doorbell's uplink.
    keyframe_interval: float = field(default=2.0, metadata=bounds(0.5, 30))
    # A byte cap on that buffer too, whatever the bitrate and keyframe spacing.
    buffer_mb: int = field(default=64, metadata=bounds(4, 1024))
    # Comma-separated addresses WebRTC may offer as host candidates (empty: every interface).
    # "127.0.0.1" keeps media on loopback, for a doorbell simulated on this machine.
    ice_host_addresses: str = ""
