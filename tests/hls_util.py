"""A small m3u8 reader for the HLS tests: just enough of RFC 8216bis to check what we serve."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.media.packet import MediaPacket

from .fake_doorbell import g711_audio


def attributes(text: str) -> dict[str, str]:
    """An attribute list (``A=1,B="x,y"``) as a dict, quotes removed."""
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


@dataclass
class MediaSegment:
    msn: int
    duration: float
    uri: str
    discontinuity: bool
    map_uri: str
    date: str | None


@dataclass
class PartEntry:
    msn: int  # the segment it belongs to
    duration: float
    uri: str
    independent: bool


@dataclass
class Playlist:
    text: str
    tags: dict[str, str] = field(default_factory=dict)  # the last value of each tag
    segments: list[MediaSegment] = field(default_factory=list)
    parts: list[PartEntry] = field(default_factory=list)
    preload_hint: str | None = None

    @property
    def media_sequence(self) -> int:
        return int(self.tags["EXT-X-MEDIA-SEQUENCE"])


def parse_media(text: str) -> Playlist:
    """Parse a media playlist, numbering segments from EXT-X-MEDIA-SEQUENCE."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", text
    out = Playlist(text)
    msn = None
    duration = 0.0
    discontinuity = False
    map_uri = ""
    date = None
    for line in lines[1:]:
        if line.startswith("#"):
            tag, _, value = line[1:].partition(":")
            out.tags[tag] = value
            if tag == "EXT-X-MEDIA-SEQUENCE":
                msn = int(value)
            elif tag == "EXT-X-MAP":
                map_uri = attributes(value)["URI"]
            elif tag == "EXT-X-DISCONTINUITY":
                discontinuity = True
            elif tag == "EXT-X-PROGRAM-DATE-TIME":
                date = value
            elif tag == "EXTINF":
                duration = float(value.split(",")[0])
            elif tag == "EXT-X-PART":
                attrs = attributes(value)
                assert msn is not None
                out.parts.append(
                    PartEntry(
                        msn,
                        float(attrs["DURATION"]),
                        attrs["URI"],
                        attrs.get("INDEPENDENT") == "YES",
                    )
                )
            elif tag == "EXT-X-PRELOAD-HINT":
                out.preload_hint = attributes(value)["URI"]
        elif line:
            assert msn is not None
            out.segments.append(MediaSegment(msn, duration, line, discontinuity, map_uri, date))
            msn += 1
            discontinuity, date = False, None
    return out


def timed_packets(
    seconds: float, video: Sequence[MediaPacket], *, audio: bool = True, fps: int = 15
) -> list[MediaPacket]:
    """``video`` looped and G.711 audio, stamped for ``seconds`` on a hub-like timeline."""
    out = [
        dataclasses.replace(video[i % len(video)], pts=i * 90000 // fps, arrival=i / fps)
        for i in range(int(seconds * fps))
    ]
    if audio:
        tone = g711_audio()
        out += [
            dataclasses.replace(tone[i % len(tone)], pts=i * 160, arrival=i * 0.02)
            for i in range(int(seconds * 50))
        ]
    return sorted(out, key=lambda p: p.arrival)
