"""The C heap: how much glibc malloc holds in use and free, and giving free memory back.

Used by the recorder (a trim per finished clip) and by ``/api/health`` (``heap_usage``), so it
lives outside any one package. ``heap_usage`` tells fragmentation from a leak: a leak grows the
in-use bytes, fragmentation grows the free bytes while in-use stays flat.

Why the serve process tunes malloc (``tune_heap``) and the recorder trims after a clip:

glibc gives each thread that allocates its own arena (up to 8 per core), and raises its mmap
threshold to the size of any large block freed, after which such blocks come from the arenas
too. FFmpeg's decoder, encoder and muxer threads allocate picture- and fragment-sized blocks,
free them on other threads, and glibc keeps what was freed: only the top of an arena is ever
given back. In the 15-minute soak (``scripts/bench/soak.py``, RSS by kind of mapping from
/proc/PID/smaps) the stock settings held 23 MB free after 14 minutes, growing by 35 MB an hour,
most of it in thread arenas (+31 MB/hour), and a resolution change added 9 MB at once. With one
arena and a fixed 128 KiB mmap threshold, set at start before any worker thread exists, malloc
held 2 to 3 MB free for the whole run, RSS started 25 MB lower and the resolution change added
nothing. The same run with jemalloc preloaded did no better (RSS 8 MB above the tuned glibc,
growing at least as fast), so the bridge needs no allocator of its own. One arena costs little here: the bridge's own threads hold the
GIL while they allocate, and FFmpeg's buffer pools keep per-frame allocations rare.

A clip still leaves holes in the heap (its FFmpeg buffers: muxer fragments, the AAC encoder,
the thumbnail's picture), so the recorder trims once per finished clip (a few milliseconds, off
the event loop), not on a timer: a clip is what fragments the heap. Measured in-process, 20
doorbell presses with one clip each: RSS +2.5 MB with the trim, +11 MB without.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["HeapUsage", "heap_usage", "release_free_heap", "tune_heap"]

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


def _libc_function(name: str, argtypes: list[Any], restype: Any) -> Callable[..., Any] | None:
    """A function of the C library, typed; None where it has none (glibc-only ones: musl and
    macOS lack mallinfo2, malloc_trim and mallopt's glibc parameters)."""
    libc = _libc()
    function = getattr(libc, name, None) if libc is not None else None
    if function is None:
        return None
    function.argtypes = argtypes
    function.restype = restype
    typed: Callable[..., Any] = function
    return typed


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    return _libc_function("mallinfo2", [], _MallInfo2)


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
    return _libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)


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


# mallopt's parameter numbers, from glibc's <malloc.h>.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks this big or bigger get their own mapping, returned whole on free. Setting it also turns
# off glibc's raising of the threshold, which is what moved picture buffers into the arenas.
_MMAP_THRESHOLD = 128 << 10


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    return _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)


def tune_heap() -> bool:
    """One malloc arena and a fixed mmap threshold, for a long-running process (see above).

    Call before any worker thread starts: a thread that already has an arena keeps it. False
    where the C library has no ``mallopt``. A user's own MALLOC_ARENA_MAX or
    MALLOC_MMAP_THRESHOLD_ in the environment wins: they know their machine.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, 1)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    return True
