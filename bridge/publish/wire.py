"""What the bridge and its muxer process say to each other over the child's stdin and stdout.

Down (stdin): one JSON line naming the target, then packets, each a fixed header and its bytes.
Up (stdout): JSON lines, ``{"opened": …, "bytes": …, "frames": …}`` as the push goes and
``{"error": "…"}`` once before the process gives up. The URL travels on stdin, never on the
command line, where ``ps`` would show its password to every user of the machine.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any, TypedDict, cast

from bridge.media.packet import MediaPacket

__all__ = [
    "Progress",
    "Target",
    "encode_packet",
    "encode_progress",
    "encode_target",
    "parse_progress",
    "read_packet",
    "read_target",
]

# kind, keyframe, codec, pts, clock rate, arrival, length of the bytes that follow
_HEADER = struct.Struct(">BBBqIdI")
_CODECS = ("h264", "opus", "pcmu", "pcma")
_KINDS = ("video", "audio")


class Target(TypedDict):
    """The first line down: where to push and whether audio goes along."""

    url: str
    audio: bool


class Progress(TypedDict, total=False):
    """A line up: the push's counters so far, or why it ended."""

    opened: bool
    bytes: int
    frames: int
    error: str


def encode_target(target: Target) -> bytes:
    return json.dumps(target).encode() + b"\n"


def read_target(stream: IO[bytes]) -> Target:
    """The first line down; ValueError when it is not one."""
    line = stream.readline()
    data: Any = json.loads(line) if line.strip() else None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise ValueError("the first line names no target")
    return {"url": data["url"], "audio": bool(data.get("audio"))}


def encode_packet(packet: MediaPacket) -> bytes:
    header = _HEADER.pack(
        _KINDS.index(packet.kind),
        packet.keyframe,
        _CODECS.index(packet.codec),
        packet.pts,
        packet.clock_rate,
        packet.arrival,
        len(packet.data),
    )
    return header + packet.data


def read_packet(stream: IO[bytes]) -> MediaPacket | None:
    """The next packet down, or None at the end of the input (a cut-off packet ends it too).

    ValueError for a header no bridge writes.
    """
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    kind, keyframe, codec, pts, clock_rate, arrival, size = _HEADER.unpack(header)
    if kind >= len(_KINDS) or codec >= len(_CODECS):
        raise ValueError(f"a packet header names kind {kind}, codec {codec}")
    data = _read_exactly(stream, size)
    if data is None:
        return None
    return MediaPacket(
        kind=cast("Any", _KINDS[kind]),
        codec=_CODECS[codec],
        data=data,
        pts=pts,
        clock_rate=clock_rate,
        keyframe=bool(keyframe),
        arrival=arrival,
    )


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    # The muxer reads its stdin unbuffered (so it can tell when nothing waits), and a raw
    # read may return less than asked.
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def encode_progress(progress: Progress) -> bytes:
    return json.dumps(progress).encode() + b"\n"


def parse_progress(line: bytes) -> Progress:
    """A line up; anything else the child printed is an error text of its own."""
    try:
        data: Any = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {"error": line.decode(errors="replace").strip()}
    return cast("Progress", data)
