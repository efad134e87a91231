"""Checks a rule's ``say`` file at start: it exists and PyAV decodes audio from it.

Decoding the whole file once costs a few milliseconds per second of audio; doing it at start
turns a typo or a broken file into a config error instead of a silent doorbell at 3 a.m.
PyAV is imported here, on first use, so loading rules without ``say`` never loads it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["audio_seconds"]


def audio_seconds(path: Path) -> float:
    """The length of the audio in ``path``, in seconds; ValueError (one line) if undecodable."""
    import av  # heavy, and only needed for say actions

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError("it holds no audio stream")
            samples, rate = 0, 0
            for frame in container.decode(audio=0):
                samples += frame.samples
                rate = frame.sample_rate or rate
    except av.FFmpegError as err:
        raise ValueError(" ".join(str(err).split())[:160]) from None
    if not samples or not rate:
        raise ValueError("it decodes to no sound")
    return samples / rate
