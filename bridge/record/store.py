"""The clips folder and its index: where clips go, finishing them, deleting them, listing them.

Layout: ``<root>/<device-slug>/<YYYY-MM-DD>/<HHMMSS>_<event>.mp4`` (local time) with a ``.jpg``
thumbnail beside it, and ``<root>/index.sqlite3`` (the bridge's database, ``bridge.db``). A clip being written is ``<name>.mp4.part``
with an index row in state ``recording``; ``finish()`` renames it. Every path that comes from
outside (a request, a device name, an index row) is resolved and checked to stay in the root.

The synchronous methods block (SQLite, file I/O, PyAV); the async ones run them in a thread.
So does the constructor, which opens (and migrates) the database: from async code, build the
store in a thread (``await asyncio.to_thread(ClipStore, root)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from bridge.db import FILE_NAME, open_database
from bridge.record import scan
from bridge.record.errors import ClipBusy, PathOutsideStore, RecordError
from bridge.record.index import Clip, ClipIndex, ClipPage
from bridge.record.mp4file import PART_SUFFIX, cut_partial_fragment, fsync_path, probe
from bridge.record.thumbnail import thumbnail_from_file

__all__ = ["ClipStore", "safe_name"]

_LOGGER = logging.getLogger(__name__)
_SLUG_RE = re.compile(r"[^a-z0-9]+")


def safe_name(text: str, fallback: str = "clip") -> str:
    """Lower-case ASCII letters, digits and dashes only: safe as a folder or file name."""
    slug = _SLUG_RE.sub("-", text.lower()).strip("-")[:64].strip("-")
    return slug or fallback


class ClipStore:
    """The clips folder, its SQLite index, and the files being written."""

    def __init__(self, root: str | Path) -> None:
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        self.root = path.resolve()
        # Shared with the event log, the archive and the S3 uploader: one connection per file.
        self.db = open_database(self.root / FILE_NAME)
        self._closed = False
        self.index = ClipIndex(self.db)
        self._lock = threading.Lock()
        self._active: dict[int, Path] = {}  # clip id -> the .part file being written
        self._reserved: set[str] = set()  # relative paths handed out, not yet indexed

    # -- paths ---------------------------------------------------------------------------------

    def resolve(self, relative: str) -> Path:
        """The absolute path of ``relative`` inside the root; refuses anything outside it."""
        try:
            path = (self.root / relative).resolve()
        except (OSError, ValueError) as err:  # NUL bytes, loops
            raise PathOutsideStore(relative) from err
        if path == self.root or not path.is_relative_to(self.root):
            raise PathOutsideStore(relative)
        return path

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, as stored in the index."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise PathOutsideStore(str(path))
        return resolved.relative_to(self.root).as_posix()

    def part_path(self, clip: Clip) -> Path:
        """Where a clip is written until it is finished."""
        final = self.resolve(clip.path)
        return final.with_name(final.name + PART_SUFFIX)

    def file_of(self, clip: Clip) -> Path:
        """The clip's video file (checked to be inside the root)."""
        return self.resolve(clip.path)

    def thumbnail_of(self, clip: Clip) -> Path | None:
        """The clip's JPEG, if it has one."""
        return self.resolve(clip.thumbnail) if clip.thumbnail else None

    def new_clip_path(self, device: str, start: float, event: str) -> str:
        """A fresh relative path for a clip starting at ``start`` (reserved until indexed)."""
        when = time.localtime(start)
        folder = f"{safe_name(device, 'device')}/{time.strftime('%Y-%m-%d', when)}"
        stem = f"{time.strftime('%H%M%S', when)}_{safe_name(event, 'event')}"
        with self._lock:
            for n in range(1, 1000):
                rel = f"{folder}/{stem}{'' if n == 1 else f'-{n}'}.mp4"
                path = self.resolve(rel)
                taken = (
                    rel in self._reserved
                    or path.exists()
                    or path.with_name(path.name + PART_SUFFIX).exists()
                    or self.index.find(path=rel) is not None
                )
                if not taken:
                    self._reserved.add(rel)
                    return rel
        raise RecordError(f"no free file name for {folder}/{stem}")

    # -- sizes ---------------------------------------------------------------------------------

    def usage(self) -> int:
        """Bytes used by clips: finished ones from the index, ones being written from disk."""
        with self._lock:
            parts = list(self._active.values())
        total = self.index.total_size()
        for part in parts:
            with contextlib.suppress(OSError):  # not created yet, or just renamed
                total += part.stat().st_size
        return total

    def free_bytes(self) -> int:
        """Free space on the clips folder's file system."""
        return shutil.disk_usage(self.root).free

    def is_active(self, clip_id: int) -> bool:
        """Whether this process is writing the clip right now."""
        with self._lock:
            return clip_id in self._active

    # -- writing -------------------------------------------------------------------------------

    def begin(self, clip: Clip) -> Clip:
        """Index a clip about to be written (state ``recording``); returns it with its id."""
        added = self.index.add(dataclasses.replace(clip, state="recording"))
        part = self.part_path(added)
        part.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._reserved.discard(clip.path)
            self._active[added.id] = part
        return added

    def release(self, relative: str) -> None:
        """Give back a path from ``new_clip_path`` that was never used."""
        with self._lock:
            self._reserved.discard(relative)

    def finish(self, clip: Clip, *, note: str = "") -> Clip:
        """Make a written (or crashed) clip playable, probe it and mark it done or failed."""
        try:
            return self._finish(clip, note)
        finally:
            with self._lock:
                self._active.pop(clip.id, None)

    def _finish(self, clip: Clip, note: str) -> Clip:
        final = self.resolve(clip.path)
        part = self.part_path(clip)
        try:
            if part.exists():
                # Harmless on a cleanly closed file; after a crash or a full disk it drops
                # the half-written fragment at the end.
                removed = cut_partial_fragment(part)
                if removed:
                    _LOGGER.info("%s: cut %d bytes of an unfinished fragment", clip.path, removed)
                fsync_path(part)
                os.replace(part, final)
                fsync_path(final.parent)
            info = probe(final)
            if info.video_frames == 0:
                raise RecordError("no video frames were written")
        except (RecordError, OSError) as err:
            reason = "; ".join(x for x in (note, str(err)) if x)
            _LOGGER.error("clip %s failed: %s", clip.path, reason)
            for leftover in (part, final, final.with_suffix(".jpg")):
                leftover.unlink(missing_ok=True)  # nothing playable in it
            self.index.update(clip.id, state="failed", note=reason, size=0)
            return self.index.get(clip.id) or clip
        thumb = final.with_suffix(".jpg")
        if not thumb.exists() and not thumbnail_from_file(final, thumb):
            _LOGGER.warning("clip %s: no thumbnail", clip.path)
        updated = self.index.update(
            clip.id,
            state="done",
            end=clip.start + info.duration,
            duration=info.duration,
            size=info.size,
            video_codec=info.video_codec,
            audio_codec=info.audio_codec,
            width=info.width,
            height=info.height,
            thumbnail=self.relative(thumb) if thumb.exists() else None,
            note=note,
        )
        return updated or clip

    # -- maintenance (blocking) ----------------------------------------------------------------

    def delete_sync(self, clip_id: int, *, allow_active: bool = False) -> Clip | None:
        """Delete a clip's file, thumbnail and row; returns the clip, None if unknown."""
        clip = self.index.get(clip_id)
        if clip is None:
            return None
        if not allow_active and (clip.state == "recording" or self.is_active(clip_id)):
            raise ClipBusy(f"clip {clip_id} is still being recorded")
        targets = [self.resolve(clip.path)]  # checked before anything is removed
        if clip.thumbnail:
            targets.append(self.resolve(clip.thumbnail))
        for path in targets:
            path.unlink(missing_ok=True)
        self.index.delete(clip_id)
        _LOGGER.info("deleted clip %s", clip.path)
        return clip

    def recover_sync(self) -> list[Clip]:
        """Finish clips left half-written by a crash and index them (see ``scan.recover``)."""
        return scan.recover(self)

    def reindex_sync(self) -> dict[str, int]:
        """Rebuild the index from the folder (see ``scan.reindex``)."""
        return scan.reindex(self)

    # -- async API -----------------------------------------------------------------------------

    async def query(self, **filters: Any) -> ClipPage:
        """``ClipIndex.query`` in a thread."""
        return await asyncio.to_thread(lambda: self.index.query(**filters))

    async def get(self, clip_id: int) -> Clip | None:
        """One clip by id."""
        return await asyncio.to_thread(self.index.get, clip_id)

    async def delete(self, clip_id: int) -> Clip | None:
        """Delete a finished clip (file, thumbnail, row); raises ClipBusy while recording."""
        return await asyncio.to_thread(self.delete_sync, clip_id)

    async def recover(self) -> list[Clip]:
        """Finish and index clips a crash left behind."""
        return await asyncio.to_thread(self.recover_sync)

    async def reindex(self) -> dict[str, int]:
        """Rebuild the index from the files on disk."""
        return await asyncio.to_thread(self.reindex_sync)

    def close(self) -> None:
        """Give back the database; safe to call twice."""
        if not self._closed:
            self._closed = True
            self.db.close()
