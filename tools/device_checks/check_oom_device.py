"""A real CUDA out-of-memory in the middle of a video, at full model size: is the window redone with fewer chunks per
U-Net call, are the windows before it kept, is the result the reference's, and does the memory come back?

    python tools/device_checks/check_oom_device.py [--res 512] [--frames 128] [--steps 3] [--json out.json]

A random full-size stage2 U-Net (1.27 B parameters, fp16) denoises ``frames`` frames in windows of 4 chunks with
the runner's retry (``pipeline.oom.run_shrinking`` with the sampler's snapshot/restore). First the peak memory of
one window at 4 chunks per call and at 1 is measured; then the process's CUDA memory is capped (PyTorch's
``set_per_process_memory_fraction``) between the two, so 4 chunks run out of memory for real, from the second
window on (the first runs before the cap). Needs torch and this repository only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from latentsync.configs import unet_config  # noqa: E402
from latentsync.models.unet import UNet3DConditionModel  # noqa: E402
from latentsync.pipeline.oom import MemoryPlan, run_shrinking  # noqa: E402
from latentsync.pipeline.sampler import EncodedFaces, LipsyncSampler, SamplerOptions  # noqa: E402

CHUNK = 16


def inputs(frames: int, hw: int, device: torch.device) -> tuple[EncodedFaces, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    moments = [torch.randn(frames, 4, hw, hw, generator=gen) for _ in range(4)]
    mask = torch.ones(1, hw, hw)
    mask[:, hw // 2:, :] = 0
    audio = torch.randn(frames, 50, 384, generator=gen).to(device, torch.float16)
    return EncodedFaces(*moments, mask_latent=mask), audio


def sample(unet, encoded, audio, *, chunks: int, steps: int, device, cap_after_first: float | None = None):
    """Denoise in windows of ``chunks`` chunks with the runner's retry; returns latents, notes, per-window plan."""
    opts = SamplerOptions(steps=steps, guidance_scale=1.5, seed=1247, batch_chunks=chunks)
    hw = encoded.masked_mean.shape[-1]
    sampler = LipsyncSampler(unet, opts, latent_hw=(hw, hw), device=device, dtype=torch.float16)
    plan = MemoryPlan(batch_chunks=chunks, vae_batch=1)
    window = CHUNK * chunks
    out, notes, used = [], [], []
    for a in range(0, encoded.num_frames, window):
        b = min(a + window, encoded.num_frames)
        state = sampler.snapshot()

        def attempt(now: MemoryPlan, a: int = a, b: int = b) -> torch.Tensor:
            opts.batch_chunks = now.batch_chunks
            return sampler.sample(encoded.slice(a, b), audio[a:b])

        def undo(state=state) -> None:
            sampler.restore(state)
            torch.cuda.empty_cache()

        out.append(run_shrinking(attempt, plan, where=f"frames {a}-{b - 1}", before_retry=undo,
                                 on_shrink=notes.append).float().cpu())
        used.append(plan.batch_chunks)
        if cap_after_first is not None and a == 0:
            torch.cuda.empty_cache()  # the cap applies to new device allocations: give back the cached blocks
            torch.cuda.set_per_process_memory_fraction(cap_after_first, device)
    return torch.cat(out), notes, used


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    device = torch.device("cuda", torch.cuda.current_device())  # set_per_process_memory_fraction needs an index
    started = time.monotonic()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet3DConditionModel(unet_config("stage2")).half().to(device).eval()
    hw = args.res // 8
    encoded, audio = inputs(args.frames, hw, device)
    total = torch.cuda.get_device_properties(device).total_memory
    result = {"device": torch.cuda.get_device_name(device), "res": args.res, "frames": args.frames,
              "steps": args.steps, "model_gib": torch.cuda.memory_allocated(device) / 2**30}

    peaks = {}
    with torch.no_grad():
        for chunks in (1, 4):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            ref, _, _ = sample(unet, encoded.slice(0, CHUNK * chunks), audio, chunks=chunks, steps=1, device=device)
            peaks[chunks] = torch.cuda.max_memory_allocated(device)
        result["peak_gib_1_chunk"] = peaks[1] / 2**30
        result["peak_gib_4_chunks"] = peaks[4] / 2**30
        reference, _, _ = sample(unet, encoded, audio, chunks=1, steps=args.steps, device=device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        cap = (peaks[1] + 0.45 * (peaks[4] - peaks[1])) / total
        result["cap_gib"] = cap * total / 2**30
        got, notes, used = sample(unet, encoded, audio, chunks=4, steps=args.steps, device=device,
                                  cap_after_first=cap)
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
        after = torch.cuda.memory_allocated(device)
    err = float((got - reference).norm() / reference.norm())
    result.update(notes=notes, chunks_per_window=used, rel_l2_vs_one_chunk_reference=err,
                  allocated_gib_before=before / 2**30, allocated_gib_after=after / 2**30,
                  reserved_gib_after=torch.cuda.memory_reserved(device) / 2**30,
                  seconds=time.monotonic() - started)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
