"""Recording: event clips with pre-roll, the clips folder and its SQLite index, retention.

The app needs ``ClipStore`` (the folder and index, with an async API for routes),
``Recorder`` (trigger/manual clips from hub streams) and ``RecordOptions``. The package
depends on ``bridge.media`` and ``bridge.db`` (which makes every table in ``ClipStore.db``).
"""

from .active import ActiveClip
from .errors import ClipBusy, PathOutsideStore, RecordError, StorageFull
from .index import Clip, ClipIndex, ClipPage
from .options import DeviceRecordOptions, RecordOptions
from .recorder import MANUAL, Recorder, StreamSource
from .retention import Retention
from .store import ClipStore, slugify

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
    "StorageFull",
    "StreamSource",
    "slugify",
]
