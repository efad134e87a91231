"""The session description a DESCRIBE returns, built from the stream's live parameter sets."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from bridge.media.sps import parse_sps

__all__ = ["TrackInfo", "aac_track", "build_sdp", "g711_track", "h264_track"]


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


def h264_track(sps: bytes, pps: bytes, payload_type: int = 96) -> TrackInfo:
    """The video track for a stream whose latest parameter sets are ``sps`` and ``pps``."""
    info = parse_sps(sps)
    # Clients configure their decoder from sprop-parameter-sets before the first RTP packet,
    # which is why DESCRIBE waits for a keyframe: without it these would be unknown.
    sprop = ",".join(base64.b64encode(p).decode() for p in (sps, pps))
    fmtp = (
        f"packetization-mode=1;profile-level-id={info.profile_level_id};"
        f"sprop-parameter-sets={sprop}"
    )
    return TrackInfo(
        "video",
        payload_type,
        "H264",
        90000,
        fmtp=fmtp,
        extra=(f"framesize:{payload_type} {info.width}-{info.height}",),
    )


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
