"""Walking the clips folder: crash recovery and rebuilding the index from the files.

Both run at start or on request, in a thread. A file is only ever dropped when nothing
playable is in it, and that is logged; everything else ends up indexed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.record.errors import PathOutsideStore, RecordError
from bridge.record.index import Clip
from bridge.record.mp4file import PART_SUFFIX, MediaInfo, probe, read_tags
from bridge.record.thumbnail import thumbnail_from_file

if TYPE_CHECKING:
    from bridge.record.store import ClipStore

__all__ = ["recover", "reindex"]

_LOGGER = logging.getLogger(__name__)
_RECOVERED = "recovered after an unclean stop"


def recover(store: ClipStore) -> list[Clip]:
    """Finish every clip a crash left in state ``recording`` or as an unindexed ``.part``."""
    done: list[Clip] = []
    for clip in store.index.all(states=("recording",)):
        if store.is_active(clip.id):
            continue  # being written by this process right now
        try:
            final = store.resolve(clip.path)
        except PathOutsideStore:
            _LOGGER.error("index row %d points outside the clips folder; dropped", clip.id)
            store.index.delete(clip.id)
            continue
        part = final.with_name(final.name + PART_SUFFIX)
        if not part.exists() and not final.exists():
            store.index.update(clip.id, state="failed", note="the process stopped before writing")
            continue
        done.append(store.finish(clip, note=_RECOVERED))
    for part in _files(store.root, ".mp4" + PART_SUFFIX):
        rel = store.relative(part)[: -len(PART_SUFFIX)]
        if store.index.find(path=rel) is not None:
            continue  # indexed: handled above, or active
        clip = _clip_from_file(rel, part, None)
        try:
            added = store.begin(clip)
        except RecordError as err:  # e.g. a duplicate activity id
            _LOGGER.error("cannot index recovered %s: %s", rel, err)
            continue
        done.append(store.finish(added, note=_RECOVERED))
    for clip in done:
        _LOGGER.warning("recovered clip %s (%s, %.1f s)", clip.path, clip.state, clip.duration)
    return done


def reindex(store: ClipStore) -> dict[str, int]:
    """Make the index match the folder: add new files, refresh changed ones, drop rows whose
    file is gone. Keeps what only the index knows (``uploaded``, ``activity_id``)."""
    counts = {"added": 0, "updated": 0, "removed": 0, "unreadable": 0}
    seen: set[str] = set()
    for path in _files(store.root, ".mp4"):
        rel = store.relative(path)
        seen.add(rel)
        existing = store.index.find(path=rel)
        if existing is not None and (existing.state == "recording" or store.is_active(existing.id)):
            continue
        try:
            info = probe(path)
        except RecordError as err:
            _LOGGER.warning("reindex: skipping %s: %s", rel, err)
            counts["unreadable"] += 1
            continue
        thumb = path.with_suffix(".jpg")
        if not thumb.exists():
            thumbnail_from_file(path, thumb)
        clip = _clip_from_file(rel, path, info)
        fields: dict[str, Any] = {
            "end": clip.start + info.duration,
            "duration": info.duration,
            "size": info.size,
            "video_codec": info.video_codec,
            "audio_codec": info.audio_codec,
            "width": info.width,
            "height": info.height,
            "thumbnail": store.relative(thumb) if thumb.exists() else None,
            "state": "done" if info.video_frames else "failed",
        }
        if existing is None:
            store.index.add(dataclasses.replace(clip, **fields))
            counts["added"] += 1
        else:
            store.index.update(existing.id, **fields)
            counts["updated"] += 1
    remote = store.index.remote_only()  # uploaded to S3 and deleted here: not missing
    for clip in store.index.all(states=("done", "failed")):
        if clip.path not in seen and clip.id not in remote:
            store.index.delete(clip.id)
            counts["removed"] += 1
    _LOGGER.info("reindex of %s: %s", store.root, counts)
    return counts


def _files(root: Path, suffix: str) -> Iterator[Path]:
    """Regular files ending in ``suffix`` under ``root``; symlinks are never followed."""
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            if name.endswith(suffix) and path.is_file() and not path.is_symlink():
                yield path


def _clip_from_file(rel: str, path: Path, info: MediaInfo | None) -> Clip:
    """A clip row from the file's own tags, else from its place in the folder layout."""
    tags = read_tags(info.tags) if info is not None else _tags_quietly(path)
    parts = rel.split("/")
    device = str(tags.get("device") or (parts[0] if len(parts) > 1 else "unknown"))
    stem = parts[-1].split(".", 1)[0]
    start = tags.get("start")
    if start is None:
        start = _start_from_layout(parts) or path.stat().st_mtime
    return Clip(
        device_id=str(tags.get("device_id") or device),
        device=device,
        event=str(tags.get("event") or (stem.split("_", 1)[1] if "_" in stem else "unknown")),
        start=float(start),
        path=rel,
        state="recording",
        preroll=float(tags.get("preroll", 0.0)),
        source="cloud" if tags.get("source") == "cloud" else "live",
        activity_id=str(tags["activity_id"]) if tags.get("activity_id") else None,
    )


def _tags_quietly(path: Path) -> dict[str, Any]:
    try:
        return read_tags(probe(path).tags)
    except RecordError:
        return {}


def _start_from_layout(parts: list[str]) -> float | None:
    """Parse ``<YYYY-MM-DD>/<HHMMSS>_...`` (local time), as the recorder names files."""
    if len(parts) < 2:
        return None
    try:
        when = time.strptime(f"{parts[-2]} {parts[-1][:6]}", "%Y-%m-%d %H%M%S")
    except ValueError:
        return None
    return time.mktime(when)
