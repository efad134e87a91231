"""The recorder's per-clip heap trim (bridge/record/heap.py) gives freed heap pages back."""

from __future__ import annotations

import platform

import pytest

from bridge.record.heap import release_free_heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_holes_are_given_back() -> None:
    # 64 KiB blocks stay below malloc's mmap threshold, so they live in the heap; keeping every
    # other one leaves holes that free() alone never returns, as a clip's buffers do.
    blocks = [bytes(64 << 10) for _ in range(320)]
    kept = blocks[::2]
    del blocks
    assert release_free_heap()
    assert len(kept) == 160
