"""Attention kernels at the U-Net's shapes: SDPA backends vs explicit math, error against an fp32 reference.

The U-Net runs two kinds of attention: spatial (L = h*w tokens per frame, head dim 40/80/160) and temporal
(L = 16 frames per location, a huge batch of tiny sequences). Example (GPU machine, repository root):

    python bench/attention_speed.py --json $OUT/attention.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from unet_speed import median_ms  # noqa: E402

from latentsync.models.attention import small_sequence_attention  # noqa: E402


def padded_sdpa(q, k, v, to: int):
    d = q.shape[-1]
    pad = (0, to - d)
    out = F.scaled_dot_product_attention(F.pad(q, pad), F.pad(k, pad), F.pad(v, pad), scale=1 / math.sqrt(d))
    return out[..., :d]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2,
                    help="U-Net batch items: 2 (CFG) x chunks per call (the pipeline: 4 at 256 px, 2 at 512)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev, dt, b = torch.device("cuda"), torch.float16, args.batch
    shapes = {  # name: (N, H, L, D) as the U-Net calls them at batch b x 16 frames
        "temporal-512-l0": (b * 64 * 64, 8, 16, 40),
        "temporal-512-l1": (b * 32 * 32, 8, 16, 80),
        "temporal-512-l2": (b * 16 * 16, 8, 16, 160),
        "temporal-256-l0": (b * 32 * 32, 8, 16, 40),
        "temporal-256-l1": (b * 16 * 16, 8, 16, 80),
        "temporal-256-l2": (b * 8 * 8, 8, 16, 160),
        "spatial-512-l0": (b * 16, 8, 4096, 40),
        "spatial-512-l1": (b * 16, 8, 1024, 80),
        "spatial-256-l0": (b * 16, 8, 1024, 40),
        "spatial-256-l1": (b * 16, 8, 256, 80),
    }
    compiled_small = torch.compile(small_sequence_attention, dynamic=False)
    rows = []
    for name, (n, h, L, d) in shapes.items():
        q, k, v = (torch.randn(n, L, h, d, device=dev, dtype=dt).transpose(1, 2) for _ in range(3))
        ref = F.scaled_dot_product_attention(q.double().cpu(), k.double().cpu(), v.double().cpu()) if n * h * L * L < 5e8 else None
        flops = 4 * n * h * L * L * d
        variants = {
            "sdpa-default": lambda: F.scaled_dot_product_attention(q, k, v),
            "sdpa-cudnn": (SDPBackend.CUDNN_ATTENTION, lambda: F.scaled_dot_product_attention(q, k, v)),
            "sdpa-flash": (SDPBackend.FLASH_ATTENTION, lambda: F.scaled_dot_product_attention(q, k, v)),
            "sdpa-efficient": (SDPBackend.EFFICIENT_ATTENTION, lambda: F.scaled_dot_product_attention(q, k, v)),
            "pad48-default": lambda: padded_sdpa(q, k, v, 48),
            "pad64-flash": (SDPBackend.FLASH_ATTENTION, lambda: padded_sdpa(q, k, v, 64)),
        }
        if L <= 64:
            variants["small-eager"] = lambda: small_sequence_attention(q, k, v)
            variants["small-compiled"] = lambda: compiled_small(q, k, v)
        for vname, spec in variants.items():
            backend, fn = spec if isinstance(spec, tuple) else (None, spec)
            try:
                with torch.inference_mode(), (sdpa_kernel([backend]) if backend else torch.autocast("cuda", enabled=False)):
                    ms = median_ms(fn, iters=20)
                    out = fn()
                err = None
                if ref is not None:
                    err = float((out.double().cpu() - ref).norm() / ref.norm())
                rows.append(dict(shape=name, variant=vname, ms=ms, tflops=flops / ms / 1e9, rel_l2=err))
            except Exception as exc:  # a backend may refuse the shape
                rows.append(dict(shape=name, variant=vname, error=str(exc)[:120]))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print("\nshape              variant          ms      TFLOP/s  rel-L2")
    for r in rows:
        if "ms" in r:
            e = "" if r["rel_l2"] is None else f"{r['rel_l2']:.1e}"
            print(f"{r['shape']:<18} {r['variant']:<15} {r['ms']:7.3f} {r['tflops']:8.1f}  {e}")
        else:
            print(f"{r['shape']:<18} {r['variant']:<15} error: {r['error'][:60]}")


if __name__ == "__main__":
    main()
