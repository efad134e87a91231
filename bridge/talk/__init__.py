"""Talking to the visitor: audio from any talk source, encoded once, sent to the doorbell.

The sources (``POST /api/talk``, the CLI's ``talk``, the page's push-to-talk, the RTSP
backchannel, rules' ``say``) all go through ``TalkService.open`` and a ``TalkSession``;
``decode_audio`` turns an uploaded file into frames. A protocol package: no aiohttp.web, no
config. Layout: ``errors`` (what fails, with its HTTP status), ``options`` (``[talk]``),
``decode`` (files to frames), ``service`` (one talker per doorbell); the outbound track itself
is ``bridge.media.talk_track``. Exports are imported on first use (``bridge.lazy``).
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from .decode import AUDIO_FORMATS, decode_audio
    from .errors import (
        AudioTooLong,
        AudioUndecodable,
        TalkBusy,
        TalkError,
        TalkUnavailable,
        TalkUnsupported,
    )
    from .options import TalkOptions
    from .service import Talkable, TalkService, TalkSession

__all__ = [
    "AUDIO_FORMATS",
    "AudioTooLong",
    "AudioUndecodable",
    "TalkBusy",
    "TalkError",
    "TalkOptions",
    "TalkService",
    "TalkSession",
    "TalkUnavailable",
    "TalkUnsupported",
    "Talkable",
    "decode_audio",
]

__getattr__ = lazy_exports(
    __name__,
    {
        ".decode": ("AUDIO_FORMATS", "decode_audio"),
        ".errors": (
            "AudioTooLong",
            "AudioUndecodable",
            "TalkBusy",
            "TalkError",
            "TalkUnavailable",
            "TalkUnsupported",
        ),
        ".options": ("TalkOptions",),
        ".service": ("TalkService", "TalkSession", "Talkable"),
    },
)
