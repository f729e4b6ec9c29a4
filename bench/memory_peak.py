"""What holds the CUDA memory at the moment of peak *reserved* memory, from an allocator snapshot.

    python bench/memory_peak.py memory_256_on.pickle [--top 25] [--stacks 5]

Reads a snapshot written by ``torch.cuda.memory._dump_snapshot`` (``bench_pipeline.py --memory-snapshot``), replays
its trace (segment and block allocations and frees), finds the event where the reserved total peaks, and prints
the blocks live then, largest first, with the first stack frame inside this repository (and the whole Python
stack of the ``--stacks`` largest), plus how much of the reserved memory was free (fragmentation). Memory allocated before recording started (the weights) has no trace
entries; it is reported as the gap between the snapshot's reserved total and the replayed one.
"""

from __future__ import annotations

import argparse
import pickle
from collections import Counter

_OWN = ("latentsync", "bench", "nodes")


def _where(frames: list[dict]) -> str:
    """The innermost frame in this repository (else the innermost frame) as file:line name."""
    for f in frames:
        name = f.get("filename", "")
        if any(f"/{p}/" in name for p in _OWN) and "site-packages" not in name:
            return f"{name.split('/')[-2]}/{name.split('/')[-1]}:{f.get('line')} {f.get('name')}"
    if frames:
        f = frames[0]
        return f"{f.get('filename', '?').split('/')[-1]}:{f.get('line')} {f.get('name')}"
    return "?"


def summarize(snapshot: dict, top: int = 25) -> dict:
    """Replay the first device's trace; return the peak-reserved event's live blocks and totals (bytes)."""
    trace = next((t for t in snapshot.get("device_traces", []) if t), [])
    reserved = allocated = 0
    live: dict[int, tuple[int, str, list]] = {}
    peak: dict = {"reserved": -1}
    pending = False
    for i, e in enumerate(trace):
        action, size = e["action"], e.get("size", 0)
        if action in ("segment_alloc", "segment_map"):
            reserved += size
        elif action in ("segment_free", "segment_unmap"):
            reserved -= size
        elif action == "alloc":
            allocated += size
            live[e["addr"]] = (size, _where(e.get("frames", [])), e.get("frames", []))
        elif action == "free_completed":
            allocated -= size
            live.pop(e["addr"], None)
        if reserved > peak["reserved"]:  # a new segment: the peak's live set includes the request that made it
            peak, pending = {"reserved": reserved, "allocated": allocated, "index": i, "live": dict(live)}, True
        elif pending and action == "alloc":
            peak.update(allocated=allocated, index=i, live=dict(live))
            pending = False
    segments = snapshot.get("segments", [])
    end_reserved = sum(s["total_size"] for s in segments)
    end_allocated = sum(b["size"] for s in segments for b in s.get("blocks", []) if b.get("state") == "active_allocated")
    offset = end_reserved - reserved  # segments that existed before recording began
    alloc_offset = end_allocated - allocated
    by_site: Counter = Counter()
    for size, where, _ in peak.get("live", {}).values():
        by_site[where] += size
    return {"events": len(trace), "peak_reserved_replayed": peak["reserved"], "reserved_before_recording": offset,
            "allocated_at_peak": peak.get("allocated", 0) + alloc_offset, "peak_index": peak.get("index"),
            "largest_live": sorted(peak.get("live", {}).values(), key=lambda b: -b[0])[:top],
            "by_site": by_site.most_common(top)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("snapshot")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--stacks", type=int, default=5, help="print the whole stack of this many largest blocks")
    args = ap.parse_args()
    with open(args.snapshot, "rb") as f:
        s = summarize(pickle.load(f), args.top)
    gib = 2**30
    print(f"{s['events']} events; peak at event {s['peak_index']}: reserved in trace {s['peak_reserved_replayed'] / gib:.3f}"
          f" GiB + {s['reserved_before_recording'] / gib:.3f} GiB reserved before recording; allocated then "
          f"{s['allocated_at_peak'] / gib:.3f} GiB")
    print("largest live blocks (MiB, where):")
    for i, (size, where, frames) in enumerate(s["largest_live"]):
        print(f"  {size / 2**20:9.1f}  {where}")
        if i < args.stacks:
            for f in frames:
                print(f"              {f.get('filename', '?')}:{f.get('line')} {f.get('name')}")
    print("live bytes by site (MiB):")
    for where, size in s["by_site"]:
        print(f"  {size / 2**20:9.1f}  {where}")


if __name__ == "__main__":
    main()
