"""The host heap trim (glibc's malloc_trim): freed pages below a live allocation leave the resident set."""

from __future__ import annotations

import numpy as np
import pytest

from latentsync.pipeline.host_heap import can_trim_host_heap, trim_host_heap

MIB = 1 << 20


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not can_trim_host_heap(), reason="glibc's malloc_trim only (Linux)")
def test_freed_heap_pages_under_a_live_block_are_given_back():
    # 96 KiB blocks stay on the heap (under glibc's mmap threshold); the last one pins the heap's top, so free()
    # alone cannot shrink it and the freed pages below it stay resident until trimmed.
    blocks = [np.ones(96 * 1024, np.uint8) for _ in range(2048)]
    pin = blocks[-1]
    del blocks[:-1]
    held = resident_bytes()
    assert trim_host_heap()
    released = held - resident_bytes()
    assert released > 100 * MIB, f"{released / MIB:.0f} MiB given back of ~192 MiB freed"
    assert pin.sum() == pin.size  # the live block is untouched
