"""Reading clip files back: probing with PyAV, repairing a cut-off fragmented MP4, clip tags.

A clip is a fragmented MP4: ``ftyp``, ``moov`` (no samples), then ``moof``+``mdat`` pairs, and
``mfra`` when it was closed cleanly. A killed writer leaves at worst one half-written pair at
the end; cutting the file back to the last whole pair gives a file every player accepts, with
nothing rewritten. All of this blocks: call it from a thread.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from bridge.record.errors import RecordError

__all__ = [
    "PART_SUFFIX",
    "MediaInfo",
    "clip_tags",
    "cut_partial_fragment",
    "fsync_path",
    "probe",
    "read_tags",
]

_LOGGER = logging.getLogger(__name__)
PART_SUFFIX = ".part"  # appended to a clip's name while it is being written
_TAG_KEYS = ("device_id", "device", "event", "preroll", "source", "activity_id")


@dataclass(frozen=True)
class MediaInfo:
    """What a clip file holds, read back by demuxing all of it."""

    size: int
    duration: float
    video_frames: int
    video_codec: str = ""
    audio_codec: str = ""
    width: int = 0
    height: int = 0
    tags: dict[str, str] = field(default_factory=dict)


def probe(path: Path) -> MediaInfo:
    """Demux a clip to its end; raises RecordError when it has no readable video."""
    try:
        with av.open(str(path)) as container:
            tags = dict(container.metadata)
            if not container.streams.video:
                raise RecordError(f"{path.name}: no video track")
            video: Any = container.streams.video[0]
            audio: Any = container.streams.audio[0] if container.streams.audio else None
            first: int | None = None
            end = 0
            frames = 0
            try:
                for packet in container.demux(video):
                    if packet.size == 0 or packet.pts is None:
                        continue  # the flush packet demux yields at the end
                    frames += 1
                    first = packet.pts if first is None else min(first, packet.pts)
                    end = max(end, packet.pts + (packet.duration or 0))
            except av.error.FFmpegError as err:
                # A damaged tail: what was read so far is the playable part.
                _LOGGER.warning("%s: stopped reading at a damaged packet: %s", path.name, err)
            duration = float((end - (first or 0)) * video.time_base) if frames else 0.0
            return MediaInfo(
                size=path.stat().st_size,
                duration=round(duration, 3),
                video_frames=frames,
                video_codec=video.codec_context.name,
                audio_codec=audio.codec_context.name if audio is not None else "",
                width=video.codec_context.width,
                height=video.codec_context.height,
                tags=tags,
            )
    except (av.error.FFmpegError, OSError) as err:
        raise RecordError(f"{path.name}: unreadable: {err}") from err


def cut_partial_fragment(path: Path) -> int:
    """Truncate a fragmented MP4 after its last complete fragment; returns bytes removed.

    Raises RecordError when not even the header (``moov``) is complete.
    """
    with path.open("r+b") as f:
        size = os.fstat(f.fileno()).st_size
        pos = good = 0
        in_fragment = have_moov = False
        while pos + 8 <= size:
            f.seek(pos)
            box_size, box_type = struct.unpack(">I4s", f.read(8))
            header = 8
            if box_size == 1:  # 64-bit size follows the type
                box_size = struct.unpack(">Q", f.read(8))[0]
                header = 16
            if box_size < header or pos + box_size > size:
                break  # size 0 ("to the end") or cut off: the writer died inside this box
            pos += box_size
            if box_type == b"moof":
                in_fragment = True  # only whole once its mdat follows
            elif box_type == b"mdat":
                in_fragment = False
                good = pos
            elif not in_fragment:
                have_moov = have_moov or box_type == b"moov"
                good = pos
        if not have_moov:
            raise RecordError(f"{path.name}: the MP4 header was never completely written")
        if good < size:
            f.truncate(good)
        return size - good


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clip_tags(fields: dict[str, Any], start: float) -> dict[str, str]:
    """MP4 metadata that lets ``reindex()`` rebuild a clip's row from the file alone."""
    created = datetime.datetime.fromtimestamp(start, datetime.UTC)
    payload = {k: fields[k] for k in _TAG_KEYS if fields.get(k) is not None}
    payload["start"] = start
    return {
        "creation_time": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "comment": json.dumps({"skybell_bridge": payload}, separators=(",", ":")),
    }


def read_tags(tags: dict[str, str]) -> dict[str, Any]:
    """The fields ``clip_tags`` stored, or {} for a file from elsewhere."""
    try:
        payload = json.loads(tags.get("comment", "{}")).get("skybell_bridge", {})
    except (ValueError, AttributeError):
        return {}
    if not isinstance(payload, dict):
        return {}
    out = {k: payload[k] for k in (*_TAG_KEYS, "start") if k in payload}
    for key in ("preroll", "start"):
        if key in out and not isinstance(out[key], int | float):
            del out[key]
    return out
