"""On an accelerator: every chunk of a video plan sampled alone equals that chunk of the one-shot run, bit for bit,
with the noise drawn on the device itself (CUDA's Philox generator) in fp16 and fp32.

The CPU tests (tests/e2e/test_chunk_shards.py) prove it for the CPU generator; the device generator advances by
amounts that depend on the launch, which the fast-forward reproduces by drawing the same shapes, dtypes and order.
Random tiny U-Net, random posterior moments and audio windows: only the random-state bookkeeping is under test.

    python tools/device_checks/check_chunk_noise_device.py --device cuda --frames 72
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from latentsync.models.unet import UNet3DConditionModel  # noqa: E402
from latentsync.pipeline import stages  # noqa: E402
from latentsync.pipeline.sampler import EncodedFaces, SamplerOptions  # noqa: E402
from latentsync.tiny_models import RESOLUTION, tiny_unet_config  # noqa: E402


def check(device: str, dtype: torch.dtype, frames: int, batch_chunks: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    config = tiny_unet_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet3DConditionModel(config).to(device, dtype).eval()
    h = RESOLUTION // 8
    moments = [torch.randn(frames, 4, h, h, generator=gen).to(device, dtype) for _ in range(4)]
    encoded = EncodedFaces(*moments, mask_latent=torch.ones(1, h, h))
    windows = torch.randn(frames, 50, int(config["cross_attention_dim"]), generator=gen).to(device, dtype)
    options = SamplerOptions(steps=3, seed=1247, deepcache=True, batch_chunks=batch_chunks)
    plan = stages.plan_video(frames, options, RESOLUTION)
    whole = stages.new_sampler(unet, plan, device=device, dtype=dtype).sample_vae_latents(encoded, windows)
    results = []
    for k, (a, b) in enumerate(plan.chunks):
        alone = stages.new_sampler(unet, plan, device=device, dtype=dtype, start_frame=a).sample_vae_latents(
            encoded.slice(a, b), windows[a:b])
        results.append({"chunk": k, "equal": bool(torch.equal(alone, whole[a:b])),
                        "max_abs_diff": float((alone.float() - whole[a:b].float()).abs().max())})
    fresh = stages.new_sampler(unet, plan, device=device, dtype=dtype).sample_vae_latents(
        encoded.slice(*plan.chunks[-1]), windows[plan.chunks[-1][0]:])
    return {"device": device, "dtype": str(dtype), "frames": frames, "batch_chunks": batch_chunks,
            "chunks": results, "all_equal": all(r["equal"] for r in results),
            "not_fast_forwarded_differs": not torch.equal(fresh, whole[plan.chunks[-1][0]:])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=72)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    report = [check(args.device, dtype, args.frames, 1) for dtype in (torch.float16, torch.float32)]
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    ok = all(r["all_equal"] and r["not_fast_forwarded_differs"] for r in report)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
