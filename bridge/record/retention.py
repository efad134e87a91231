"""Retention: delete the oldest clips by age and by size, per device and overall, and find
room before and during a recording. Never touches a clip that is still being written.

Everything here blocks (SQLite, unlink): the recorder runs it in a thread, periodically and
before each new clip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from bridge.record.errors import StorageFull
from bridge.record.index import Clip
from bridge.record.options import RecordOptions
from bridge.record.store import ClipStore

__all__ = ["Retention"]

_LOGGER = logging.getLogger(__name__)
_DAY = 86400.0


class Retention:
    """Applies ``RecordOptions``' limits to a ``ClipStore``."""

    def __init__(self, store: ClipStore, options: RecordOptions) -> None:
        self.store = store
        self.options = options

    def _deletable(self) -> list[Clip]:
        """Finished clips on this disk, oldest first (``recording`` rows are never candidates,
        and a clip kept only in S3 frees nothing here, so its row stays)."""
        remote = self.store.index.remote_only()
        return [
            c
            for c in self.store.index.all(states=("done", "failed"))
            if not self.store.is_active(c.id) and c.id not in remote
        ]

    def _delete(self, clips: Iterable[Clip], why: str) -> list[Clip]:
        gone = []
        for clip in clips:
            if self.store.delete_sync(clip.id) is not None:
                gone.append(clip)
        if gone:
            freed = sum(c.size for c in gone)
            _LOGGER.info("retention: deleted %d clips (%d bytes): %s", len(gone), freed, why)
        return gone

    def run(self, now: float | None = None) -> list[Clip]:
        """Apply the age and size limits; returns the clips deleted."""
        now = time.time() if now is None else now
        opts = self.options
        deleted: list[Clip] = []
        clips = self._deletable()
        too_old = []
        for clip in clips:
            days = opts.for_device(clip.device_id, clip.device).max_age_days
            if days is not None and clip.start < now - days * _DAY:
                too_old.append(clip)
        deleted += self._delete(too_old, "older than the maximum age")
        gone = {c.id for c in too_old}
        clips = [c for c in clips if c.id not in gone]
        by_device: dict[str, list[Clip]] = {}
        for clip in clips:
            by_device.setdefault(clip.device, []).append(clip)
        for device, own in by_device.items():
            limit = opts.for_device(own[0].device_id, device).max_bytes
            if limit is not None:
                excess = sum(c.size for c in own) - limit
                deleted += self._delete(_oldest_covering(own, excess), f"{device} over its size")
        if opts.max_total_bytes is not None:
            excess = self.store.usage() - opts.max_total_bytes
            if excess > 0:
                deleted += self._delete(
                    _oldest_covering(self._deletable(), excess), "clips over the total size"
                )
        return deleted

    def make_room(self, reserve: int) -> list[Clip]:
        """Run retention and make sure ``reserve`` more bytes fit; raises StorageFull."""
        deleted = self.run()
        problem = self._shortage(reserve, deleted)
        if problem is not None:
            _LOGGER.error("recording refused: %s", problem)
            raise StorageFull(problem)
        return deleted

    def check(self) -> str | None:
        """During a recording: the reason to stop it, or None while there is room."""
        return self._shortage(0, [])

    def _shortage(self, reserve: int, deleted: list[Clip]) -> str | None:
        """Delete the oldest clips (appended to ``deleted``) to bring usage and free space
        within limits, but only when that is enough: deleting every clip in vain would lose
        them for nothing. Returns what is still short, or None."""
        opts = self.options
        if opts.max_total_bytes is not None:
            excess = self.store.usage() + reserve - opts.max_total_bytes
            if excess > 0:
                candidates = self._deletable()
                if sum(c.size for c in candidates) < excess:
                    return (
                        f"clips use {self.store.usage()} bytes, the limit is "
                        f"{opts.max_total_bytes} and {reserve} more are needed"
                    )
                deleted += self._delete(_oldest_covering(candidates, excess), "room for a clip")
        deficit = opts.min_free_bytes + reserve - self.store.free_bytes()
        if deficit > 0:
            candidates = self._deletable()
            if sum(c.size for c in candidates) < deficit:
                return (
                    f"{self.store.free_bytes()} bytes free on {self.store.root}, "
                    f"{opts.min_free_bytes + reserve} needed"
                )
            for clip in candidates:  # one at a time: measure what the file system gave back
                deleted += self._delete([clip], "low disk space")
                if self.store.free_bytes() >= opts.min_free_bytes + reserve:
                    break
            else:
                return f"still short of space on {self.store.root} after deleting old clips"
        return None


def _oldest_covering(clips: list[Clip], excess: int) -> list[Clip]:
    """The oldest clips whose sizes add up to at least ``excess`` (clips are oldest first)."""
    chosen: list[Clip] = []
    for clip in clips:
        if excess <= 0:
            break
        chosen.append(clip)
        excess -= clip.size
    return chosen
