"""The bridge's end of one muxer process (``bridge.publish.worker``): why it is a process is there.

Packets go down the child's stdin; when the target stops taking them the pipe fills and
``send`` waits, while the hub's bounded subscriber drops whole GOPs behind it. A child that
hangs past FFmpeg's own I/O timeout (plus a margin) is killed, so nothing waits forever.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys

from bridge.media.packet import MediaPacket
from bridge.publish.muxer import IO_TIMEOUT
from bridge.publish.wire import encode_packet, encode_target, parse_progress

__all__ = ["MuxerFailed", "MuxerProcess"]

_LOGGER = logging.getLogger(__name__)
# FFmpeg gives up on a silent target after IO_TIMEOUT; the child is killed if it has not by then.
HANG_TIMEOUT = IO_TIMEOUT + 5.0
_PROGRESS_EVERY = 1.0  # seconds between looks at whether the child is still taking packets


class MuxerFailed(Exception):
    """The muxer process gave up on the target, crashed, or hung."""


class MuxerProcess:
    """One push: a child process muxing to ``url``, its counters, and why it ended."""

    def __init__(self, url: str, *, audio: bool) -> None:
        self.url = url
        self.audio = audio
        self.opened = False
        self.bytes = 0
        self.frames = 0
        self.error: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._stderr: collections.deque[str] = collections.deque(maxlen=3)
        self._first_sent: float | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.publish.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C at the terminal is for the bridge, which then ends the
            # push in order (TEARDOWN) instead of the child dying mid-write.
            start_new_session=True,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(encode_target({"url": self.url, "audio": self.audio}))
        self._readers = [
            asyncio.create_task(self._read_progress(), name="publish progress"),
            asyncio.create_task(self._read_stderr(), name="publish stderr"),
        ]

    @property
    def ended(self) -> bool:
        return self._proc is None or self._proc.returncode is not None

    async def check(self) -> None:
        """Raise MuxerFailed if the child ended, or is still opening the target past the timeout."""
        if self.ended:
            await self._drain_readers()  # its last words may still be in the pipe
            raise MuxerFailed(self.error or self._exit_reason())
        loop = asyncio.get_running_loop()
        if (
            not self.opened
            and self._first_sent is not None
            and loop.time() - self._first_sent > HANG_TIMEOUT
        ):
            raise MuxerFailed(f"the target did not take the stream for {HANG_TIMEOUT:g} s")

    async def send(self, packets: list[MediaPacket]) -> None:
        """Queue packets for the child; waits while the pipe is full (the target is behind)."""
        await self.check()
        assert self._proc is not None
        assert self._proc.stdin is not None
        if self._first_sent is None:
            self._first_sent = asyncio.get_running_loop().time()
        stdin = self._proc.stdin
        for packet in packets:
            stdin.write(encode_packet(packet))
        try:
            await self._drain(stdin)
        except ConnectionError:
            await self._wait_exit(1.0)
            await self._drain_readers()
            raise MuxerFailed(self.error or self._exit_reason()) from None

    async def _drain(self, stdin: asyncio.StreamWriter) -> None:
        """Wait until the child has taken what was written.

        A target slower than the doorbell takes a batch slowly, and that is no failure (the hub
        drops whole GOPs meanwhile): only HANG_TIMEOUT without the child taking a byte is.
        """
        loop = asyncio.get_running_loop()
        transport = stdin.transport
        left, moved = transport.get_write_buffer_size(), loop.time()
        drained = asyncio.ensure_future(stdin.drain())
        try:
            while not (await asyncio.wait((drained,), timeout=_PROGRESS_EVERY))[0]:
                now, size = loop.time(), transport.get_write_buffer_size()
                if size < left:
                    left, moved = size, now
                elif now - moved > HANG_TIMEOUT:
                    what = "took nothing" if self.opened else "did not take the stream"
                    raise MuxerFailed(f"the target {what} for {HANG_TIMEOUT:g} s")
            drained.result()  # ConnectionError when the child is gone
        finally:
            drained.cancel()

    async def finish(self) -> None:
        """End the push in order (the child closes the target), killing it if it hangs.

        Packets still in the pipe are dropped: behind a slow target they could take minutes.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                if self.opened:
                    proc.terminate()  # the child's SIGTERM handler closes the target (TEARDOWN)
                else:
                    # Nothing to tear down, and a child still in FFmpeg's open holds its GIL,
                    # so its handler would only run when the open times out.
                    proc.kill()
        await self._wait_exit(HANG_TIMEOUT)
        await self._drain_readers()

    async def _drain_readers(self) -> None:
        # The pipes end with the process (a grandchild could hold them: not waited for long).
        if self._readers:
            await asyncio.wait(self._readers, timeout=1.0)
        for task in self._readers:
            task.cancel()

    async def _wait_exit(self, timeout: float) -> None:
        assert self._proc is not None
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()

    def _exit_reason(self) -> str:
        if self._stderr:
            return self._stderr[-1]
        code = self._proc.returncode if self._proc is not None else None
        return f"the muxer process exited with {code}"

    async def _read_progress(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async for line in self._proc.stdout:
            progress = parse_progress(line)
            if "error" in progress:
                self.error = progress["error"]
                continue
            self.opened = progress.get("opened", self.opened)
            self.bytes = progress.get("bytes", self.bytes)
            self.frames = progress.get("frames", self.frames)

    async def _read_stderr(self) -> None:
        # FFmpeg's and Python's own complaints: kept for an exit that left no error line, and
        # logged at debug (they may repeat the URL, which the log filter masks).
        assert self._proc is not None
        assert self._proc.stderr is not None
        async for raw in self._proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._stderr.append(line)
                _LOGGER.debug("publish muxer: %s", line)
