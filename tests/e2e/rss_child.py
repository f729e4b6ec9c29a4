"""Child process for the memory tests: make a long looped 720p clip, run the file pipeline on it, print peak RSS.

    python tests/e2e/rss_child.py WORKDIR FRAMES UNET WHISPER VAE

Prints one JSON line: {"frames": ..., "peak_rss_mb": ..., "seconds": ...}. Kept as a plain script so a
benchmark can call it with minutes of video (bench/pipeline_memory.py).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch


def make_clip(path: Path, frames: int, size=(720, 1280), fps: int = 25) -> None:
    """A portrait 720x1280 face clip looped from demo1's first 25 frames (encoded fast; content repeats)."""
    media = Path(__file__).resolve().parents[2].parent / "shared" / "media"
    import os

    media = Path(os.environ.get("LATENTSYNC_MEDIA", media))
    src = []
    with av.open(str(media / "demo1_video.mp4")) as c:
        for f in c.decode(video=0):
            src.append(f.to_ndarray(format="rgb24", width=size[0], height=size[1]))
            if len(src) == 25:
                break
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            k = i % (2 * len(src) - 2)
            img = src[k if k < len(src) else 2 * len(src) - 2 - k]
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    seconds = frames / fps
    audio = path.with_suffix(".wav")
    wave = (np.sin(np.linspace(0, 2 * np.pi * 220 * seconds, int(16000 * seconds))) * 8000).astype(np.int16)
    with av.open(str(audio), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave[None], format="s16", layout="mono")
        frame.sample_rate = 16000
        for p in stream.encode(frame):
            out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


def peak_rss_mb() -> float:
    """This process's peak resident set in MB: VmHWM (counted from its own exec) where Linux has it.

    ru_maxrss is not: Linux carries the parent's high-water mark across vfork + exec (how subprocess starts this
    script), so a test process grown to 3 GB made this child report 3 GB before it had done anything."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    workdir, frames, unet, whisper, vae = Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cpu_torchvision import stub_registrations_if_needed

    stub_registrations_if_needed()
    from latentsync.pipeline.loading import load_models
    from latentsync.pipeline.runner import RunOptions, lipsync_file
    from latentsync.pipeline.sampler import SamplerOptions

    clip = workdir / f"long_{frames}.mp4"
    make_clip(clip, frames)
    models = load_models(unet, whisper, device="cpu", dtype=torch.float32, vae_path=vae)
    before = peak_rss_mb()
    t0 = time.time()
    options = RunOptions(sampler=SamplerOptions(steps=1, guidance_scale=1.0), length_policy="trim", detector="dlib",
                         preset="ultrafast")
    report = lipsync_file(models, models.vae, str(clip), str(clip.with_suffix(".wav")), str(workdir / f"out_{frames}.mp4"),
                          options, device="cpu", dtype=torch.float32)
    peak = peak_rss_mb()
    print(json.dumps({"frames": report.frames, "peak_rss_mb": peak, "rss_before_run_mb": before,
                      "seconds": time.time() - t0, "missing": len(report.missing_face_frames)}))


if __name__ == "__main__":
    main()
