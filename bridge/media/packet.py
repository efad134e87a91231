"""The encoded-packet model every output consumes, plus small H.264 bitstream helpers.

A packet is always *encoded*: the bridge never decodes on the ingest path. Video packets are
whole Annex-B access units (one picture), so muxers and RTP packetizers can take them as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "NAL_AUD",
    "NAL_IDR",
    "NAL_PPS",
    "NAL_SEI",
    "NAL_SLICE",
    "NAL_SPS",
    "MediaKind",
    "MediaPacket",
    "extract_sps_pps",
    "h264_is_keyframe",
    "h264_nal_types",
    "h264_profile",
    "iter_nal_units",
]

MediaKind = Literal["video", "audio"]

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

# profile_idc values from the H.264 spec (Annex A) that WebRTC endpoints actually use.
_PROFILE_NAMES = {66: "baseline", 77: "main", 88: "extended", 100: "high"}


@dataclass(slots=True)
class MediaPacket:
    """One encoded video access unit or audio frame, as it came off the wire."""

    kind: MediaKind
    codec: str  # "h264", "opus", "pcmu", "pcma"
    # video: one Annex-B access unit (start codes, SPS/PPS in-band when the keyframe carries
    # them); audio: one encoded frame.
    data: bytes
    pts: int  # in clock_rate units: 90000 for video, the RTP clock for audio
    clock_rate: int
    keyframe: bool  # video: the AU contains an IDR slice; audio: always True
    arrival: float  # time.monotonic() when the last RTP packet of this frame arrived
    discontinuity: bool = False  # set by the hub, never by a source


def iter_nal_units(data: bytes) -> Iterator[bytes]:
    """Yield each NAL unit (header byte first, no start code) of an Annex-B buffer."""
    # Both 3- and 4-byte start codes occur, even inside one access unit (x264 writes a 4-byte
    # code before parameter sets and 3-byte ones before later slices).
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        if nxt == -1:
            end = len(data)
        else:
            end = nxt
            # A zero just before the next start code belongs to a 4-byte start code, except
            # that trailing_zero bytes may legally pad a NAL; stripping them is harmless.
            while end > begin and data[end - 1] == 0:
                end -= 1
        if end > begin:
            yield data[begin:end]
        start = nxt


def h264_nal_types(data: bytes) -> list[int]:
    """Return the nal_unit_type of every NAL unit in an Annex-B buffer, in order."""
    return [nal[0] & 0x1F for nal in iter_nal_units(data)]


def h264_is_keyframe(data: bytes) -> bool:
    """Whether an Annex-B access unit contains an IDR slice."""
    return NAL_IDR in h264_nal_types(data)


def extract_sps_pps(data: bytes) -> tuple[bytes | None, bytes | None]:
    """Return the first SPS and PPS NAL units (without start codes) found in ``data``."""
    sps: bytes | None = None
    pps: bytes | None = None
    for nal in iter_nal_units(data):
        nal_type = nal[0] & 0x1F
        if nal_type == NAL_SPS and sps is None:
            sps = nal
        elif nal_type == NAL_PPS and pps is None:
            pps = nal
    return sps, pps


def h264_profile(sps: bytes) -> tuple[str, str]:
    """Return (profile name, profile-level-id hex) for an SPS NAL unit (header byte first).

    The profile-level-id is the SDP form: profile_idc, constraint flags, level_idc.
    """
    if len(sps) < 4 or sps[0] & 0x1F != NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    profile_idc, constraints, level_idc = sps[1], sps[2], sps[3]
    name = _PROFILE_NAMES.get(profile_idc, f"profile-{profile_idc}")
    # constraint_set1_flag on Baseline means Constrained Baseline, which is what WebRTC sends.
    if profile_idc == 66 and constraints & 0x40:
        name = "constrained-baseline"
    return name, f"{profile_idc:02x}{constraints:02x}{level_idc:02x}"
