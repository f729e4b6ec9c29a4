"""bench/gpu_idle.py on a hand-made Chrome trace: per-stage busy share, and the GPU's idle time split by the host's
outermost operator on the stage's thread (what bench_pipeline.py --trace prints for the sample stage)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from gpu_idle import idle_by_host_op, summarize  # noqa: E402


def _event(cat: str, name: str, ts: float, dur: float, tid: int = 1) -> dict:
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid}


@pytest.fixture
def trace() -> dict:
    # stage "sample" 0..1000 us on thread 1; GPU busy 100-300 and 600-700 (kernels), idle 0-100, 300-600, 700-1000
    return {"traceEvents": [
        _event("user_annotation", "stage:sample", 0, 1000),
        _event("kernel", "gemm", 100, 200, tid=7),
        _event("kernel", "softmax", 600, 100, tid=7),
        _event("user_annotation", "Torch-Compiled Region: 0/0", 50, 300),   # outermost: 50-350
        _event("cpu_op", "aten::mm", 60, 100),                              # inside it: not counted again
        _event("cpu_op", "aten::item", 400, 150),                          # a synchronising read: 400-550
        _event("cpu_op", "aten::conv2d", 800, 50, tid=2),                   # another thread: ignored
        _event("user_annotation", "stage:vae_decode", 1000, 100),
        _event("kernel", "conv", 1000, 100, tid=7),
    ]}


def test_busy_share_per_stage(trace):
    summary = summarize(trace)
    assert summary["sample"]["busy_ms"] == pytest.approx(0.3)
    assert summary["sample"]["kernels"] == 2 and summary["vae_decode"]["busy_pct"] == 100.0


def test_idle_time_goes_to_the_outermost_host_operator(trace):
    idle = idle_by_host_op(trace, "sample")
    assert idle["idle_ms"] == pytest.approx(0.7)  # 100 + 300 + 300 us
    by_op = idle["by_op_ms"]
    assert by_op["Torch-Compiled Region: 0/0"] == pytest.approx(0.1)  # 50-100 and 300-350
    assert by_op["aten::item"] == pytest.approx(0.15)  # 400-550
    assert "aten::mm" not in by_op and "aten::conv2d" not in by_op
    assert by_op["(no operator)"] == pytest.approx(0.45)  # 0-50, 350-400, 550-600, 700-1000
    assert idle_by_host_op(trace, "vae_decode")["idle_ms"] == 0.0
