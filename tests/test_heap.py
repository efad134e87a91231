"""bridge/heap.py: the recorder's per-clip trim gives freed heap pages back, and the C heap's
figures (in /api/health) count what malloc holds."""

from __future__ import annotations

import platform

import pytest

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
