"""Give the C heap's free pages back to the system (glibc's ``malloc_trim``).

A compile and every window free many mid-sized host buffers; glibc keeps the freed pages resident below live
allocations, so the process's RSS stays at its high-water mark. Trimming returns them without touching live data.
"""

from __future__ import annotations

import ctypes

from ..libc import libc_function


def _malloc_trim():
    """glibc's ``malloc_trim``; None elsewhere (macOS, Windows, musl)."""
    return libc_function("malloc_trim", (ctypes.c_size_t,))


def can_trim_host_heap() -> bool:
    """Whether this process's C library can give free heap pages back (glibc on Linux)."""
    return _malloc_trim() is not None


def trim_host_heap() -> bool:
    """Return the heap's free pages to the system; True when some memory was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
