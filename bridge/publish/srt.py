"""SRT pushes go through the ``ffmpeg`` program: PyAV's bundled FFmpeg is built without libsrt.

The muxer process writes MPEG-TS into this relay's stdin, and ffmpeg copies it (``-c copy``,
nothing decoded) to the SRT target with FFmpeg's own protocol (libsrt, as in Debian's build).
The catch: ffmpeg takes its output URL on its command line, which other local users can read
in the process list, so an SRT ``passphrase`` is visible there; the README says so.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import subprocess
import threading
from typing import IO

__all__ = ["SrtRelay", "srt_problem"]

_WAIT = 5.0  # seconds the relay may take to flush and close the connection


def _ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def srt_problem() -> str | None:
    """Why srt:// targets cannot work on this machine, or None when they can."""
    if _ffmpeg() is None:
        return "srt:// pushes need the ffmpeg program (with SRT), and it is not installed"
    return None


class SrtRelay:
    """One ``ffmpeg`` process carrying MPEG-TS from its stdin to an SRT target."""

    def __init__(self, url: str) -> None:
        ffmpeg = _ffmpeg()
        if ffmpeg is None:
            raise OSError(srt_problem())
        # The URL is the bridge's own config, passed as one argument (no shell).
        self._proc = subprocess.Popen(  # noqa: S603
            [
                ffmpeg,
                "-hide_banner",
                "-nostats",
                "-loglevel",
                "error",
                # Progress lines on stdout start once the output is open: the target took it.
                "-progress",
                "pipe:1",
                # Start at once: the packets are ours, so there is nothing to guess by probing.
                "-probesize",
                "32",
                "-analyzeduration",
                "0",
                "-f",
                "mpegts",
                "-i",
                "pipe:0",
                "-map",
                "0",
                "-c",
                "copy",
                "-f",
                "mpegts",
                url,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._errors: collections.deque[str] = collections.deque(maxlen=3)
        self._connected = threading.Event()
        self._tails = [
            threading.Thread(target=self._read_errors, name="srt relay errors", daemon=True),
            threading.Thread(target=self._read_progress, name="srt relay progress", daemon=True),
        ]
        for tail in self._tails:
            tail.start()

    @property
    def connected(self) -> bool:
        """True once ffmpeg has the SRT connection (its first progress report)."""
        return self._connected.is_set()

    @property
    def stdin(self) -> IO[bytes]:
        assert self._proc.stdin is not None
        return self._proc.stdin

    @property
    def error(self) -> str:
        """ffmpeg's last complaint (why the target failed), or its exit status."""
        if self._errors:
            return self._errors[-1]
        return f"ffmpeg exited with {self._proc.poll()}"

    def _read_errors(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            text = line.decode(errors="replace").strip()
            if text:
                self._errors.append(text)

    def _read_progress(self) -> None:
        assert self._proc.stdout is not None
        for _ in self._proc.stdout:
            self._connected.set()

    def close(self) -> None:
        """Let ffmpeg finish the stream, killing it if it will not."""
        with contextlib.suppress(OSError):  # ffmpeg is gone already (the target failed)
            self.stdin.close()
        try:
            self._proc.wait(_WAIT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for tail in self._tails:
            tail.join(1.0)
