"""A one-shot consumer of a hub stream: hand a sink every packet for a while, then stop.

``skybell-bridge live`` records through it. It reads the hub the way every output does, by
iterating a :class:`~bridge.media.buffers.Subscriber`, so it starts at a keyframe and skips
ahead like the others when it falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from bridge.media.buffers import Subscriber
from bridge.media.packet import MediaPacket

__all__ = ["capture"]


async def capture(
    sub: Subscriber,
    sink: Callable[[MediaPacket], None],
    *,
    duration: float,
    limit: float,
    clock: Callable[[], float] = time.monotonic,
) -> float | None:
    """Feed ``sink`` until ``duration`` seconds after the first video packet; its ``clock`` time.

    None when ``limit`` seconds pass before that (no video, or too late to record all of
    ``duration``) or the stream ends first. The packet that arrives once ``duration`` is up is
    the last one fed. Should the stream stall after its first picture, the capture counts as
    done if ``duration`` has passed by the time ``limit`` runs out.
    """
    first: float | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            async for packet in sub:
                if first is None and packet.kind == "video":
                    first = clock()
                sink(packet)
                if first is not None and clock() - first >= duration:
                    return first
    if first is not None and clock() - first >= duration:
        return first
    return None
