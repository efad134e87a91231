"""Property tests for ``decode_audio``: any bytes give frames or ``AudioUndecodable``, nothing
else, and real audio files (truncated or corrupted anywhere) never escape as another error."""

from __future__ import annotations

import asyncio

import av
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.talk import AudioTooLong, AudioUndecodable, decode_audio

from .talk_util import tone_file

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_WAV = tone_file(1000.0, 0.2, rate=8000)
_OGG = tone_file(1000.0, 0.2, rate=48_000, container="ogg", codec="libopus")
_MAGIC = [
    b"",
    b"RIFF",
    b"OggS",
    b"ID3",
    b"\xff\xfb",
    b"fLaC",
    b"#EXTM3U\n",
    b"ffconcat version 1.0\n",
]


def _decode(data: bytes) -> list[av.AudioFrame] | None:
    try:
        return asyncio.run(decode_audio(data, max_seconds=60))
    except AudioUndecodable as err:
        message = str(err)
        assert message
        assert "\n" not in message
        return None


@FUZZ
@given(magic=st.sampled_from(_MAGIC), rest=st.binary(max_size=2048))
@example(magic=b"", rest=b"")
@example(magic=b"#EXTM3U\n", rest=b"#EXTINF:1,\nfile:///etc/passwd\n")
def test_any_bytes_give_frames_or_undecodable(magic: bytes, rest: bytes) -> None:
    frames = _decode(magic + rest)
    if frames is not None:
        assert frames
        assert all(isinstance(f, av.AudioFrame) and f.samples > 0 for f in frames)


@FUZZ
@given(
    source=st.sampled_from([_WAV, _OGG]),
    cut=st.integers(min_value=0, max_value=4096),
    flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8),
)
def test_damaged_audio_files_give_frames_or_undecodable(
    source: bytes, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(source[: len(source) - cut % len(source)])
    for at, value in flips:
        if data:
            data[at % len(data)] = value
    _decode(bytes(data))


def test_a_wav_whose_header_names_no_decoder_is_undecodable() -> None:
    # Found by the property above: bits per sample 0 leaves the stream without a codec context.
    data = bytearray(_WAV)
    data[34] = 0
    assert _decode(bytes(data)) is None


def test_a_real_file_decodes_whole() -> None:
    frames = _decode(tone_file(1000.0, 1.0, rate=44_100))
    assert frames is not None
    assert abs(sum(f.samples for f in frames) / 44_100 - 1.0) < 0.01


def test_longer_than_allowed_is_too_long() -> None:
    with pytest.raises(AudioTooLong, match=r"max_seconds = 0\.5 s"):
        asyncio.run(decode_audio(tone_file(1000.0, 1.0), max_seconds=0.5))
