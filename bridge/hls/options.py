"""The ``[hls]`` options: HLS and LL-HLS packaging (read by ``HlsRegistry``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.options import bounds

__all__ = ["HlsOptions"]


@dataclass(frozen=True)
class HlsOptions:
    """HLS and LL-HLS packaging."""

    # Packaging stops this long after the last playlist or segment request.
    idle_timeout: float = field(default=30.0, metadata=bounds(5, 3600))
    # Segments are cut at the keyframe nearest this; players start about three segments back.
    segment_target: float = field(default=2.0, metadata=bounds(0.5, 10))
    # LL-HLS partial segments; Apple suggests 0.2-0.33 s (at most half a segment).
    part_target: float = field(default=0.3, metadata=bounds(0.1, 2))
    # Segments listed in the playlist; as many again stay in memory after they slide out.
    window: int = field(default=7, metadata=bounds(3, 30))
