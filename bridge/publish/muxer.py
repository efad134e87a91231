"""Pushing hub packets to a media server with FFmpeg's own muxers and protocols (via PyAV).

Blocking from end to end (connecting, the RTSP ANNOUNCE/RECORD handshake, every write), and
PyAV holds the GIL through FFmpeg's connect, so it runs in its own process
(``bridge.publish.worker``). H.264 is copied, never re-encoded; audio becomes AAC.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit

import av

from bridge.media.packet import MediaPacket
from bridge.media.remux import Remuxer
from bridge.publish.srt import SrtRelay

__all__ = ["PushMuxer", "container_format"]

# Seconds a connect or a write may block before FFmpeg's interrupt callback gives up: a target
# that accepts and then stalls must fail (and be retried) rather than hold the muxer forever.
IO_TIMEOUT = 10.0


def container_format(url: str) -> tuple[str, dict[str, str]]:
    """The FFmpeg muxer and its options for a publish URL's scheme."""
    scheme = urlsplit(url).scheme.lower()
    # Microseconds, as FFmpeg takes them. PyAV's own ``timeout`` is for reading: an output
    # container given one fails to open.
    io_timeout = str(round(IO_TIMEOUT * 1_000_000))
    if scheme in ("rtsp", "rtsps"):
        # RTP over the RTSP connection: one TCP stream that crosses NAT and firewalls, which
        # UDP to a media server often does not.
        return "rtsp", {"rtsp_transport": "tcp", "timeout": io_timeout}
    if scheme in ("rtmp", "rtmps"):
        return "flv", {"rw_timeout": io_timeout}
    if scheme == "srt":
        return "mpegts", {}  # written into ffmpeg's stdin (bridge.publish.srt)
    raise ValueError(f"cannot publish to {scheme!r} URLs")


class PushMuxer(Remuxer):
    """One connection to a target: opened at the first keyframe, written packet by packet.

    Timestamps start at zero at the first keyframe; the hub's timeline is already continuous
    across doorbell reconnects, and each kind's dts is kept strictly increasing on top.
    """

    def __init__(self, url: str, *, audio: bool = True, wait_for_audio: float = 0.5) -> None:
        super().__init__(audio=audio, wait_for_audio=wait_for_audio)
        self.url = url
        self._relay: SrtRelay | None = None

    @property
    def opened(self) -> bool:
        # Through the SRT relay, the header reaching its pipe says nothing about the target.
        return super().opened and (self._relay is None or self._relay.connected)

    def _create(self) -> Any:
        fmt, options = container_format(self.url)
        if urlsplit(self.url).scheme.lower() == "srt":
            self._relay = SrtRelay(self.url)
            return av.open(self._relay.stdin, "w", format=fmt)
        return av.open(self.url, "w", format=fmt, options=options)

    def write(self, packet: MediaPacket) -> None:
        try:
            super().write(packet)
        except OSError as err:
            if self._relay is None:
                raise
            # A broken pipe says only that the relay is gone; its own last words say why.
            raise OSError(self._relay.error) from err

    def close(self) -> None:
        """Finish the push (RTSP TEARDOWN, FLV trailer); safe to call twice, never raises."""
        container, self._container = self._container, None
        if container is not None:
            # The target may be gone already; there is nothing left to tell it then.
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
        if self._relay is not None:
            relay, self._relay = self._relay, None
            relay.close()
