"""bridge/heap.py: the recorder's per-clip trim gives freed heap pages back, and the C heap's
figures (in /api/health) count what malloc holds."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from bridge import heap
from bridge.heap import heap_usage, release_free_heap

from .serve_util import BridgeFactory, get_json


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_holes_are_given_back() -> None:
    # 64 KiB blocks stay below malloc's mmap threshold, so they live in the heap; keeping every
    # other one leaves holes that free() alone never returns, as a clip's buffers do.
    blocks = [bytes(64 << 10) for _ in range(320)]
    kept = blocks[::2]
    del blocks
    assert release_free_heap()
    assert len(kept) == 160


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallinfo2 is glibc's")
def test_heap_usage_counts_what_is_held_and_what_is_freed() -> None:
    before = heap_usage()
    assert before is not None
    # 1 MiB blocks are above the default mmap threshold and 256 KiB ones below it: the in-use
    # figure has to count both kinds, or a leak of either would hide.
    held = [bytearray(1 << 20) for _ in range(16)] + [bytearray(256 << 10) for _ in range(64)]
    during = heap_usage()
    assert during is not None
    assert during.in_use - before.in_use >= 30 << 20
    del held
    after = heap_usage()
    assert after is not None
    assert during.in_use - after.in_use >= 30 << 20


async def test_health_reports_the_c_heap(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await get_json(bridge.http_url + "api/health")
    assert status == 200
    if platform.libc_ver()[0] != "glibc":
        assert body["heap"] is None
        return
    assert set(body["heap"]) == {"in_use", "free"}
    assert body["heap"]["in_use"] > 0
    assert body["heap"]["free"] >= 0


# Run in a fresh interpreter: pytest's own threads already hold arenas, and a thread keeps its
# arena whatever is set later.
_TUNED = r"""
import ctypes, sys, threading
from bridge import heap

tune = sys.argv[1] == "tuned"
if tune:
    assert heap.tune_heap()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def mapped() -> int:
    return heap._mallinfo2()().hblkhd

# glibc raises its mmap threshold to the size of a freed mapped block, after which blocks of
# that size come from the arenas and fragment them; a fixed threshold keeps mapping them.
libc.free(libc.malloc(4 << 20))
before = mapped()
block = libc.malloc(512 << 10)
print("mapped", mapped() - before >= 512 << 10)
libc.free(block)

def arenas() -> int:
    # A thread arena is a heap aligned to 64 MiB; the main arena is [heap].
    count = 0
    with open("/proc/self/maps") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) == 5 and int(fields[0].split("-")[0], 16) % (64 << 20) == 0:
                count += 1
    return count

start = arenas()
def allocate() -> None:
    blocks = [libc.malloc(1024) for _ in range(64)]
    for b in blocks:
        libc.free(b)
worker = threading.Thread(target=allocate)
worker.start()
worker.join()
print("new_arena", arenas() > start)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("mode", ["tuned", "stock"])
def test_tuned_heap_has_one_arena_and_maps_big_blocks(mode: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _TUNED, mode],
        capture_output=True, text=True, check=True, env=env, timeout=60,
    ).stdout.split("\n")  # fmt: skip
    tuned = mode == "tuned"
    # The stock run is the control: it shows each check can fail.
    assert f"mapped {tuned}" in out
    assert f"new_arena {not tuned}" in out


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_users_malloc_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(heap, "_mallopt", lambda: lambda p, v: calls.append((p, v)) or 1)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert heap.tune_heap()
    assert calls == [(heap._M_MMAP_THRESHOLD, heap._MMAP_THRESHOLD)]
