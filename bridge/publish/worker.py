"""The muxer process: ``python -m bridge.publish.worker`` pushes what it reads on stdin to one target.

Why a process rather than a thread: PyAV holds the GIL while FFmpeg opens an output
(``avio_open`` and ``avformat_write_header``: the DNS lookup, the connect, the RTMP handshake,
RTSP's ANNOUNCE/SETUP/RECORD). A target that accepted the connection and then said nothing held
the bridge's event loop, and every output with it, for FFmpeg's whole I/O timeout. Here it holds
only this process, which the bridge kills when it hangs past that timeout; and a crash inside
FFmpeg ends one push, not the bridge.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from types import FrameType
from typing import IO

import av

from bridge.publish.muxer import PushMuxer
from bridge.publish.wire import Progress, encode_progress, read_packet, read_target

_REPORT_EVERY = 0.5  # seconds between counter lines while packets keep coming


class _Stopped(Exception):
    """SIGTERM: the bridge ends the push; what is still in the pipe is not worth sending."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def _say(out: IO[bytes], progress: Progress) -> None:
    try:
        out.write(encode_progress(progress))
        out.flush()
    except OSError:
        pass  # the bridge is gone; its end of stdin closing ends this process too


def _nothing_waiting(fd: int) -> bool:
    readable, _, _ = select.select([fd], [], [], 0)
    return not readable


def _counters(muxer: PushMuxer) -> Progress:
    return {"opened": muxer.opened, "bytes": muxer.bytes, "frames": muxer.frames}


def run(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Push until the input ends (0) or the target fails (1); 2 for input that is not ours."""
    try:
        target = read_target(stdin)
    except ValueError as err:
        _say(stdout, {"error": str(err)})
        return 2
    muxer = PushMuxer(target["url"], audio=target["audio"])
    reported: Progress = {}
    last = 0.0
    try:
        while (packet := read_packet(stdin)) is not None:
            muxer.write(packet)
            now = time.monotonic()
            # Counters go up whenever the input is drained for now, so the bridge's figures are
            # exact while it waits for the doorbell, and at least twice a second under load.
            if now - last >= _REPORT_EVERY or _nothing_waiting(stdin.fileno()):
                progress = _counters(muxer)
                if progress != reported:
                    _say(stdout, progress)
                    reported, last = progress, now
    except _Stopped:
        pass
    except (av.FFmpegError, OSError, ValueError) as err:
        _say(stdout, {"error": str(err) or type(err).__name__})
        return 1
    finally:
        muxer.close()  # RTSP TEARDOWN, the FLV trailer: the receiver finishes its file
    _say(stdout, _counters(muxer))
    return 0


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    # Unbuffered, so select() on the descriptor tells whether packets are waiting.
    with os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as stdin:
        return run(stdin, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
