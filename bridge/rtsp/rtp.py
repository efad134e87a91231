"""RTP and RTCP on the wire: H.264 (RFC 6184) and AAC (RFC 3640) payloads, headers, sender reports.

Payloads are built once per access unit per stream and shared by every client; a client only adds
its own 12-byte header (sequence number, timestamp, SSRC), so this module keeps the two apart.
"""

from __future__ import annotations

import struct

from bridge.media.packet import NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS, iter_nal_units

__all__ = [
    "MAX_PAYLOAD",
    "aac_payload",
    "h264_payloads",
    "rtp_header",
    "sender_report",
]

# 1200 bytes leaves room for IP, UDP and RTP headers inside a 1500-byte MTU even across a VPN or
# PPPoE hop; a fragmented UDP datagram is lost whole when any fragment is lost.
MAX_PAYLOAD = 1200

_FU_A = 28
_RTP_HEADER = struct.Struct("!BBHII")
_SR = struct.Struct("!BBHIIIIII")
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)


def h264_payloads(
    access_unit: bytes,
    sps: bytes | None = None,
    pps: bytes | None = None,
    max_payload: int = MAX_PAYLOAD,
) -> list[bytes]:
    """RTP payloads for one Annex-B access unit: single NAL units, FU-A for large ones.

    The RTP marker bit belongs on the last payload returned.
    """
    nals = [nal for nal in iter_nal_units(access_unit) if nal[0] & 0x1F != NAL_AUD]
    types = {nal[0] & 0x1F for nal in nals}
    if NAL_IDR in types:
        # Cameras (and x264 after the first frame) often send parameter sets only once, out of
        # band. A client that joins later, or a recorder that cuts a file at this IDR, cannot
        # decode it without them, so every IDR goes out with SPS and PPS in front.
        prefix = []
        if NAL_SPS not in types and sps:
            prefix.append(sps)
        if NAL_PPS not in types and pps:
            prefix.append(pps)
        nals = prefix + nals
    out: list[bytes] = []
    for nal in nals:
        if len(nal) <= max_payload:
            out.append(nal)
        else:
            out.extend(_fu_a(nal, max_payload))
    return out


def _fu_a(nal: bytes, max_payload: int) -> list[bytes]:
    indicator = (nal[0] & 0xE0) | _FU_A  # keep F and NRI from the original header
    nal_type = nal[0] & 0x1F
    body = memoryview(nal)[1:]
    room = max_payload - 2
    count = -(-len(body) // room)
    # Even fragments rather than full ones plus a runt: same packet count, no tiny last packet.
    size = -(-len(body) // count)
    out = []
    for start in range(0, len(body), size):
        header = nal_type
        if start == 0:
            header |= 0x80
        if start + size >= len(body):
            header |= 0x40
        out.append(bytes((indicator, header)) + body[start : start + size])
    return out


def aac_payload(frame: bytes) -> bytes:
    """An RFC 3640 AAC-hbr payload carrying one whole AAC frame (one access unit).

    The AU header section is a 16-bit length in bits (one 16-bit header), then the header:
    13 bits of AU size and 3 bits of AU index (always 0 for the first AU).
    """
    if len(frame) >= 1 << 13:
        raise ValueError("AAC frame too large for a 13-bit AU-size")
    return struct.pack("!HH", 16, len(frame) << 3) + frame


def rtp_header(payload_type: int, marker: bool, seq: int, timestamp: int, ssrc: int) -> bytes:
    """A 12-byte RTP header (version 2, no padding, extension or CSRC)."""
    return _RTP_HEADER.pack(
        0x80,
        payload_type | (0x80 if marker else 0),
        seq & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )


def sender_report(
    ssrc: int, wall_time: float, rtp_time: int, packets: int, octets: int, cname: bytes
) -> bytes:
    """A compound RTCP packet: a sender report followed by the SDES CNAME RFC 3550 requires."""
    ntp = wall_time + _NTP_EPOCH_OFFSET
    seconds = int(ntp)
    fraction = int((ntp - seconds) * (1 << 32)) & 0xFFFFFFFF
    report = _SR.pack(
        0x80,
        200,
        6,  # length in 32-bit words minus one
        ssrc,
        seconds & 0xFFFFFFFF,
        fraction,
        rtp_time & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    item = bytes((1, len(cname))) + cname + b"\x00"  # CNAME item, then the end-of-list byte
    item += b"\x00" * (-len(item) % 4)
    chunk = struct.pack("!I", ssrc) + item
    sdes = struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
    return report + sdes
