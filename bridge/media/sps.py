"""Reading picture size and profile out of an H.264 SPS, without a decoder, and following the
parameter sets along a stream whose picture size changes.

Muxers need the width and height up front (MP4's track header, RTSP's SDP), and the only place a
passthrough stream carries them is the sequence parameter set (H.264 spec 7.3.2.1.1).

Real senders change the SPS mid-stream (libwebrtc's quality scaler: 1280x720 → 640x360 and back),
sending the new SPS/PPS in front of the next IDR. ``ParameterSetTracker`` is how an output learns
which parameter sets apply to the packet in hand: the ones the packet itself carries, else the
last ones this consumer saw in-band, else the stream's latest (``Stream.sps``/``pps``). The
stream's latest alone is not enough: a consumer that lags behind a change would prefix its
older IDRs with the newer SPS, which no decoder can use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridge.media.packet import extract_sps_pps

__all__ = ["MAX_SIDE", "ParameterSetTracker", "SpsInfo", "parse_sps"]

# H.264's largest level (6.2) allows 139264 macroblocks per picture, 8192x4320 in practice; a
# side beyond this is a corrupt SPS, and believing it would make outputs allocate gigabytes.
MAX_SIDE = 16384

# Profiles whose SPS carries chroma format and scaling lists before the frame fields.
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True)
class SpsInfo:
    """What the outputs need from an SPS."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    width: int
    height: int

    @property
    def profile_level_id(self) -> str:
        """The SDP ``profile-level-id`` (six hex digits)."""
        return f"{self.profile_idc:02x}{self.constraint_flags:02x}{self.level_idc:02x}"


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]  # IndexError on a truncated SPS, turned into ValueError
        value = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def _unescape(nal: bytes) -> bytes:
    # Emulation prevention: 00 00 03 xx in the NAL means 00 00 xx in the RBSP.
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_scaling_list(r: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se()) % 256
        last = nxt or last


def parse_sps(nal: bytes) -> SpsInfo:
    """Parse an SPS NAL unit (header byte first, no start code); ValueError if it is unusable.

    Unusable means truncated, malformed, or declaring a picture no decoder would make (a side
    of zero or less after cropping, or beyond ``MAX_SIDE``).
    """
    if not nal or nal[0] & 0x1F != 7:
        raise ValueError("not an SPS NAL unit")
    try:
        info = _parse(_Bits(_unescape(nal[1:])))
    except IndexError:
        raise ValueError("truncated SPS") from None
    if not (0 < info.width <= MAX_SIDE and 0 < info.height <= MAX_SIDE):
        raise ValueError(f"SPS declares an impossible picture size {info.width}x{info.height}")
    return info


def _parse(r: _Bits) -> SpsInfo:
    profile, constraints, level = r.bits(8), r.bits(8), r.bits(8)
    if r.ue() > 31:
        raise ValueError("SPS id out of range")
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = r.ue()
        if chroma_format > 3:
            raise ValueError(f"bad chroma_format_idc {chroma_format}")
        if chroma_format == 3:
            r.bit()  # separate_colour_plane_flag
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if r.bit():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        cycle = r.ue()
        if cycle > 255:
            raise ValueError("bad num_ref_frames_in_pic_order_cnt_cycle")
        for _ in range(cycle):
            r.se()
    elif poc_type != 2:
        raise ValueError(f"bad pic_order_cnt_type {poc_type}")
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = height_map_units * 16 * (2 - frame_mbs_only)
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    return SpsInfo(profile, constraints, level, width, height)


ParameterSets = tuple[bytes | None, bytes | None]


class ParameterSetTracker:
    """The SPS/PPS in force along one consumer's packets (see the module doc)."""

    def __init__(self, fallback: Callable[[], ParameterSets] = lambda: (None, None)) -> None:
        self._fallback = fallback
        self._sps: bytes | None = None
        self._pps: bytes | None = None

    def update(self, data: bytes) -> bool:
        """Note the parameter sets a keyframe carries; True when they differ from the last seen.

        The first parameter sets seen count as a change only if they differ from the fallback's.
        """
        sps, pps = extract_sps_pps(data)
        if sps is None and pps is None:
            return False
        before = self.current
        self._sps, self._pps = sps or before[0], pps or before[1]
        return self.current != before

    @property
    def current(self) -> ParameterSets:
        """The SPS and PPS to use now: the last seen in-band, else the fallback's."""
        if self._sps is not None and self._pps is not None:
            return self._sps, self._pps
        fallback_sps, fallback_pps = self._fallback()
        return self._sps or fallback_sps, self._pps or fallback_pps
