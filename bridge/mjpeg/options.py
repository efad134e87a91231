"""Settings of the MJPEG/snapshot output and what one request may ask for within them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bridge.mjpeg.picture import MIN_SIDE, fit_size

__all__ = ["MAX_FPS", "MIN_FPS", "FrameSpec", "MjpegOptions"]

MIN_FPS = 0.2
MAX_FPS = 30.0
_MAX_HEIGHT = 4320


@dataclass(frozen=True, slots=True)
class FrameSpec:
    """What a viewer or snapshot asked for, after clamping: viewers with equal specs share JPEGs."""

    fps: float
    width: int  # the picture is at most this wide
    height: int | None = None  # and, if given, at most this high

    def size_for(self, src_width: int, src_height: int) -> tuple[int, int]:
        """The output size for a source picture of the given size."""
        return fit_size(src_width, src_height, self.width, self.height)


@dataclass(frozen=True, slots=True)
class MjpegOptions:
    """Defaults and caps for MJPEG viewers and JPEG snapshots."""

    fps: float = 10.0  # default frame rate of stream.mjpeg; a request may ask for 0.2..30
    width: int = 1280  # the widest picture served; requests may only ask for smaller
    quality: int = 5  # JPEG quantizer on ffmpeg's -q:v scale: 2 (best) .. 31 (smallest)
    snapshot_max_age: float = 2.0  # a decoded picture this recent answers frame.jpeg at once
    snapshot_timeout: float = 10.0  # wait this long for a live picture, then use the cloud's

    def __post_init__(self) -> None:
        if not MIN_FPS <= self.fps <= MAX_FPS:
            raise ValueError(f"mjpeg fps must be within {MIN_FPS:g}..{MAX_FPS:g}")
        if self.width < MIN_SIDE:
            raise ValueError(f"mjpeg width must be at least {MIN_SIDE}")
        if not 2 <= self.quality <= 31:
            raise ValueError("mjpeg quality must be within 2..31")
        if not (self.snapshot_max_age >= 0 and self.snapshot_timeout > 0):
            raise ValueError("snapshot_max_age must be >= 0 and snapshot_timeout > 0")

    def spec(
        self, fps: float | None = None, width: int | None = None, height: int | None = None
    ) -> FrameSpec:
        """Clamp a request's values into the allowed range; ``None`` takes the default.

        Raises ``ValueError`` for values no clamping can make sense of (zero, negative, NaN).
        """
        for name, value in (("fps", fps), ("width", width), ("height", height)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        rate = self.fps if fps is None else min(max(fps, MIN_FPS), MAX_FPS)
        wide = self.width if width is None else min(max(width, MIN_SIDE), self.width)
        high = None if height is None else min(max(height, MIN_SIDE), _MAX_HEIGHT)
        return FrameSpec(rate, wide, high)
