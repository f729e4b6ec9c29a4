"""U-Net device check: tiny-fixture parity per dtype, and full-size forward timing (ms, TFLOP/s).

Needs only torch and this repository (safetensors files are read with a small built-in reader when the
safetensors package is absent). Typical use on a GPU machine, from the repository root:

    python tools/device_checks/check_unet_device.py                       # CUDA: parity fp32/fp16/bf16 + full-size timing
    python tools/device_checks/check_unet_device.py --json $OUT/unet.json  # also write the numbers as JSON
    python tools/device_checks/check_unet_device.py --cpu --tiny          # smoke run on CPU with the tiny config only

Global torch settings (TF32, cuDNN benchmark) are left at their defaults and reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from latentsync.configs import unet_config  # noqa: E402
from latentsync.models.layers import temporal_position_table  # noqa: E402
from latentsync.models.unet import DeepCacheState, UNet3DConditionModel, load_unet_state_dict  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
              "I32": torch.int32, "U8": torch.uint8, "F64": torch.float64}


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into CPU tensors (the package if installed, else a minimal reader)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raw = path.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        body = memoryview(raw)[8 + n :]
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            dtype = _ST_DTYPES[info["dtype"]]
            chunk = bytearray(body[start:end])
            flat = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
            out[name] = flat.reshape(info["shape"])
        return out
    return dict(load_file(str(path)))


def fixtures_dir(arg: str | None) -> Path:
    default = REPO / ".." / "shared" / "fixtures" / "upstream"
    return Path(arg or os.environ.get("LATENTSYNC_PARITY_FIXTURES", default)).resolve()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ parity


@torch.inference_mode()
def tiny_parity(fix: Path, device: torch.device, dtypes: list[str]) -> dict:
    config = json.loads((fix / "unet_tiny_config.json").read_text())
    weights = read_safetensors(fix / "unet_tiny_weights.safetensors")
    io = read_safetensors(fix / "unet_tiny_io.safetensors")
    observed_path = fix / "device_checks_observed.json"
    observed = json.loads(observed_path.read_text()) if observed_path.is_file() else {}
    cases = sorted(k[: -len("_sample")] for k in io if k.endswith("_sample"))
    results = {}
    for tag in dtypes:
        dtype = DTYPES[tag]
        with torch.device("meta"):
            model = UNet3DConditionModel(config)
        load_unet_state_dict(model, weights, source="unet_tiny_weights.safetensors", dtype=dtype, device=device)
        model.eval()
        ref_key = f"unet_tiny/{device.type}/{tag}"
        for name in cases:
            sample = io[f"{name}_sample"].to(device, dtype)
            audio = io[f"{name}_encoder_hidden_states"].to(device, dtype)
            out = model(sample, io[f"{name}_timestep"].to(device), audio).float().cpu()
            gold = io[f"{name}_out"].float()
            diff = (out - gold).abs()
            ours = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                    "rel_l2": float((out - gold).norm() / gold.norm()), "finite": bool(torch.isfinite(out).all())}
            theirs = observed.get(ref_key, {}).get(name)
            results[f"{tag}/{name}"] = {"ours": ours, "upstream_observed": theirs}
            ref_txt = (f"upstream {ref_key}: max_abs {theirs['max_abs']:.3g}, rel_l2 {theirs['rel_l2']:.3g}"
                       if theirs else f"(no upstream number for {ref_key})")
            print(f"  tiny {tag:4s} {name}: max_abs {ours['max_abs']:.3g}, rel_l2 {ours['rel_l2']:.3g}   | {ref_txt}")
    return results


# ------------------------------------------------------------------------------------------------ timing


def random_model(config: dict, device: torch.device, dtype: torch.dtype) -> UNet3DConditionModel:
    """Materialise the model from meta with fan-in scaled normal weights (sane activation scale in fp16)."""
    with torch.device("meta"):
        model = UNet3DConditionModel(config)
    model = model.to(dtype).to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=gen)
        for name, b in model.named_buffers():
            if name.endswith("pos_encoder.pe"):
                b.copy_(temporal_position_table(*b.shape[1:]))
    return model.eval().requires_grad_(False)


def count_flops(model: UNet3DConditionModel, args: tuple, kwargs: dict) -> int | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    return int(counter.get_total_flops())


@torch.inference_mode()
def time_forward(model, args: tuple, kwargs: dict, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        model(*args, **kwargs)
    sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            model(*args, **kwargs)
        end.record()
        sync(device)
        return start.elapsed_time(end) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        model(*args, **kwargs)
    return (time.perf_counter() - t0) * 1000 / iters


def upstream_baseline(path: Path, batch: int, frames: int, hw: int) -> dict | None:
    """Upstream's isolated U-Net numbers (H200, fp16) from baselines/upstream_h200.json, if that shape was timed."""
    if batch != 2 or not path.is_file():
        return None
    raw = json.loads(path.read_text()).get("floor_raw", {})
    key = f"{hw * 8}_F{frames}"
    full = raw.get("unet_full_forward_cfg2", {}).get(key)
    cached = raw.get("unet_deepcache_cached_step_cfg2", {}).get(key)
    if not full:
        return None
    return {"gpu": raw.get("env", {}).get("gpu"), "ms": full["time"]["median_s"] * 1000,
            "tflops": full["flops"]["total"] / 1e12, "tflop_per_s": full.get("achieved_tflops"),
            "deepcache_cached_step_ms": cached["time"]["median_s"] * 1000 if cached else None,
            "matmul_fp16_peak_tflop_per_s": raw.get("matmul", {}).get("fp16", {}).get("tflops_median")}


def timing(config: dict, device: torch.device, dtype: torch.dtype, batch: int, frames: int, sizes: list[int],
           warmup: int, iters: int, channels_last: bool, baseline: Path | None = None) -> dict:
    model = random_model(config, device, dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    results = {}
    for hw in sizes:
        g = torch.Generator(device=device).manual_seed(1)
        sample = torch.randn(batch, config["in_channels"], frames, hw, hw, device=device, dtype=dtype, generator=g)
        if channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last_3d)
        audio = torch.randn(batch, frames, 50, config["cross_attention_dim"], device=device, dtype=dtype, generator=g)
        t = torch.tensor(501, device=device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        flops = count_flops(model, (sample, t, audio), {})
        ms = time_forward(model, (sample, t, audio), {}, device, warmup, iters)
        state = DeepCacheState()
        with torch.inference_mode():
            out = model(sample, t, audio, deepcache=state)
        cached_ms = time_forward(model, (sample, t, audio), {"deepcache": state}, device, warmup, iters)
        cached_flops = count_flops(model, (sample, t, audio), {"deepcache": state})
        entry = {
            "batch": batch, "frames": frames, "latent_hw": hw, "ms": ms,
            "tflops": flops / 1e12 if flops else None,
            "tflop_per_s": flops / (ms / 1000) / 1e12 if flops else None,
            "deepcache_cached_step_ms": cached_ms,
            "deepcache_cached_step_tflops": cached_flops / 1e12 if cached_flops else None,
            "output_finite": bool(torch.isfinite(out).all()),
            "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        }
        results[f"{batch}x{frames}@{hw}"] = entry
        rate = f"{entry['tflop_per_s']:.1f} TFLOP/s ({entry['tflops']:.3f} TFLOP)" if flops else "flops n/a"
        print(f"  forward B={batch} F={frames} {hw}x{hw}: {ms:.2f} ms, {rate}; DeepCache cached step "
              f"{cached_ms:.2f} ms; finite={entry['output_finite']}"
              + (f"; peak {entry['peak_mem_gib']:.1f} GiB" if entry["peak_mem_gib"] is not None else ""))
        up = upstream_baseline(baseline, batch, frames, hw) if baseline and not channels_last else None
        if up and config == unet_config("stage2"):
            entry["upstream_baseline"] = up
            print(f"    upstream on {up['gpu']}: {up['ms']:.2f} ms, {up['tflop_per_s']:.1f} TFLOP/s "
                  f"({up['tflops']:.3f} TFLOP); cached step {up['deepcache_cached_step_ms']:.2f} ms; fp16 matmul peak "
                  f"{up['matmul_fp16_peak_tflop_per_s']:.0f} TFLOP/s")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="run on CPU even if CUDA is available")
    ap.add_argument("--tiny", action="store_true", help="time the tiny fixture config instead of the full U-Net")
    ap.add_argument("--fixtures", help="parity fixture folder (default: $LATENTSYNC_PARITY_FIXTURES or ../shared)")
    ap.add_argument("--dtypes", default="fp32,fp16,bf16", help="parity dtypes, comma separated")
    ap.add_argument("--time-dtype", default="fp16", choices=sorted(DTYPES))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--sizes", default="32,64", help="latent sizes to time (h = w), comma separated")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--channels-last", action="store_true", help="also time with channels-last weights and input")
    ap.add_argument("--json", help="write all numbers to this JSON file")
    args = ap.parse_args()

    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    env = {"torch": torch.__version__, "device": str(device), "python": sys.version.split()[0]}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cudnn=torch.backends.cudnn.version(),
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                   cudnn_allow_tf32=torch.backends.cudnn.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark)
    print("environment:", json.dumps(env))
    report: dict = {"env": env}

    fix = fixtures_dir(args.fixtures)
    if (fix / "unet_tiny_config.json").is_file():
        print(f"tiny parity vs upstream golden ({fix}):")
        report["tiny_parity"] = tiny_parity(fix, device, [d for d in args.dtypes.split(",") if d])
    else:
        print(f"tiny parity skipped: no fixtures at {fix}")

    if args.tiny:
        config = json.loads((fix / "unet_tiny_config.json").read_text())
        sizes, iters, warmup = [16], min(args.iters, 2), min(args.warmup, 1)
    else:
        config = unet_config("stage2")
        sizes, iters, warmup = [int(s) for s in args.sizes.split(",")], args.iters, args.warmup
    dtype = DTYPES[args.time_dtype]
    print(f"timing ({'tiny' if args.tiny else 'full-size'} U-Net, random weights, {args.time_dtype}):")
    baseline = fix.parents[1] / "baselines" / "upstream_h200.json"
    report["timing"] = timing(config, device, dtype, args.batch, args.frames, sizes, warmup, iters, False, baseline)
    if args.channels_last:
        print("timing with channels-last:")
        report["timing_channels_last"] = timing(config, device, dtype, args.batch, args.frames, sizes, warmup, iters,
                                                True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print("wrote", args.json)


if __name__ == "__main__":
    main()
