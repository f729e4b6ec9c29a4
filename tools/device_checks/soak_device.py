"""GPU soak: the file pipeline run many times in one process at full model size; does any memory grow?

    python tools/device_checks/soak_device.py --video demo1_video.mp4 --audio demo1_audio.wav \
        --landmarks demo1_landmarks3.json [--runs 50] [--frames 48] [--res 256] [--json out.json]

Random full-size models (bench/latentsync_impl.py: stage2 U-Net, Whisper tiny, sd-vae-ft-mse-shaped VAE, fp16),
the first ``frames`` frames of the video with its audio, given alignment points (the GPU image has no dlib model;
detection runs on the CPU and holds no GPU memory). The runs alternate DeepCache on/off and 1/2 chunks per
U-Net call, so both sampler paths and both batch shapes are exercised. After each run: CUDA memory allocated and
reserved, and the process's resident memory. Growth is measured against the largest level of runs 1-2 (one-time
allocator and cache growth), as the CPU soak test does; the check fails if runs 3..N go above it by more than
the stated margins.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

MARGIN_ALLOCATED_MB = 1.0
MARGIN_RESERVED_MB = 64.0
MARGIN_RSS_MB = 150.0


def rss_mb() -> float:
    """The process's resident memory now (VmRSS), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cut_clip(video: str, audio: str, frames: int, folder: Path) -> tuple[str, str]:
    """The first ``frames`` frames of ``video`` (H.264, 25 fps) and the same span of ``audio`` (16 kHz wav)."""
    from latentsync.audio.waveform import load_16k_mono
    from latentsync.io.decode import read_video
    from latentsync.io.video import VideoWriter
    from latentsync.metrics.offset import write_wav

    out_video, out_audio = folder / "clip.mp4", folder / "clip.wav"
    with VideoWriter(out_video, 25) as writer:
        writer.write(read_video(video).frames[:frames])
    write_wav(out_audio, load_16k_mono(audio)[: frames * 640], 16000)
    return str(out_video), str(out_audio)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--landmarks", required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--smoke", action="store_true", help="narrow models on the CPU: checks the script, not memory")
    args = ap.parse_args()

    from diffusers_import import autoencoder_kl

    autoencoder_kl()  # the GPU image's diffusers, imported without its broken transformers / peft
    from latentsync_impl import random_models

    from latentsync.pipeline.runner import RunOptions, lipsync_file
    from latentsync.pipeline.sampler import SamplerOptions

    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.float16
    models = random_models(args.res, device, dtype, smoke=args.smoke)
    cuda = device.type == "cuda"
    points = np.asarray(json.load(open(args.landmarks))["landmarks3"][: args.frames], np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video, audio = cut_clip(args.video, args.audio, args.frames, Path(tmp))
        for run in range(1, args.runs + 1):
            deepcache, chunks = bool(run % 2), 1 + (run // 2) % 2
            options = RunOptions(sampler=SamplerOptions(steps=args.steps, guidance_scale=1.5, seed=run,
                                                        deepcache=deepcache, batch_chunks=chunks),
                                 overwrite=True)
            start = time.perf_counter()
            report = lipsync_file(models, models.vae, video, audio, os.path.join(tmp, "out.mp4"), options,
                                  device=device, dtype=dtype, points=points)
            gc.collect()
            if cuda:
                torch.cuda.synchronize()
            rows.append({"run": run, "seconds": round(time.perf_counter() - start, 2), "frames": report.frames,
                         "deepcache": deepcache, "batch_chunks": chunks,
                         "allocated_mb": round(torch.cuda.memory_allocated() / 2**20, 1) if cuda else 0.0,
                         "reserved_mb": round(torch.cuda.memory_reserved() / 2**20, 1) if cuda else 0.0,
                         "max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else 0.0,
                         "rss_mb": round(rss_mb(), 1)})
            print(json.dumps(rows[-1]), flush=True)
    base = {k: max(r[k] for r in rows[:2]) for k in ("allocated_mb", "reserved_mb", "rss_mb")}
    later = rows[2:]
    growth = {k: round(max(r[k] for r in later) - base[k], 1) for k in base} if later else {}
    margins = {"allocated_mb": MARGIN_ALLOCATED_MB, "reserved_mb": MARGIN_RESERVED_MB, "rss_mb": MARGIN_RSS_MB}
    ok = all(growth[k] <= margins[k] for k in growth)
    summary = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__, "runs": args.runs,
               "frames": args.frames, "res": args.res, "baseline_runs_1_2": base, "growth_runs_3_on": growth,
               "margins": margins, "ok": ok, "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
