"""Give the C heap's free pages back to the system (glibc's ``malloc_trim``).

A compile and every window free many mid-sized host buffers; glibc keeps the freed pages resident below live
allocations, so the process's RSS stays at its high-water mark. Trimming returns them without touching live data.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Callable, Optional


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim`` from the process's own C library; None elsewhere (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # a private CDLL handle: setting its types changes nothing shared
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def can_trim_host_heap() -> bool:
    """Whether this process's C library can give free heap pages back (glibc on Linux)."""
    return _malloc_trim() is not None


def trim_host_heap() -> bool:
    """Return the heap's free pages to the system; True when some memory was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
