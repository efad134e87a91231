"""Recording: event clips with pre-roll, the clips folder and its SQLite index, retention.

The app needs ``ClipStore`` (the folder and index, with an async API for routes),
``Recorder`` (trigger/manual clips from hub streams) and ``RecordOptions``. The package
depends on ``bridge.media`` and ``bridge.db`` (which makes every table in ``ClipStore.db``).
Exports are imported on first use (``bridge.lazy``), so ``bridge.record.options`` loads alone.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from .active import ActiveClip
    from .errors import ClipBusy, PathOutsideStore, RecordError, StorageFull
    from .index import Clip, ClipIndex, ClipPage
    from .options import DeviceRecordOptions, RecordOptions, S3Options
    from .recorder import MANUAL, Recorder, StreamSource
    from .retention import Retention
    from .store import ClipStore, safe_name

__all__ = [
    "MANUAL",
    "ActiveClip",
    "Clip",
    "ClipBusy",
    "ClipIndex",
    "ClipPage",
    "ClipStore",
    "DeviceRecordOptions",
    "PathOutsideStore",
    "RecordError",
    "RecordOptions",
    "Recorder",
    "Retention",
    "S3Options",
    "StorageFull",
    "StreamSource",
    "safe_name",
]

__getattr__ = lazy_exports(
    __name__,
    {
        ".active": ("ActiveClip",),
        ".errors": ("ClipBusy", "PathOutsideStore", "RecordError", "StorageFull"),
        ".index": ("Clip", "ClipIndex", "ClipPage"),
        ".options": ("DeviceRecordOptions", "RecordOptions", "S3Options"),
        ".recorder": ("MANUAL", "Recorder", "StreamSource"),
        ".retention": ("Retention",),
        ".store": ("ClipStore", "safe_name"),
    },
)
