"""U-Net speed study on a GPU: eager vs CUDA graph vs torch.compile, 1..K chunks per call, and a kernel breakdown.

Times one full-size (random-weight) forward per variant with CUDA events (median of several replays), reports
TFLOP/s from FlopCounterMode and the share of kernel time by kind (GEMM / conv / attention / the rest) from the
profiler; eager rows also with the conditional audio only (the sampler's call: the unconditional half's audio
cross-attention skipped; TFLOP/s there counts the full work). Writes JSON to --json. Example (GPU machine,
repository root):

    python bench/unet_speed.py --res 256,512 --chunks 1,2,4 --compile --json $OUT/unet_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tools" / "device_checks"))  # check_unet_device: random_model, count_flops

from check_unet_device import count_flops, random_model  # noqa: E402

from latentsync.configs import unet_config  # noqa: E402
from latentsync.models.unet import DeepCacheState  # noqa: E402

FRAMES = 16


def inputs(res: int, chunks: int, device, dtype, channels_last: bool):
    h = res // 8
    batch = 2 * chunks
    sample = torch.randn(batch, 13, FRAMES, h, h, device=device, dtype=dtype)
    if channels_last:
        sample = sample.contiguous(memory_format=torch.channels_last_3d)
    audio = torch.randn(batch, FRAMES, 50, 384, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    return sample, t, audio


def median_ms(fn, iters: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def graphed(fn):
    """Capture ``fn`` (static inputs) in a CUDA graph; returns a replay callable."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def kernel_breakdown(fn) -> dict:
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kinds = {"gemm": 0.0, "conv": 0.0, "attention": 0.0, "norm": 0.0, "copy/transpose": 0.0, "other": 0.0}
    top = []
    count = 0
    for evt in prof.key_averages():
        us = evt.self_device_time_total if hasattr(evt, "self_device_time_total") else evt.self_cuda_time_total
        if us <= 0:
            continue
        count += evt.count
        name = evt.key.lower()
        if any(k in name for k in ("fmha", "flash", "attention", "sdpa", "cudnn_generated_fort_native_sdpa")):
            kind = "attention"
        elif any(k in name for k in ("conv", "implicit", "dgrad", "wgrad", "fprop", "xmma_fprop")):
            kind = "conv"
        elif any(k in name for k in ("gemm", "cutlass", "sm90_xmma", "cublas", "nvjet", "matmul")):
            kind = "gemm"
        elif any(k in name for k in ("norm", "welford")):
            kind = "norm"
        elif any(k in name for k in ("copy", "transpose", "cat", "nchw", "nhwc")):
            kind = "copy/transpose"
        else:
            kind = "other"
        kinds[kind] += us / 1000
        top.append((us / 1000, evt.count, evt.key[:90]))
    top.sort(reverse=True)
    return {"ms_by_kind": kinds, "kernels": count, "top": top[:25]}


def compiled_case(model, res: int, chunks: int, flops_of: dict, dev, dtype, **compile_kw):
    """A fresh ``torch.compile`` of ``model``, channels-last inputs for ``chunks`` chunks at ``res`` px, their FLOPs."""
    torch._dynamo.reset()
    flops = flops_of[res] * chunks if res in flops_of else None
    return torch.compile(model, dynamic=False, **compile_kw), inputs(res, chunks, dev, dtype, True), flops


# --tuned: Inductor settings that search kernel configurations at compile time (longer compiles, maybe faster kernels)
TUNED_VARIANTS = {
    "plain": {},  # the shipped settings compiled again: does a variant's place in the run change its time?
    "coordesc": {"options": {"coordinate_descent_tuning": True}},  # pointwise / reduction block sizes
    "autotune": {"mode": "max-autotune-no-cudagraphs"},  # also GEMM / conv templates against cuBLAS / cuDNN
}


def first_call(fn):
    """``fn()``'s result and the seconds it took to the device's end (a compiled model's first call compiles)."""
    c0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - c0


def compiled_variant_rows(compiled, inputs_: tuple, ref: torch.Tensor, *, res: int, chunks: int, flops, name: str,
                          error_key: str, row, breakdown: dict, **extra) -> None:
    """A compiled variant's rows: its first call (the compile), its full step's time and rel-L2 against ``ref``
    (under ``error_key``), its kernels, and its DeepCache step's time."""
    sample, t, audio = inputs_
    with torch.inference_mode():
        out, compile_s = first_call(lambda: compiled(sample, t, audio))
        err = ((out.float() - ref).norm() / ref.norm()).item()
        ms = median_ms(lambda: compiled(sample, t, audio))
        row(res=res, chunks=chunks, variant=f"compile-cl-{name}", ms=ms, ms_per_chunk=ms / chunks, compile_s=compile_s,
            tflops=(flops / ms / 1e9) if flops else None, **{error_key: err}, **extra)
        breakdown[f"{res}-compile-cl-{name}-k{chunks}"] = kernel_breakdown(lambda: compiled(sample, t, audio))
        state = DeepCacheState()
        compiled(sample, t, audio, deepcache=state)
        ms = median_ms(lambda: compiled(sample, t, audio, deepcache=state))
        row(res=res, chunks=chunks, variant=f"compile-cached-cl-{name}", ms=ms, ms_per_chunk=ms / chunks)


def tuned_rows(model, variant: str, cases: str, flops_of: dict, row, breakdown: dict, dev, dtype) -> None:
    """The compiled U-Net under one of :data:`TUNED_VARIANTS`: compile time, step time, kernels, DeepCache step,
    and its output's rel-L2 against the eager model."""
    for res, chunks in [tuple(int(v) for v in c.split(":")) for c in cases.split(",")]:
        compiled, case_inputs, flops = compiled_case(model, res, chunks, flops_of, dev, dtype, **TUNED_VARIANTS[variant])
        with torch.inference_mode():
            ref = model(*case_inputs).float()
        compiled_variant_rows(compiled, case_inputs, ref, res=res, chunks=chunks, flops=flops, name=variant,
                              error_key="rel_l2_vs_eager", row=row, breakdown=breakdown)
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", default="256,512")
    ap.add_argument("--chunks", default="1,2,4")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (+ CUDA graph)")
    ap.add_argument("--compile-budget", type=float, default=300.0, help="skip compile variants after this many s")
    ap.add_argument("--compile-cases", default="256:2,512:1", help="res:chunks list for --compile")
    ap.add_argument("--skip-eager", action="store_true")
    ap.add_argument("--small-temporal", action="store_true", help="explicit-score temporal attention")
    ap.add_argument("--tuned", default="", help=f"also time tuned compiles: of {','.join(TUNED_VARIANTS)}")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tuned = [v for v in args.tuned.split(",") if v]
    unknown = set(tuned) - set(TUNED_VARIANTS)
    if unknown:
        ap.error(f"--tuned: unknown {sorted(unknown)}; choose from {sorted(TUNED_VARIANTS)}")
    dev, dtype = torch.device("cuda"), torch.float16
    torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    model = random_model(unet_config("stage2"), dev, dtype)
    if args.small_temporal:
        from latentsync.models.motion import TemporalAttention

        for m in model.modules():
            if isinstance(m, TemporalAttention):
                m.small_sequence_kernel = True
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": [], "breakdown": {}}

    def row(**kw):
        results["rows"].append(kw)
        print(json.dumps(kw), flush=True)

    flops_of = {}
    for res in [int(r) for r in args.res.split(",")]:
        with torch.inference_mode():
            flops1 = flops_of[res] = count_flops(model, inputs(res, 1, dev, dtype, False), {})
        if args.skip_eager:
            continue
        for chunks in [int(c) for c in args.chunks.split(",")]:
            if res >= 512 and chunks > 2:
                continue
            flops = flops1 * chunks
            for cl in (False, True):
                sample, t, audio = inputs(res, chunks, dev, dtype, cl)
                with torch.inference_mode():
                    ms = median_ms(lambda: model(sample, t, audio))
                    row(res=res, chunks=chunks, variant="eager" + ("-cl" if cl else ""), ms=ms,
                        ms_per_chunk=ms / chunks, tflops=flops / ms / 1e9)
                    if not cl:
                        continue
                    cond_audio = audio[chunks:]  # the sampler's call: CFG's zero-audio half adds to_out's bias only
                    ms = median_ms(lambda: model(sample, t, cond_audio))
                    row(res=res, chunks=chunks, variant="eager-cl-uncond-skip", ms=ms, ms_per_chunk=ms / chunks,
                        tflops=flops / ms / 1e9)
                    replay = graphed(lambda: model(sample, t, audio))
                    ms = median_ms(replay)
                    row(res=res, chunks=chunks, variant="graph-cl", ms=ms, ms_per_chunk=ms / chunks,
                        tflops=flops / ms / 1e9)
                    state = DeepCacheState()
                    model(sample, t, audio, deepcache=state)
                    ms = median_ms(lambda: model(sample, t, audio, deepcache=state))
                    row(res=res, chunks=chunks, variant="deepcache-cached-eager-cl", ms=ms, ms_per_chunk=ms / chunks)
                    replay = graphed(lambda: model(sample, t, audio, deepcache=state))
                    ms = median_ms(replay)
                    row(res=res, chunks=chunks, variant="deepcache-cached-graph-cl", ms=ms, ms_per_chunk=ms / chunks)
                    if chunks == 1:
                        results["breakdown"][f"{res}-eager-cl-k1"] = kernel_breakdown(lambda: model(sample, t, audio))
                    replay = state = None
                torch.cuda.empty_cache()
    results["eager_seconds"] = time.perf_counter() - started

    if args.compile:
        for res, chunks in [tuple(int(v) for v in c.split(":")) for c in args.compile_cases.split(",")]:
            if time.perf_counter() - started > args.compile_budget + results["eager_seconds"]:
                row(res=res, chunks=chunks, variant="compile", skipped="budget")
                continue
            compiled, (sample, t, audio), flops = compiled_case(model, res, chunks, flops_of, dev, dtype)
            with torch.inference_mode():
                _, compile_s = first_call(lambda: compiled(sample, t, audio))
                ms = median_ms(lambda: compiled(sample, t, audio))
                row(res=res, chunks=chunks, variant="compile-cl", ms=ms, ms_per_chunk=ms / chunks,
                    compile_s=compile_s, tflops=(flops / ms / 1e9) if flops else None)
                replay = graphed(lambda: compiled(sample, t, audio))
                ms = median_ms(replay)
                row(res=res, chunks=chunks, variant="compile-graph-cl", ms=ms, ms_per_chunk=ms / chunks,
                    tflops=(flops / ms / 1e9) if flops else None)
                results["breakdown"][f"{res}-compile-cl-k{chunks}"] = kernel_breakdown(lambda: compiled(sample, t, audio))
                state = DeepCacheState()
                model(sample, t, audio, deepcache=state)  # eager fill: only the cached step is compiled here
                c0 = time.perf_counter()
                compiled(sample, t, audio, deepcache=state)
                torch.cuda.synchronize()
                compile_s = time.perf_counter() - c0
                ms = median_ms(lambda: compiled(sample, t, audio, deepcache=state))
                row(res=res, chunks=chunks, variant="compile-cached-cl", ms=ms, ms_per_chunk=ms / chunks,
                    compile_s=compile_s)
                state = replay = None
        for variant in tuned:
            try:
                tuned_rows(model, variant, args.compile_cases, flops_of, row, results["breakdown"], dev, dtype)
            except Exception as exc:  # keep the other rows
                row(variant=f"compile-cl-{variant}", error=f"{type(exc).__name__}: {str(exc)[:600]}")
    results["seconds"] = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print("\nres chunks variant                      ms/call  ms/chunk  TFLOP/s")
    for r in results["rows"]:
        if "ms" in r:
            tf = r.get("tflops")
            print(f"{r['res']:>3} {r['chunks']:>6} {r['variant']:<28} {r['ms']:8.2f} {r['ms_per_chunk']:9.2f} "
                  f"{'' if tf is None else f'{tf:7.1f}'}")
    for key, b in results["breakdown"].items():
        print(key, {k: round(v, 2) for k, v in b["ms_by_kind"].items()}, "kernels", b["kernels"])


if __name__ == "__main__":
    main()
