"""The recorder's errors, all ``BridgeError``s so the API turns them into clear answers."""

from __future__ import annotations

from bridge.errors import BridgeError

__all__ = ["ClipBusy", "PathOutsideStore", "RecordError", "StorageFull"]


class RecordError(BridgeError):
    """Recording or the clip store failed."""


class StorageFull(RecordError):
    """Not enough room for clips, even after retention deleted what it was allowed to."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"storage full: {reason}")
        self.reason = reason


class PathOutsideStore(RecordError):
    """A path (from a request, a device name or the index) would leave the clips folder."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path outside the clips folder: {path!r}")
        self.path = path


class ClipBusy(RecordError):
    """The clip is still being recorded."""
