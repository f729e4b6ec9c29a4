"""How busy the GPU was in each timed stage of a run, from a torch.profiler Chrome trace.

``bench_pipeline.py --trace DIR`` records one extra, traced run of each case (after the timed one, so the
profiler's cost stays out of the timings) with each stage marked ``stage:<name>``, and prints this summary. A stage
whose GPU is idle most of its wall time while its kernels are short is bound by the host launching them (CUDA
graphs help there); one that is busy is bound by the kernels. ``idle_by_host_op`` then says what the host was
doing while the GPU sat idle inside a stage: the outermost operator running on the stage's thread (a compiled
region, an eager aten op, a synchronising copy), or none (Python between operators). Standalone:

    python bench/gpu_idle.py trace.json [STAGE ...]
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import defaultdict

DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
HOST_CATEGORIES = ("cpu_op", "user_annotation", "cuda_runtime", "cuda_driver")


def _events(trace: dict | list) -> list[dict]:
    return trace.get("traceEvents", []) if isinstance(trace, dict) else trace


def _device_busy(events: list[dict]) -> list[tuple[float, float]]:
    """When the GPU worked (any stream), as merged, sorted intervals."""
    return _union([(e["ts"], e["ts"] + e.get("dur", 0)) for e in events
                   if e.get("cat") in DEVICE_CATEGORIES and "ts" in e])


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _overlap(busy: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in busy)


def summarize(trace: dict) -> dict:
    """Per stage: wall ms, GPU-busy ms (device work of any stream, merged), kernels started and their mean length."""
    events = _events(trace)
    kernels = sorted((e["ts"], e.get("dur", 0)) for e in events if e.get("cat") == "kernel" and "ts" in e)
    busy = _device_busy(events)
    stages: dict[str, dict] = defaultdict(lambda: {"wall_ms": 0.0, "busy_ms": 0.0, "kernels": 0, "kernel_us": 0.0})
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "user_annotation" or not name.startswith("stage:"):
            continue
        start, end = e["ts"], e["ts"] + e.get("dur", 0)
        row = stages[name[len("stage:"):]]
        row["wall_ms"] += (end - start) / 1e3
        row["busy_ms"] += _overlap(busy, start, end) / 1e3
        inside = [d for ts, d in kernels if start <= ts < end]
        row["kernels"] += len(inside)
        row["kernel_us"] += sum(inside)
    out = {}
    for name, row in stages.items():
        out[name] = {"wall_ms": round(row["wall_ms"], 1), "busy_ms": round(row["busy_ms"], 1),
                     "busy_pct": round(100 * row["busy_ms"] / max(row["wall_ms"], 1e-9), 1),
                     "kernels": row["kernels"],
                     "mean_kernel_us": round(row["kernel_us"] / max(row["kernels"], 1), 1)}
    if busy:
        span = (min(a for a, _ in busy), max(b for _, b in busy))
        out["(whole trace)"] = {"wall_ms": round((span[1] - span[0]) / 1e3, 1),
                                "busy_ms": round(sum(b - a for a, b in busy) / 1e3, 1),
                                "kernels": len(kernels)}
    return out


def _complement(busy: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """The parts of [start, end) that no busy interval covers (``busy`` merged and sorted)."""
    gaps, at = [], start
    for a, b in busy:
        if b <= at:
            continue
        if a >= end:
            break
        if a > at:
            gaps.append((at, a))
        at = max(at, b)
    if at < end:
        gaps.append((at, end))
    return gaps


def idle_by_host_op(trace: dict, stage: str, top: int = 12) -> dict:
    """GPU-idle ms inside ``stage``, split by the outermost host operator running then on the stage's thread.

    ``(no operator)`` is idle time while no operator ran (Python, numpy, waiting on a queue)."""
    events = _events(trace)
    busy = _device_busy(events)
    marks = [e for e in events if e.get("cat") == "user_annotation" and e.get("name") == f"stage:{stage}"]
    host = [e for e in events if e.get("cat") in HOST_CATEGORIES and "ts" in e
            and not str(e.get("name", "")).startswith("stage:")]
    totals: dict[str, float] = defaultdict(float)
    idle_total = 0.0
    for mark in marks:
        start, end, tid = mark["ts"], mark["ts"] + mark.get("dur", 0), mark.get("tid")
        gaps = _complement(busy, start, end)
        idle_total += sum(b - a for a, b in gaps)
        ops = sorted((e["ts"], -e.get("dur", 0), e.get("name", "?")) for e in host
                     if e.get("tid") == tid and start <= e["ts"] < end)
        outer, reach = [], start
        for ts, neg_dur, name in ops:  # sorted by start, longest first: an op starting past ``reach`` is outermost
            if ts >= reach:
                outer.append((ts, ts - neg_dur, name))
                reach = ts - neg_dur
        g = 0
        for a, b, name in outer:  # both lists sorted and disjoint: one pass
            while g < len(gaps) and gaps[g][1] <= a:
                g += 1
            k = g
            while k < len(gaps) and gaps[k][0] < b:
                totals[name] += min(b, gaps[k][1]) - max(a, gaps[k][0])
                k += 1
    covered = sum(totals.values())
    totals["(no operator)"] += idle_total - covered
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return {"idle_ms": round(idle_total / 1e3, 3), "by_op_ms": {name: round(us / 1e3, 3) for name, us in ranked}}


def print_idle(stage: str, idle: dict) -> None:
    print(f"GPU idle in {stage}: {idle['idle_ms']:.1f} ms, by the host's outermost operator then:")
    for name, ms in idle["by_op_ms"].items():
        print(f"  {ms:9.1f} ms  {name[:100]}")


def print_summary(summary: dict) -> None:
    print(f"{'stage':14s} {'wall ms':>9s} {'GPU busy ms':>11s} {'busy %':>7s} {'kernels':>8s} {'mean us':>8s}")
    for name, row in summary.items():
        print(f"{name:14s} {row['wall_ms']:9.1f} {row['busy_ms']:11.1f} {row.get('busy_pct', 0):7.1f} "
              f"{row['kernels']:8d} {row.get('mean_kernel_us', 0):8.1f}")


if __name__ == "__main__":
    opener = gzip.open if sys.argv[1].endswith(".gz") else open
    with opener(sys.argv[1], "rt") as f:
        loaded = json.load(f)
    print_summary(summarize(loaded))
    for name in sys.argv[2:]:
        print_idle(name, idle_by_host_op(loaded, name))
