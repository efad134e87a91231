"""MJPEG and JPEG snapshots: a lazy H.264 decoder per stream, run only while pictures are wanted.

``MjpegService`` is the only entry point the app needs. It takes hub streams and an optional
``Fallback`` (device id -> JPEG, wired to the SkyBell cloud's snapshot by the routes), so this
package depends on ``bridge.media`` and nothing above it. Exports are imported on first use
(``bridge.lazy``), so ``bridge.mjpeg.options`` loads without PyAV.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from .decoder import SnapshotSource, SnapshotUnavailable, Viewer
    from .options import FrameSpec, MjpegOptions
    from .service import Fallback, MjpegService, MjpegStats, Snapshot

__all__ = [
    "Fallback",
    "FrameSpec",
    "MjpegOptions",
    "MjpegService",
    "MjpegStats",
    "Snapshot",
    "SnapshotSource",
    "SnapshotUnavailable",
    "Viewer",
]

__getattr__ = lazy_exports(
    __name__,
    {
        ".decoder": ("SnapshotSource", "SnapshotUnavailable", "Viewer"),
        ".options": ("FrameSpec", "MjpegOptions"),
        ".service": ("Fallback", "MjpegService", "MjpegStats", "Snapshot"),
    },
)
