"""One GPU's batch throughput and overheads, and the N-GPU batch efficiency they predict (``latentsync batch --ray``).

    python bench/batch_throughput.py --video demo1_video.mp4 --audio demo1_audio.wav \
        --landmarks demo1_landmarks3.json [--jobs 4] [--res 256] [--deepcache] [--json out.json]

What one Ray worker does, measured in one process: load the models from files in their real formats (random
full-size weights written first: upstream's U-Net .pt in fp16, a Whisper .pt, an sd-vae-ft-mse .safetensors),
then lip-sync ``jobs`` copies of the video one after another (given alignment points: the GPU image has no dlib
model; detection is CPU work, reported separately by the CPU benches). Per job: wall seconds, CPU seconds of the
process (decode, encode, audio, compositing threads), frames; the process's peak resident memory.

The scaling model: N workers on one host are independent except for the host's CPU cores (decode/encode) and
each worker's one-time start (Ray actor + model load). With T1 = load + J * job, TN = load + ceil(J / N) * job *
max(1, N * cores_per_job / host_cores) and E(N) = T1 / (N * TN). Batches across hosts add nothing shared but the
files (a shared file system) and the driver, which only sends paths.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_model_files(folder: Path, res: int, device: torch.device, smoke: bool) -> dict[str, str]:
    """Random full-size models written in the formats the loader reads; returns their paths."""
    from latentsync_impl import random_models

    from latentsync import tiny_models
    from latentsync.configs import unet_config

    models = random_models(res, device, torch.float16 if device.type == "cuda" else torch.float32, smoke=smoke)
    config = dict(models.unet.config) if hasattr(models.unet, "config") else unet_config("stage2")
    state = {k: v.detach().to("cpu", torch.float16) for k, v in models.unet.state_dict().items()}
    unet = tiny_models.save_unet(folder / "latentsync_unet.pt", state, config, resolution=res)
    del models, state
    whisper = tiny_models.write_whisper(folder, width=int(config["cross_attention_dim"]))
    vae = tiny_models.write_sd_vae_file(folder)
    return {"unet": str(unet), "whisper": str(whisper), "vae": str(vae)}


def scaling(load_s: float, job_s: float, cores_per_job: float, host_cores: int, jobs: int) -> list[dict]:
    """Predicted batch efficiency E(N) for N = 1, 2, 4, 8 GPUs of one host (see the module docstring)."""
    t1 = load_s + jobs * job_s
    rows = []
    for n in (1, 2, 4, 8):
        slowdown = max(1.0, n * cores_per_job / host_cores)
        tn = load_s + math.ceil(jobs / n) * job_s * slowdown
        rows.append({"gpus": n, "seconds": round(tn, 1), "speedup": round(t1 / tn, 2),
                     "efficiency": round(t1 / (n * tn), 3), "cpu_slowdown": round(slowdown, 2)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--landmarks", required=True)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--deepcache", action="store_true")
    ap.add_argument("--model-jobs", type=int, default=64, help="jobs in the predicted batch (default %(default)s)")
    ap.add_argument("--frames", type=int, default=0, help="use the first N frames of the video (default all)")
    ap.add_argument("--smoke", action="store_true", help="narrow models on the CPU: checks the script")
    ap.add_argument("--json")
    args = ap.parse_args()

    from diffusers_import import autoencoder_kl

    autoencoder_kl()  # the GPU image's diffusers, imported without its broken transformers / peft
    from bench_pipeline import vm_hwm_mb

    from latentsync.io.video import probe_video
    from latentsync.pipeline.loading import load_models
    from latentsync.pipeline.runner import RunOptions, lipsync_file
    from latentsync.pipeline.sampler import SamplerOptions

    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.float16
    points_all = json.load(open(args.landmarks))["landmarks3"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.frames:
            sys.path.insert(0, str(REPO / "tools" / "device_checks"))
            from soak_device import cut_clip

            args.video, args.audio = cut_clip(args.video, args.audio, args.frames, folder)
        frames = probe_video(args.video).num_frames
        points = np.asarray([points_all[min(i, len(points_all) - 1)] for i in range(frames)], np.float32)
        paths = write_model_files(folder, args.res, device, args.smoke)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        sizes = {k: round(os.path.getsize(v) / 1e9, 3) for k, v in paths.items()}
        start = time.perf_counter()
        models = load_models(paths["unet"], paths["whisper"], device=device, dtype=dtype, vae_path=paths["vae"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        load_s = time.perf_counter() - start
        options = RunOptions(sampler=SamplerOptions(steps=args.steps, guidance_scale=1.5, seed=1247,
                                                    deepcache=args.deepcache,
                                                    batch_chunks=2 if args.res <= 256 and not args.smoke else 1),
                             overwrite=True)
        jobs = []
        for n in range(args.jobs):
            wall, cpu = time.perf_counter(), cpu_seconds()
            report = lipsync_file(models, models.vae, args.video, args.audio, str(folder / f"out{n}.mp4"), options,
                                  device=device, dtype=dtype, points=points)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            jobs.append({"job": n, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                         "cores_busy": round(cpu / wall, 2), "frames": report.frames,
                         "fps": round(report.frames / wall, 2)})
            print(json.dumps(jobs[-1]), flush=True)
    steady = jobs[1:] or jobs  # the first job also warms kernels and allocators
    job_s = float(np.median([j["seconds"] for j in steady]))
    cores = float(np.median([j["cores_busy"] for j in steady]))
    host_cores = os.cpu_count() or 1
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
        "res": args.res, "deepcache": args.deepcache, "steps": args.steps, "video_frames": frames,
        "model_files_gb": sizes, "load_seconds": round(load_s, 2), "first_job_seconds": jobs[0]["seconds"],
        "job_seconds_median": job_s, "cores_busy_per_job": cores, "host_cores": host_cores,
        "peak_rss_mb": round(vm_hwm_mb(), 1),
        "peak_vram_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2) if device.type == "cuda" else None,
        "jobs": jobs, "scaling_model_jobs": args.model_jobs,
        "scaling": scaling(load_s, job_s, cores, host_cores, args.model_jobs),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "jobs"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
