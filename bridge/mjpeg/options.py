"""The ``[mjpeg]`` options, and what one request may ask for within them.

The accepted ranges are the fields' ``bounds``, checked once by the settings loader; ``spec``
clamps what a viewer asks for into them. Picture sizes are plain arithmetic here, so the
settings load without PyAV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bridge.options import bounds

__all__ = ["MAX_FPS", "MIN_FPS", "MIN_SIDE", "FrameSpec", "MjpegOptions", "fit_size"]

MIN_FPS = 0.2
MAX_FPS = 30.0
MIN_SIDE = 16  # the smallest picture side anyone may ask for
_MAX_WIDTH = 7680
_MAX_HEIGHT = 4320


def _even(value: float) -> int:
    # 4:2:0 chroma is subsampled by two both ways, so odd sides make encoders pad or refuse.
    return max(2, int(value) // 2 * 2)


def fit_size(
    src_width: int, src_height: int, max_width: int | None, max_height: int | None
) -> tuple[int, int]:
    """The largest even size within the bounds that keeps the source's aspect; never upscales."""
    scale = 1.0
    if max_width is not None:
        scale = min(scale, max_width / src_width)
    if max_height is not None:
        scale = min(scale, max_height / src_height)
    if scale >= 1.0:
        return _even(src_width), _even(src_height)
    return _even(src_width * scale), _even(src_height * scale)


@dataclass(frozen=True, slots=True)
class FrameSpec:
    """What a viewer or snapshot asked for, after clamping: viewers with equal specs share JPEGs."""

    fps: float
    width: int  # the picture is at most this wide
    height: int | None = None  # and, if given, at most this high

    def size_for(self, src_width: int, src_height: int) -> tuple[int, int]:
        """The output size for a source picture of the given size."""
        return fit_size(src_width, src_height, self.width, self.height)


@dataclass(frozen=True)
class MjpegOptions:
    """MJPEG streams and JPEG snapshots (the only outputs that decode video)."""

    # Caps; a viewer may ask for less with ?fps= and ?width= (fps is stream.mjpeg's default).
    fps: float = field(default=10.0, metadata=bounds(MIN_FPS, MAX_FPS))
    width: int = field(default=1280, metadata=bounds(MIN_SIDE, _MAX_WIDTH))
    # ffmpeg's -q:v scale: 2 is best, 31 worst.
    quality: int = field(default=5, metadata=bounds(2, 31))
    # A snapshot decoded within this many seconds is served again instead of decoding anew.
    snapshot_max_age: float = field(default=2.0, metadata=bounds(0, 60))
    # How long a snapshot waits for live video before falling back to the cloud's picture.
    snapshot_timeout: float = field(default=10.0, metadata=bounds(1, 60))

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
