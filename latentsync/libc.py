"""Functions of the process's own C library (glibc on Linux), looked up once; None where there is no such function."""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any, Callable, Optional


@functools.lru_cache(maxsize=None)
def libc_function(name: str, argtypes: tuple[Any, ...], restype: Any = ctypes.c_int) -> Optional[Callable[..., Any]]:
    """``name`` from the C library this process runs on, typed; None off Linux or where the library lacks it (musl
    has no ``malloc_trim``). It is found through a private handle, so setting its types changes nothing shared."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = list(argtypes), restype
    return fn
