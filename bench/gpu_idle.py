"""How busy the GPU was in each timed stage of a run, from a torch.profiler Chrome trace.

``bench_pipeline.py --trace DIR`` records one extra, traced run of each case (after the timed one, so the
profiler's cost stays out of the timings) with each stage marked ``stage:<name>``, and prints this summary. A stage
whose GPU is idle most of its wall time while its kernels are short is bound by the host launching them (CUDA
graphs help there); one that is busy is bound by the kernels. Standalone:

    python bench/gpu_idle.py trace.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


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
    events = trace.get("traceEvents", trace if isinstance(trace, list) else [])
    device = [(e["ts"], e["ts"] + e.get("dur", 0)) for e in events if e.get("cat") in DEVICE_CATEGORIES and "ts" in e]
    kernels = sorted((e["ts"], e.get("dur", 0)) for e in events if e.get("cat") == "kernel" and "ts" in e)
    busy = _union(device)
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


def print_summary(summary: dict) -> None:
    print(f"{'stage':14s} {'wall ms':>9s} {'GPU busy ms':>11s} {'busy %':>7s} {'kernels':>8s} {'mean us':>8s}")
    for name, row in summary.items():
        print(f"{name:14s} {row['wall_ms']:9.1f} {row['busy_ms']:11.1f} {row.get('busy_pct', 0):7.1f} "
              f"{row['kernels']:8d} {row.get('mean_kernel_us', 0):8.1f}")


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print_summary(summarize(json.load(f)))
