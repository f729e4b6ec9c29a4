"""Let go of a memory-mapped checkpoint's pages once their tensor has been converted.

``torch.load(mmap=True)`` maps the whole file; every page read while converting the weights stays in the process's
resident set until the last tensor is freed, so loading the 5 GB fp32 U-Net peaked at the whole file on top of the
converted weights. Dropping each tensor's pages after its copy is made keeps one tensor's pages resident at a time.
Only pages inside a private or shared mapping of that very file are dropped (they read back from the file if touched
again); anything else, and every system but Linux, is left alone.
"""

from __future__ import annotations

import ctypes
import mmap
import os

import torch

from ..libc import libc_function

_MADV_DONTNEED = 4  # Linux


def _madvise():
    return libc_function("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int))


def _file_ranges(path: str) -> list[tuple[int, int]]:
    """Address ranges where this process maps ``path`` (from /proc/self/maps; empty where there is none)."""
    try:
        target = os.stat(path)
        real = os.path.realpath(path)
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6:
            continue
        major, minor = (int(x, 16) for x in parts[3].split(":"))
        same_inode = int(parts[4]) == target.st_ino and os.makedev(major, minor) == target.st_dev
        if same_inode or parts[5].rstrip("\n") == real:  # by path too: overlay filesystems show another device
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((lo, hi))
    return ranges


class MappedCheckpoint:
    """The mappings of one checkpoint file in this process, read once after the file was loaded. Use it while the
    loaded tensors are alive: the mapping lives as long as they do, and its addresses could be reused after."""

    def __init__(self, path: str | os.PathLike):
        self.ranges = _file_ranges(os.fspath(path)) if _madvise() is not None else []

    def release(self, tensor: torch.Tensor) -> int:
        """Drop the whole pages of ``tensor``'s storage from the resident set when they lie in a mapping of the
        file; returns the bytes dropped (0 when the storage is not the file's, e.g. a converted copy)."""
        if not self.ranges or tensor.device.type != "cpu":
            return 0
        storage = tensor.untyped_storage()
        start, end = storage.data_ptr(), storage.data_ptr() + storage.nbytes()
        page = mmap.PAGESIZE
        lo, hi = -(-start // page) * page, end // page * page  # whole pages only: a neighbour keeps its own
        if hi <= lo or not any(a <= lo and hi <= b for a, b in self.ranges):
            return 0
        return hi - lo if _madvise()(lo, hi - lo, _MADV_DONTNEED) == 0 else 0
