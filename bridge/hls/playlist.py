"""HLS playlists rendered from a ``Segmenter``, and the LL-HLS blocking-reload rules.

Pure functions of the segmenter's state: the packager decides when to call them. Resource names
(``init-V.mp4``, ``seg-N.m4s``, ``part-N.I.m4s``) are relative, so a playlist works behind any
reverse-proxy prefix; the HTTP routes must serve the same names.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.hls.boxes import VIDEO_TIMESCALE
from bridge.hls.segmenter import InitSection, Segment, Segmenter

__all__ = [
    "ADVANCE_PART_LIMIT",
    "BadRequest",
    "Uris",
    "bandwidth",
    "check_blocking",
    "media_playlist",
    "multivariant_playlist",
    "parse_blocking",
    "reached",
]

# RFC 8216bis 6.2.5.2: a blocking request more than this many parts ahead is refused.
ADVANCE_PART_LIMIT = 3
_VERSION = 6  # EXT-X-MAP without I-frames-only needs 6; nothing here needs more


class BadRequest(ValueError):
    """A playlist request the spec says to refuse with 400."""


@dataclass(frozen=True, slots=True)
class Uris:
    """How a playlist names its resources: ``prefix`` before each name, ``query`` after it."""

    prefix: str = ""
    query: str = ""

    def init(self, version: int) -> str:
        """The init section with this version."""
        return f"{self.prefix}init-{version}.mp4{self.query}"

    def segment(self, msn: int) -> str:
        """A full segment."""
        return f"{self.prefix}seg-{msn}.m4s{self.query}"

    def part(self, msn: int, index: int) -> str:
        """One part of a segment."""
        return f"{self.prefix}part-{msn}.{index}.m4s{self.query}"


def _seconds(ticks: int) -> str:
    return f"{ticks / VIDEO_TIMESCALE:.5f}"


def _date(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def media_playlist(seg: Segmenter, uris: Uris, *, low_latency: bool) -> str:
    """The live media playlist: LL-HLS (parts, preload hint, server control) or plain."""
    target = seg.target_duration
    listed: list[Segment] = list(seg.segments)
    if low_latency and seg.current is not None and seg.current.parts:
        listed.append(seg.current)
    first = listed[0].msn if listed else seg.next_part[0]
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{_VERSION}", f"#EXT-X-TARGETDURATION:{target}"]
    if low_latency:
        # PART-HOLD-BACK: the spec's minimum is 2 part targets and its advice 3.
        lines += [
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * seg.part_target:.3f}",
            f"#EXT-X-PART-INF:PART-TARGET={seg.part_target:.5f}",
        ]
    lines += [
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{seg.discontinuity_sequence}",
    ]
    # Parts are listed only near the live edge (the spec: within 3 target durations of it).
    edge = listed[-1].start + listed[-1].duration if listed else 0
    parts_from = edge - 3 * target * VIDEO_TIMESCALE
    map_version = None
    for s in listed:
        if s.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if s.init.version != map_version:
            map_version = s.init.version
            lines.append(f'#EXT-X-MAP:URI="{uris.init(map_version)}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(s.wallclock)}")
        if low_latency and s.start + s.duration > parts_from:
            for p in s.parts:
                independent = ",INDEPENDENT=YES" if p.independent else ""
                lines.append(
                    f'#EXT-X-PART:DURATION={_seconds(p.duration)},URI="{uris.part(p.msn, p.index)}"'
                    + independent
                )
        if s.complete:
            lines += [f"#EXTINF:{_seconds(s.duration)},", uris.segment(s.msn)]
    if low_latency:
        msn, index = seg.next_part
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{uris.part(msn, index)}"')
    return "\n".join(lines) + "\n"


def multivariant_playlist(init: InitSection, peak_bps: int, uri: str) -> str:
    """A one-variant multivariant playlist announcing codecs and size, pointing at ``uri``."""
    video = init.video
    return (
        f"#EXTM3U\n#EXT-X-VERSION:{_VERSION}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        f'#EXT-X-STREAM-INF:BANDWIDTH={peak_bps},CODECS="{init.codecs}",'
        f"RESOLUTION={video.width}x{video.height}\n{uri}\n"
    )


def bandwidth(seg: Segmenter, default: int = 1_000_000) -> int:
    """Peak bits per second over the window's segments (BANDWIDTH is a peak, not an average)."""
    rates = [len(s.data) * 8 * VIDEO_TIMESCALE // s.duration for s in seg.segments if s.duration]
    return max(rates, default=default)


def parse_blocking(query: Mapping[str, str]) -> tuple[int, int | None] | None:
    """``(_HLS_msn, _HLS_part)`` from a playlist query, or None for a plain reload."""
    msn, part = query.get("_HLS_msn"), query.get("_HLS_part")
    if msn is None:
        if part is not None:
            raise BadRequest("_HLS_part needs _HLS_msn")
        return None
    try:
        values = int(msn), None if part is None else int(part)
    except ValueError:
        raise BadRequest("_HLS_msn and _HLS_part must be integers") from None
    if values[0] < 0 or (values[1] is not None and values[1] < 0):
        raise BadRequest("_HLS_msn and _HLS_part must not be negative")
    return values


def check_blocking(seg: Segmenter, msn: int, part: int | None) -> None:
    """Refuse a request too far ahead of the live edge to ever be answered in time."""
    building, newest_index = seg.next_part  # the segment being built, and its next part
    newest_index -= 1
    too_far = msn > building + 1
    if part is not None and not too_far:
        if msn == building:
            too_far = part - newest_index > ADVANCE_PART_LIMIT
        elif msn == building + 1:
            # At least one part of the current segment is still to come before this one.
            too_far = part >= ADVANCE_PART_LIMIT
    if too_far:
        raise BadRequest(
            f"_HLS_msn={msn} _HLS_part={part} is too far ahead "
            f"(the live edge is segment {building}, part {newest_index})"
        )


def reached(seg: Segmenter, msn: int, part: int | None) -> bool:
    """Whether the playlist now holds segment ``msn`` (complete) or its part ``part`` or later."""
    if part is None:
        return bool(seg.segments) and seg.segments[-1].msn >= msn
    newest = seg.newest_part
    return newest is not None and (newest[0] > msn or (newest[0] == msn and newest[1] >= part))
