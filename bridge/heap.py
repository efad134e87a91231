"""The C heap: how much glibc malloc holds in use and free, and giving free memory back.

Used by the recorder (a trim per finished clip) and by ``/api/health`` (``heap_usage``), so it
lives outside any one package. ``heap_usage`` tells fragmentation from a leak: a leak grows the
in-use bytes, fragmentation grows the free bytes while in-use stays flat.

Why the recorder trims after a clip:

Measured in-process against the simulator (20 doorbell presses, one clip each): the bytes
malloc has handed out stay flat (mallinfo2's in-use total moved 32.2 -> 32.6 MB) while its free
total grew 16 -> 26 MB and RSS +11 MB; ``malloc_trim(0)`` then brought RSS back below where it
started. So nothing is leaked: a clip's FFmpeg buffers (muxer fragments, the AAC encoder, the
thumbnail's picture) are freed, but glibc keeps the freed pages in its per-thread arenas, where
only the top of an arena is ever given back. Starting no FFmpeg worker threads for thumbnails,
a fixed mmap threshold (MALLOC_MMAP_THRESHOLD_: less memory overall, growth still +7 MB) and
MALLOC_ARENA_MAX=2 did not stop it. So the recorder trims once per finished clip (a few
milliseconds, off the event loop), not on a timer: a clip is what fragments the heap. Same 20
presses with it: RSS +2.5 MB instead of +11 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["HeapUsage", "heap_usage", "release_free_heap"]

_LOGGER = logging.getLogger(__name__)


class HeapUsage(NamedTuple):
    """Bytes malloc has handed out (arenas and mmapped blocks) and bytes it holds free."""

    in_use: int
    free: int


class _MallInfo2(ctypes.Structure):
    # glibc >= 2.33's struct mallinfo2: every field a size_t (mallinfo's ints wrap above 2 GiB).
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    libc = _libc()
    try:
        info = libc.mallinfo2 if libc is not None else None  # glibc >= 2.33 only
    except AttributeError:
        return None
    if info is None:
        return None
    info.argtypes = []
    info.restype = _MallInfo2
    return info


def heap_usage() -> HeapUsage | None:
    """malloc's in-use and free bytes summed over all arenas; None where not glibc."""
    info = _mallinfo2()
    if info is None:
        return None
    m = info()
    # uordblks counts arena chunks in use; hblkhd the big blocks malloc mmapped on its own.
    return HeapUsage(in_use=m.uordblks + m.hblkhd, free=m.fordblks)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    try:
        trim = libc.malloc_trim if libc is not None else None  # glibc only: musl, macOS have none
    except AttributeError:
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return free heap pages to the system (blocking: call from a thread).

    False where the C library has no ``malloc_trim``, or when nothing could be returned.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    released = bool(trim(0))
    _LOGGER.debug("malloc_trim: %s", "released memory" if released else "nothing to release")
    return released
