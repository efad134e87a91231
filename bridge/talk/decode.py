"""Decoding an uploaded audio file (WAV, Ogg/Opus, MP3, M4A, FLAC...) into PyAV frames.

The bytes come from whoever can reach ``POST /api/talk``, so the demuxers FFmpeg may pick are
limited to audio file formats: left to probe freely it would also take an HLS playlist or a
concat list, whose entries name other files or URLs to open (a way to read the bridge's disk
or reach the LAN through it).
"""

from __future__ import annotations

import asyncio
import io

import av
import av.container

from .errors import AudioTooLong, AudioUndecodable

__all__ = ["AUDIO_FORMATS", "decode_audio"]

# Decoded audio is held in memory until played: a minute of 48 kHz stereo float is 23 MiB.
_MAX_DECODED = 128 << 20

# FFmpeg demuxer names. "mov" is the MP4/M4A demuxer (its data references stay off: FFmpeg's
# enable_drefs defaults to 0). Raw AAC (ADTS) and AMR come as phone recordings do.
AUDIO_FORMATS = (
    "wav,w64,ogg,mp3,mov,matroska,webm,flac,aac,aiff,au,caf,amr,wv,ape,mpc,tta,opus,"
    "s16le,mulaw,alaw"
)


async def decode_audio(data: bytes, max_seconds: float) -> list[av.AudioFrame]:
    """The audio of ``data`` as frames, decoded in a thread.

    Raises ``AudioUndecodable`` (the message names the problem) for anything that is not a
    decodable audio file, and ``AudioTooLong`` once more than ``max_seconds`` are decoded.
    """
    return await asyncio.to_thread(_decode, data, max_seconds)


def _decode(data: bytes, max_seconds: float) -> list[av.AudioFrame]:
    if not data:
        raise AudioUndecodable("the audio body is empty")
    try:
        container = av.open(io.BytesIO(data), "r", options={"format_whitelist": AUDIO_FORMATS})
    except Exception as err:  # FFmpeg's errors, and anything its probing raises on junk
        raise AudioUndecodable(f"not an audio file FFmpeg can read: {_why(err)}") from None
    try:
        assert isinstance(container, av.container.InputContainer)
        return _frames(container, max_seconds)
    finally:
        container.close()


def _frames(container: av.container.InputContainer, max_seconds: float) -> list[av.AudioFrame]:
    if not container.streams.audio:
        kinds: list[str] = sorted({s.type for s in container.streams}) or ["nothing"]
        raise AudioUndecodable(f"no audio in the {container.format.name} body (found {kinds})")
    stream = container.streams.audio[0]
    frames: list[av.AudioFrame] = []
    seconds = 0.0
    held = 0  # bytes of decoded audio: many channels at a high rate add up within max_seconds
    try:
        for frame in container.decode(stream):
            if not frame.samples or not frame.sample_rate:
                continue
            seconds += frame.samples / frame.sample_rate
            held += sum(plane.buffer_size for plane in frame.planes)
            if seconds > max_seconds:
                raise AudioTooLong(seconds, max_seconds)
            if held > _MAX_DECODED:
                raise AudioTooLong(
                    seconds, max_seconds, f"over {_MAX_DECODED >> 20} MiB once decoded"
                )
            frames.append(frame)
    except AudioTooLong:
        raise
    except Exception as err:  # a corrupt packet deep in the file
        if not frames:
            # No codec context at all when FFmpeg has no decoder for what the header says.
            codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
            raise AudioUndecodable(f"the {codec} audio is corrupt: {_why(err)}") from None
        # What decoded before the damage is played, as players do with a truncated file.
    if not frames:
        raise AudioUndecodable(f"the {container.format.name} body holds no audio samples")
    return frames


def _why(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]
