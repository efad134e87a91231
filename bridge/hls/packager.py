"""One packager per stream, shared by every HLS viewer, started on demand and stopped when idle.

A packager holds a single hub subscription and a ``Segmenter``; every playlist, segment and part
request is served from its memory. Requests "touch" it; ``idle_timeout`` seconds without one
and it unsubscribes, so the hub can end the doorbell's live call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from bridge.hls.options import HlsOptions
from bridge.hls.playlist import (
    BadRequest,
    Uris,
    bandwidth,
    check_blocking,
    media_playlist,
    multivariant_playlist,
    reached,
)
from bridge.hls.segmenter import InitSection, Segmenter
from bridge.media.buffers import Subscriber
from bridge.media.hub import Stream
from bridge.tasks import TaskSet

__all__ = ["HlsPackager", "HlsRegistry", "NotAvailable"]

_LOGGER = logging.getLogger(__name__)


class NotAvailable(Exception):
    """Nothing to serve yet, or not in time (HTTP 503)."""


class HlsPackager:
    """Packages one stream for all of its HLS viewers."""

    def __init__(
        self,
        stream: Stream,
        *,
        idle_timeout: float = 30.0,
        startup_timeout: float = 20.0,
        on_idle: Callable[[HlsPackager], None] = lambda p: None,
        **segmenter_options: Any,
    ) -> None:
        self.stream = stream
        self.idle_timeout = idle_timeout
        self.startup_timeout = startup_timeout
        # Part of every media URI: a restarted packager numbers segments from 0 again, and this
        # keeps a cached seg-0 of the old one from standing in for the new one.
        self.session_id = secrets.token_hex(4)
        self.segmenter = Segmenter(
            parameter_sets=lambda: (stream.sps, stream.pps),
            request_keyframe=stream.request_keyframe,
            **segmenter_options,
        )
        self.closed = False
        self._on_idle = on_idle
        self._last_request = time.monotonic()
        self._waiting = 0  # requests being held (blocking reloads, startup): viewers too
        self._changed = asyncio.Event()
        self._sub: Subscriber | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Subscribe to the stream and start packaging."""
        if self._task is not None or self.closed:
            return
        self._sub = self.stream.subscribe("hls")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._pump(self._sub), name=f"hls {self.stream.name}")
        self._idle_handle = loop.call_later(self.idle_timeout, self._idle_check)
        _LOGGER.info("HLS %s: packaging started", self.stream.name)

    def touch(self) -> None:
        """Note a viewer's request (keeps the packager alive)."""
        self._last_request = time.monotonic()

    async def _pump(self, sub: Subscriber) -> None:
        seg = self.segmenter
        failures = 0
        try:
            async for packet in sub:
                generation = seg.generation
                try:
                    seg.feed(packet)
                except Exception:
                    # One bad packet (odd SPS, corrupt audio) must not end the stream for all.
                    failures += 1
                    if failures == 1 or failures % 1000 == 0:
                        _LOGGER.exception("HLS %s: packaging failed", self.stream.name)
                if seg.generation != generation:
                    self._notify()
        finally:
            self.closed = True
            self._notify()

    def _notify(self) -> None:
        # Wake everyone waiting, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds (re-checked on every new part); False on timeout."""
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    if self.closed:
                        return False
                    await self._changed.wait()
        except TimeoutError:
            return condition()
        finally:
            self._waiting -= 1
            self.touch()
        return True

    def _idle_check(self) -> None:
        self._idle_handle = None
        quiet = 0.0 if self._waiting else time.monotonic() - self._last_request
        if quiet >= self.idle_timeout:
            _LOGGER.info("HLS %s: no requests for %.0f s, stopping", self.stream.name, quiet)
            self._on_idle(self)
        elif not self.closed:
            delay = self.idle_timeout - quiet
            self._idle_handle = asyncio.get_running_loop().call_later(delay, self._idle_check)

    async def close(self) -> None:
        """Unsubscribe and stop; safe to call twice."""
        self.closed = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if self._sub is not None:
            self._sub.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._notify()

    # -- what the routes serve -----------------------------------------------------------------

    async def ready(self) -> InitSection:
        """Wait for the first complete segment; raises ``NotAvailable`` if it does not come."""
        seg = self.segmenter
        if not await self.wait(lambda: bool(seg.segments), self.startup_timeout):
            if seg.error is not None:
                raise NotAvailable(f"stream {self.stream.name!r}: {seg.error}")
            raise NotAvailable(
                f"no video from stream {self.stream.name!r} yet (state {self.stream.state})"
            )
        assert seg.init is not None
        return seg.segments[-1].init

    async def multivariant(self, media_uri: str) -> str:
        """The multivariant playlist pointing at ``media_uri``."""
        init = await self.ready()
        return multivariant_playlist(init, bandwidth(self.segmenter), media_uri)

    async def media(
        self, query: str, *, low_latency: bool, block: tuple[int, int | None] | None
    ) -> str:
        """The media playlist, held until ``block`` = (msn, part) exists when one is given.

        Raises ``BadRequest`` (far-future request) or ``NotAvailable`` (not in time).
        """
        await self.ready()
        seg = self.segmenter
        if block is not None:
            msn, part = block
            check_blocking(seg, msn, part)
            # The spec's bound on holding a request: three target durations.
            if not await self.wait(lambda: reached(seg, msn, part), 3 * seg.target_duration):
                why = f": {seg.error}" if seg.error is not None else ""
                raise NotAvailable(f"segment {msn} part {part} did not appear in time{why}")
        uris = Uris(f"{self.session_id}/", query)
        return media_playlist(seg, uris, low_latency=low_latency)

    def init_section(self, version: int) -> bytes | None:
        """An init section's bytes."""
        init = self.segmenter.init_section(version)
        return None if init is None else init.data

    async def segment(self, msn: int) -> bytes | None:
        """A complete segment, waiting for the one being built; None when it is not coming."""
        seg = self.segmenter
        if seg.next_part[0] == msn:
            await self.wait(lambda: reached(seg, msn, None), 3 * seg.target_duration)
        found = seg.segment(msn)
        return None if found is None else found.data

    async def part(self, msn: int, index: int) -> bytes | memoryview | None:
        """A part, waiting for it when it is the next few to come (a preload hint)."""
        seg = self.segmenter
        found = seg.part(msn, index)
        if found is None and msn >= seg.next_part[0]:
            try:
                check_blocking(seg, msn, index)
            except BadRequest:
                return None
            await self.wait(lambda: reached(seg, msn, index), 3 * seg.target_duration)
            found = seg.part(msn, index)
        return None if found is None else found.data


class HlsRegistry:
    """The packagers, one per stream name, created by the first request and dropped when idle."""

    def __init__(self, options: HlsOptions | None = None, *, startup_timeout: float = 20.0) -> None:
        options = options or HlsOptions()
        self._options: dict[str, Any] = {
            "segment_target": options.segment_target,
            "part_target": options.part_target,
            "window": options.window,
        }
        Segmenter(**self._options)  # refuse bad options now, not at the first request
        self.idle_timeout = options.idle_timeout
        self.startup_timeout = startup_timeout
        self._packagers: dict[str, HlsPackager] = {}
        self._closing = TaskSet()  # packagers being retired

    def get(self, stream: Stream) -> HlsPackager:
        """The stream's packager, started if needed, and touched."""
        packager = self._packagers.get(stream.name)
        if packager is None or packager.closed:
            if packager is not None:
                self._retire(packager)
            packager = HlsPackager(
                stream,
                idle_timeout=self.idle_timeout,
                startup_timeout=self.startup_timeout,
                on_idle=self._retire,
                **self._options,
            )
            self._packagers[stream.name] = packager
            packager.start()
        packager.touch()
        return packager

    def find(self, stream: Stream, session_id: str) -> HlsPackager | None:
        """The running packager whose media URIs carry ``session_id`` (touched), if any."""
        packager = self._packagers.get(stream.name)
        if packager is None or packager.closed or packager.session_id != session_id:
            return None
        packager.touch()
        return packager

    @property
    def packagers(self) -> list[HlsPackager]:
        """Running packagers."""
        return [p for p in self._packagers.values() if not p.closed]

    def _retire(self, packager: HlsPackager) -> None:
        if self._packagers.get(packager.stream.name) is packager:
            del self._packagers[packager.stream.name]
        self._closing.spawn(packager.close(), name=f"hls close {packager.stream.name}")

    async def close(self) -> None:
        """Stop every packager; safe to call twice."""
        packagers, self._packagers = list(self._packagers.values()), {}
        await asyncio.gather(*(p.close() for p in packagers), self._closing.join())
