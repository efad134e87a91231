"""Writing hub packets to MP4 by remuxing: H.264 is copied, audio becomes AAC.

The file is fragmented (a fragment per keyframe, moov up front), so a clip being written is
playable up to its last fragment even if the process is killed mid-write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import av

from bridge.media.remux import Remuxer

__all__ = ["Mp4Writer"]

_LOGGER = logging.getLogger(__name__)
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


class Mp4Writer(Remuxer):
    """Remuxes a stream of hub packets into one MP4 file.

    Streams are created lazily from the first keyframe (for the picture size) and the first
    audio packet; packets before the first keyframe are skipped so the file starts decodable.
    ``audio=False`` writes video only. Timestamps are made relative to the first keyframe.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        audio: bool = True,
        wait_for_audio: float = 0.5,
        fragment_seconds: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(audio=audio, wait_for_audio=wait_for_audio)
        self.path = Path(path)
        self._options = dict(FRAGMENTED)
        if fragment_seconds is not None:
            # Cut a fragment at least this often, not only at keyframes (a doorbell's GOP can be
            # long), and flush after each muxed packet: the mp4 muxer only hands bytes to the
            # file when it cuts a fragment, so each fragment reaches the disk whole, and a killed
            # process loses at most the fragment in progress instead of a 32 KiB I/O buffer.
            self._options["frag_duration"] = str(round(fragment_seconds * 1_000_000))
            self._options["flush_packets"] = "1"
        self._metadata = dict(metadata or {})  # mvhd/udta tags, written with the moov up front

    @property
    def video_codec(self) -> str:
        """The video track's codec ("" before the file exists): copied, so always the doorbell's."""
        return "h264" if self.width else ""  # the size is known once the file was opened

    @property
    def duration(self) -> float:
        """Seconds of video written."""
        last = self._last_dts.get("video")
        return 0.0 if last is None else last / 90000 + 1 / 15

    def _create(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), "w", format="mp4", options=self._options)
        container.metadata.update(self._metadata)
        return container

    def close(self) -> None:
        """Finish the file; safe to call twice. A file with no keyframe is not created."""
        if self._container is not None:
            container, self._container = self._container, None
            container.close()
            _LOGGER.debug(
                "wrote %s: %d video frames, %d audio frames",
                self.path,
                self.frames,
                self.audio_frames,
            )
