"""The session description a DESCRIBE returns, built from the stream's live parameter sets."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

from bridge.media.packet import h264_profile
from bridge.media.sps import parse_sps
from bridge.rtsp.backchannel import BACKCHANNEL_FORMATS

__all__ = [
    "TrackInfo",
    "aac_track",
    "backchannel_track",
    "build_sdp",
    "g711_track",
    "h264_track",
]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackInfo:
    """One media line: what a client needs to set up and decode a track."""

    kind: str  # "video" or "audio"
    payload_type: int
    encoding: str  # the rtpmap encoding name
    clock_rate: int
    channels: int | None = None
    fmtp: str | None = None
    extra: tuple[str, ...] = ()  # further attribute lines, without "a="
    backchannel: bool = False  # the ONVIF backchannel: the client sends, in any of its formats


def h264_track(sps: bytes, pps: bytes, payload_type: int = 96) -> TrackInfo:
    """The video track for a stream whose latest parameter sets are ``sps`` and ``pps``.

    Raises ValueError only when ``sps`` is not an SPS NAL unit at all.
    """
    # RTSP passes the bitstream through, so an SPS this module cannot read (a profile it does
    # not know, a picture size it finds absurd) is the client decoder's to judge: the track is
    # still described, only without the optional framesize.
    profile_level_id = h264_profile(sps)[1]
    extra: tuple[str, ...] = ()
    try:
        info = parse_sps(sps)
    except ValueError as err:
        _LOGGER.warning("RTSP: unreadable SPS (%s); describing the track without its size", err)
    else:
        extra = (f"framesize:{payload_type} {info.width}-{info.height}",)
    # Clients configure their decoder from sprop-parameter-sets before the first RTP packet,
    # which is why DESCRIBE waits for a keyframe: without it these would be unknown. After a
    # resolution change the stream's latest SPS/PPS are these, so a later DESCRIBE gets the
    # new size while clients already playing get the new sets in-band (see ``rtp``).
    sprop = ",".join(base64.b64encode(p).decode() for p in (sps, pps))
    fmtp = f"packetization-mode=1;profile-level-id={profile_level_id};sprop-parameter-sets={sprop}"
    return TrackInfo("video", payload_type, "H264", 90000, fmtp=fmtp, extra=extra)


def aac_track(
    config: bytes, sample_rate: int, channels: int = 1, payload_type: int = 97
) -> TrackInfo:
    """An RFC 3640 AAC-hbr track; ``config`` is the encoder's AudioSpecificConfig."""
    fmtp = (
        "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
        f"indexdeltalength=3;config={config.hex()}"
    )
    return TrackInfo("audio", payload_type, "mpeg4-generic", sample_rate, channels, fmtp)


def g711_track(codec: str) -> TrackInfo:
    """A G.711 track on its static payload type (0 for PCMU, 8 for PCMA), passed through as is."""
    if codec == "pcmu":
        return TrackInfo("audio", 0, "PCMU", 8000, 1)
    if codec == "pcma":
        return TrackInfo("audio", 8, "PCMA", 8000, 1)
    raise ValueError(f"not a G.711 codec: {codec!r}")


def backchannel_track() -> TrackInfo:
    """The ONVIF backchannel's audio section (its formats are ``BACKCHANNEL_FORMATS``)."""
    payload_type, encoding, clock_rate, channels, _ = BACKCHANNEL_FORMATS[0]
    return TrackInfo("audio", payload_type, encoding, clock_rate, channels, backchannel=True)


def _backchannel_lines() -> list[str]:
    types = " ".join(str(fmt[0]) for fmt in BACKCHANNEL_FORMATS)
    lines = [f"m=audio 0 RTP/AVP {types}"]
    for payload_type, encoding, clock_rate, channels, fmtp in BACKCHANNEL_FORMATS:
        lines.append(f"a=rtpmap:{payload_type} {encoding}/{clock_rate}/{channels}")
        if fmtp:
            lines.append(f"a=fmtp:{payload_type} {fmtp}")
    # Direction as the server sees it (ONVIF): it only receives on this section.
    lines.append("a=sendonly")
    return lines


def build_sdp(name: str, host: str, tracks: list[TrackInfo], session_id: int) -> str:
    """An SDP for a live session; track ``i`` has the control URL ``trackID=i``."""
    family = "IP6" if ":" in host else "IP4"
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN {family} {host}",
        f"s={name}",
        f"c=IN {family} {'::' if family == 'IP6' else '0.0.0.0'}",
        "t=0 0",
        "a=tool:skybell-bridge",
        "a=control:*",
        "a=range:npt=0-",  # live: no duration, so clients neither seek nor expect an end
    ]
    for index, track in enumerate(tracks):
        if track.backchannel:
            lines += _backchannel_lines()
            lines.append(f"a=control:trackID={index}")
            continue
        rtpmap = f"{track.encoding}/{track.clock_rate}"
        if track.channels is not None and track.kind == "audio":
            rtpmap += f"/{track.channels}"
        lines += [
            f"m={track.kind} 0 RTP/AVP {track.payload_type}",
            f"a=rtpmap:{track.payload_type} {rtpmap}",
        ]
        if track.fmtp:
            lines.append(f"a=fmtp:{track.payload_type} {track.fmtp}")
        lines += [f"a={extra}" for extra in track.extra]
        lines.append(f"a=control:trackID={index}")
    return "\r\n".join(lines) + "\r\n"
