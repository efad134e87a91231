"""The few ISO-BMFF (fragmented MP4) boxes HLS needs, written by hand.

An init segment (``ftyp`` + ``moov`` with an ``avc1``/``avcC`` video track and, when there is
audio, an ``mp4a``/``esds`` AAC track) and media fragments (``moof`` + ``mdat``). Sizes and
offsets are computed up front, so each box is built exactly once with no patching.
Reference: ISO/IEC 14496-12 (boxes), 14496-14 (esds), 14496-15 (avcC).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.media.packet import NAL_AUD, NAL_PPS, NAL_SPS, iter_nal_units

__all__ = [
    "AUDIO_TRACK",
    "DELTA_FLAGS",
    "KEY_FLAGS",
    "VIDEO_TIMESCALE",
    "VIDEO_TRACK",
    "AudioConfig",
    "TrackRun",
    "VideoConfig",
    "avcc_sample",
    "fragment",
    "init_segment",
]

VIDEO_TRACK, AUDIO_TRACK = 1, 2
VIDEO_TIMESCALE = 90000  # the hub's video clock, so no timestamp is ever rescaled
# sample_flags (14496-12 8.8.3.1): a sync sample depends on nothing; any other one depends on
# earlier samples and is flagged non-sync, which is how players find where they may start.
KEY_FLAGS = 0x02000000
DELTA_FLAGS = 0x01010000
# The High-family profiles whose avcC carries chroma format and bit depths (14496-15 5.3.3.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 144})
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # "und", packed as three 5-bit letters


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """The H.264 track: parameter sets (NAL units without start codes) and picture size."""

    sps: bytes
    pps: bytes
    width: int
    height: int

    @property
    def codec(self) -> str:
        """The RFC 6381 codec string, e.g. ``avc1.42c01e``."""
        return "avc1." + self.sps[1:4].hex()


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """The AAC track: the encoder's AudioSpecificConfig and sample rate."""

    asc: bytes
    sample_rate: int
    channels: int = 1

    @property
    def codec(self) -> str:
        """The RFC 6381 codec string, e.g. ``mp4a.40.2`` for AAC-LC."""
        return f"mp4a.40.{self.asc[0] >> 3 if self.asc else 2}"


@dataclass(frozen=True, slots=True)
class TrackRun:
    """One track's samples in a fragment: (size, duration, flags or None) each, and their bytes."""

    track_id: int
    base_time: int  # decode time of the first sample, in the track's timescale
    samples: Sequence[tuple[int, int, int | None]]
    payload: bytes


def _box(kind: bytes, *payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + sum(len(p) for p in payload), kind) + b"".join(payload)


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *payload)


def avcc_sample(annexb: bytes, parameter_sets: tuple[bytes, bytes] | None = None) -> bytes:
    """An Annex-B access unit as an MP4 sample: a 4-byte length before each NAL unit.

    MP4 readers split samples on the lengths, never on start codes. Access unit delimiters mean
    nothing in MP4 and are dropped. In-band SPS/PPS are dropped too, and ``parameter_sets`` (the
    ones in ``avcC``) are put in front instead when given (for keyframes): duplicates are legal,
    cost a few dozen bytes per keyframe, and let a decoder that ignores a new init section (as
    ffmpeg's HLS demuxer does after a resolution change) reconfigure from the stream itself.
    """
    nals = list(parameter_sets or ())
    nals += (n for n in iter_nal_units(annexb) if n[0] & 0x1F not in (NAL_AUD, NAL_SPS, NAL_PPS))
    return b"".join(struct.pack(">I", len(n)) + n for n in nals)


# -- init segment --------------------------------------------------------------------------------


def init_segment(video: VideoConfig, audio: AudioConfig | None) -> bytes:
    """``ftyp`` + ``moov`` for a fragmented file with these tracks (no samples of its own)."""
    ftyp = _box(b"ftyp", b"iso5", struct.pack(">I", 512), b"iso5iso6mp41")
    traks = [_trak(VIDEO_TRACK, b"vide", VIDEO_TIMESCALE, _avc1(video), video.width, video.height)]
    trexs = [_trex(VIDEO_TRACK)]
    if audio is not None:
        traks.append(_trak(AUDIO_TRACK, b"soun", audio.sample_rate, _mp4a(audio), 0, 0))
        trexs.append(_trex(AUDIO_TRACK))
    mvhd = _full(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, 0),  # creation, modification, timescale, duration
        struct.pack(">IH10x", 0x10000, 0x0100),  # rate 1.0, volume 1.0
        _MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", len(traks) + 1),  # next_track_ID
    )
    return ftyp + _box(b"moov", mvhd, *traks, _box(b"mvex", *trexs))


def _trex(track_id: int) -> bytes:
    # Sample description 1 by default; durations, sizes and flags always come in each trun.
    return _full(b"trex", 0, 0, struct.pack(">5I", track_id, 1, 0, 0, 0))


def _trak(track_id: int, handler: bytes, timescale: int, entry: bytes, w: int, h: int) -> bytes:
    is_audio = handler == b"soun"
    tkhd = _full(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">5I", 0, 0, track_id, 0, 0),  # creation, modification, id, -, duration
        struct.pack(">8xhhH2x", 0, 0, 0x0100 if is_audio else 0),  # layer, group, volume
        _MATRIX,
        struct.pack(">II", w << 16, h << 16),  # 16.16 fixed point
    )
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    name = b"SoundHandler\0" if is_audio else b"VideoHandler\0"
    hdlr = _full(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name)
    media_header = _full(b"smhd", 0, 0, bytes(4)) if is_audio else _full(b"vmhd", 0, 1, bytes(8))
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full(b"stts", 0, 0, bytes(4)),
        _full(b"stsc", 0, 0, bytes(4)),
        _full(b"stsz", 0, 0, bytes(8)),
        _full(b"stco", 0, 0, bytes(4)),
    )
    minf = _box(b"minf", media_header, dinf, stbl)
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))


def _avc1(video: VideoConfig) -> bytes:
    sps, pps = video.sps, video.pps
    avcc = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])  # 4-byte lengths, one SPS
    avcc += struct.pack(">H", len(sps)) + sps + b"\x01" + struct.pack(">H", len(pps)) + pps
    if sps[1] in _HIGH_PROFILES:
        # 4:2:0, 8-bit, no SPS extensions: what every doorbell and phone camera sends. The SPS
        # parser does not return these fields, and readers only use them as a hint.
        avcc += b"\xfd\xf8\xf8\x00"
    return _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),  # pre_defined, reserved
        struct.pack(">HHII4xH", video.width, video.height, 0x480000, 0x480000, 1),
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),  # depth, pre_defined
        _box(b"avcC", avcc),
    )


def _descriptor(tag: int, payload: bytes) -> bytes:
    # MPEG-4 descriptors use a 7-bits-per-byte length; four bytes always suffice here.
    n = len(payload)
    size = bytes(
        [0x80 | (n >> 21) & 0x7F, 0x80 | (n >> 14) & 0x7F, 0x80 | (n >> 7) & 0x7F, n & 0x7F]
    )
    return bytes([tag]) + size + payload


def _mp4a(audio: AudioConfig) -> bytes:
    decoder_config = _descriptor(
        4,
        # objectTypeIndication 0x40 = MPEG-4 audio; streamType 5 (audio) << 2 | upStream 0 | 1.
        struct.pack(">BB3sII", 0x40, 0x15, bytes(3), 0, 0) + _descriptor(5, audio.asc),
    )
    es = _descriptor(
        3, struct.pack(">HB", AUDIO_TRACK, 0) + decoder_config + _descriptor(6, b"\x02")
    )
    return _box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(8),
        struct.pack(">HHHH", audio.channels, 16, 0, 0),
        struct.pack(">I", audio.sample_rate << 16),  # 16.16; 48000 still fits in 16 bits
        _full(b"esds", 0, 0, es),
    )


# -- fragments -----------------------------------------------------------------------------------

_TFHD_BASE_IS_MOOF = 0x020000
_TRUN_DATA_OFFSET, _TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS = 0x1, 0x100, 0x200, 0x400


def _traf_size(run: TrackRun) -> int:
    per_sample = 12 if run.samples and run.samples[0][2] is not None else 8
    # traf header + tfhd(16) + tfdt v1 (20) + trun header (20) + samples
    return 8 + 16 + 20 + 20 + per_sample * len(run.samples)


def fragment(sequence: int, runs: Sequence[TrackRun]) -> bytes:
    """One ``moof`` + ``mdat``: each run's samples, in order, the tracks' data back to back."""
    moof_size = 8 + 16 + sum(_traf_size(r) for r in runs)
    offset = moof_size + 8  # data starts after the mdat header
    trafs = []
    for run in runs:
        with_flags = bool(run.samples) and run.samples[0][2] is not None
        flags = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE | (_TRUN_FLAGS if with_flags else 0)
        if with_flags:
            table = b"".join(struct.pack(">III", d, s, f or 0) for s, d, f in run.samples)
        else:
            table = b"".join(struct.pack(">II", d, s) for s, d, _ in run.samples)
        trafs.append(
            _box(
                b"traf",
                _full(b"tfhd", 0, _TFHD_BASE_IS_MOOF, struct.pack(">I", run.track_id)),
                _full(b"tfdt", 1, 0, struct.pack(">Q", run.base_time)),
                _full(b"trun", 0, flags, struct.pack(">Ii", len(run.samples), offset), table),
            )
        )
        offset += len(run.payload)
    moof = _box(b"moof", _full(b"mfhd", 0, 0, struct.pack(">I", sequence)), *trafs)
    assert len(moof) == moof_size
    return moof + _box(b"mdat", *(r.payload for r in runs))
