"""Fields of this process's /proc/self/status (Linux), for the benchmarks' host-memory numbers."""

from __future__ import annotations


def status_gib(*names: str) -> dict[str, float]:
    """The named kB fields (VmRSS, VmHWM, RssAnon, ...) in GiB; fields this kernel lacks are left out."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in names:
                out[name] = int(value.split()[0]) / 2**20
    return out
