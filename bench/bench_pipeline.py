"""End-to-end benchmark of the file pipeline on a GPU: per-stage wall time, fps, peak VRAM and peak host RSS.

    python bench/bench_pipeline.py --video demo1_video.mp4 --audio demo1_audio.wav \
        --landmarks demo1_landmarks3.json --cases 256:off,256:on,512:off,512:on [--json out.json]

Random full-size models (bench/latentsync_impl.py), precomputed alignment points instead of face detection (as
the shared upstream baseline does), 20 DDIM steps, guidance 1.5, fp16, seed 1247. Each case: build the models,
one warm-up call on the first 20 frames, then the timed call. Stage times use torch.cuda.synchronize() at every
stage boundary; the peak RSS is the kernel's VmHWM, reset before the timed call.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from diffusers_import import prefer_image_diffusers  # noqa: E402

prefer_image_diffusers()  # the GPU image's diffusers, without its broken transformers / peft (before the adapter)

from latentsync_impl import Impl  # noqa: E402
from proc_status import status_gib  # noqa: E402

STAGES = tuple(Impl.group_of)  # the runner's stages, in the order they come


class Recorder:
    """Stage timer with a device sync at each boundary (accumulates per stage name). ``sync=False`` leaves the
    device alone, as the product's runner (no timer) does: the total is then the product's, and each stage's time is
    the host's, the GPU's work counted where the host waits for it."""

    def __init__(self, sync: bool = True) -> None:
        self.sync = sync and torch.cuda.is_available()
        self.seconds: dict[str, float] = {}
        self.annotate = False  # mark each stage in a profiler trace (--trace)
        self.current = "between stages"  # the stage the main thread is in (RssByStage reads it)

    @contextlib.contextmanager
    def stage(self, name: str):
        if self.sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        mark = torch.profiler.record_function(f"stage:{name}") if self.annotate else contextlib.nullcontext()
        outer, self.current = self.current, name
        try:
            with mark:
                yield
                if self.sync:
                    torch.cuda.synchronize()
        finally:
            self.current = outer
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def rss_breakdown_gib() -> dict[str, float]:
    """The resident set by kind (/proc/self/status): anonymous, file-backed (libraries, mapped files: shared and
    reclaimable), shared memory, and the locked and pinned pages among them."""
    keys = {"RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem", "VmLck": "locked", "VmPin": "pinned"}
    return {keys[name]: round(gib, 3) for name, gib in status_gib(*keys).items()}


class RssByStage:
    """The host's peak resident memory in each of the recorder's stages, sampled every 10 ms in a thread (--rss-by-
    stage): where the run's host peak is, which VmHWM alone does not say; and what the resident set is made of at
    the start and at the peak."""

    def __init__(self, rec: Recorder) -> None:
        import threading

        self.rec, self.peaks_mb = rec, {}
        self.breakdown: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        top = 0.0
        self.breakdown["start"] = rss_breakdown_gib()
        while not self._stop.wait(0.01):
            with open("/proc/self/statm") as f:
                mb = int(f.read().split()[1]) * page_mb
            stage = self.rec.current
            self.peaks_mb[stage] = max(self.peaks_mb.get(stage, 0.0), mb)
            if mb > top:
                top, self.breakdown["peak"] = mb, {"stage": stage, **rss_breakdown_gib()}

    def __enter__(self) -> "RssByStage":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def gib(self) -> dict[str, float]:
        return {k: round(v / 1024, 3) for k, v in sorted(self.peaks_mb.items(), key=lambda kv: -kv[1])}


class Landmarks:
    """Per-frame alignment points; ``loop``: the input is the source video looped (index modulo its length)."""

    def __init__(self, path: str, loop: bool = False):
        self.points = json.load(open(path))["landmarks3"]
        self.loop = loop

    def for_frame(self, i: int):
        return self.points[i % len(self.points) if self.loop else min(i, len(self.points) - 1)]


def vm_hwm_mb() -> float:
    return status_gib("VmHWM").get("VmHWM", float("nan")) * 1024


def reset_hwm() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def warm_inputs(video: str, audio: str, workdir: str) -> tuple[str, str]:
    """The first 20 frames and 0.64 s of audio (18 output frames: chunks of 16 + 2), like the upstream harness."""
    import av
    import numpy as np

    from latentsync.io.video import VideoWriter, iter_video_frames, probe_video

    info = probe_video(video)
    frames = np.concatenate([f for f, _ in iter_video_frames(video, count=20)])
    out_v = os.path.join(workdir, "warm.mp4")
    with VideoWriter(out_v, info.fps, crf=18, preset="ultrafast", overwrite=True) as w:
        w.write(frames)
    from latentsync.audio.waveform import load_audio

    wave, sr = load_audio(audio)
    out_a = os.path.join(workdir, "warm.wav")
    pcm = (wave[:, : int(0.64 * sr)].clamp(-1, 1).numpy() * 32767).astype("int16")
    with av.open(out_a, "w") as c:
        s = c.add_stream("pcm_s16le", rate=sr, layout="mono" if pcm.shape[0] == 1 else "stereo")
        fr = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy() if pcm.shape[0] > 1 else pcm,
                                        format="s16", layout=s.layout.name)
        fr.sample_rate = sr
        for p in s.encode(fr):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return out_v, out_a


# Upstream's U-Net FLOPs per output frame (20 steps, CFG; ../shared/baselines/upstream_h200.md, FlopCounterMode):
# the work both implementations do, so FLOPs / time compares them on equal terms.
UNET_TFLOP_PER_FRAME = {(256, False): 10.13, (256, True): 4.21, (512, False): 44.06, (512, True): 18.52}


def traced_run(impl, rec: Recorder, args, landmarks, work: str, name: str) -> dict:
    """One more run of ``impl`` under torch.profiler (not timed: the profiler slows the host): the trace goes to
    ``args.trace``, the GPU's busy share per stage is returned and printed."""
    import gzip
    import shutil

    from gpu_idle import idle_by_host_op, print_idle, print_summary, summarize
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    rec.annotate, saved = True, dict(rec.seconds)
    try:
        with profile(activities=activities) as prof:
            impl.run(args.video, args.audio, os.path.join(work, f"traced_{name}.mp4"), landmarks)
    finally:
        rec.annotate, rec.seconds = False, saved
    os.makedirs(args.trace, exist_ok=True)
    path = os.path.join(work, f"trace_{name}.json")
    prof.export_chrome_trace(path)
    with open(path, "rb") as f, gzip.open(os.path.join(args.trace, f"trace_{name}.json.gz"), "wb") as kept:
        shutil.copyfileobj(f, kept)
    with open(path) as f:
        loaded = json.load(f)
    summary = summarize(loaded)
    print(f"GPU busy per stage, traced run of {name}:")
    print_summary(summary)
    for stage in ("sample", "vae_encode"):  # what the host did while the GPU waited (gpu_idle.idle_by_host_op)
        summary[f"idle:{stage}"] = idle = idle_by_host_op(loaded, stage)
        print_idle(stage, idle)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--landmarks", required=True)
    ap.add_argument("--cases", default="256:off,256:on,512:off,512:on")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--compile", choices=["on", "off"], default="on", help="torch.compile the U-Net and the VAE (after warm-up)")
    ap.add_argument("--batch-chunks", type=int, default=None, help="chunks per U-Net call (default 2 at 256, 1 at 512)")
    ap.add_argument("--loop-landmarks", action="store_true", help="the video is the landmarks' source looped")
    ap.add_argument("--vae-batch", type=int, default=None, help="frames per VAE call (default: the adapter's budget)")
    ap.add_argument("--eager-vae", action="store_true", help="keep the VAE uncompiled (--compile covers it)")
    ap.add_argument("--ff-max-hidden", type=int, default=None,
                    help="the feed-forward's part size in projected values (1 << 62: one whole call, as before)")
    ap.add_argument("--compile-mode", choices=["reduce-overhead", "max-autotune"], default=None,
                    help="torch.compile's mode for the U-Net and the VAE (reduce-overhead: CUDA graphs)")
    ap.add_argument("--replay-tail", action="store_true", help="compiled, replay the short last chunk's U-Net steps "
                    "as CUDA graphs (CompiledUNet.replay_short_chunks; an experiment, off in the product)")
    ap.add_argument("--tail-alone", action="store_true", help="the short last chunk's U-Net steps run after the last "
                    "full group's, not taking turns with them (LipsyncSampler.interleave_tail=False; before session 16)")
    ap.add_argument("--rss-by-stage", action="store_true", help="sample host RSS every 10 ms and report each "
                    "stage's peak (host_rss_peak_by_stage_gib)")
    cache = ap.add_mutually_exclusive_group()
    cache.add_argument("--keep-cache", action="store_true", help="keep the allocator's cached blocks between the stages "
                    "(RunOptions.release_cache=False): no emptying, no device-wide wait, a higher reserved peak")
    cache.add_argument("--release-cache", action="store_true", help="empty the allocator's cache between the stages under "
                    "every allocator (RunOptions.release_cache=True; the default skips it under cudaMallocAsync)")
    ap.add_argument("--keep-host-heap", action="store_true", help="do not give the C heap's free pages back after each "
                    "window (RunOptions.trim_host_heap=False): prices the trim against host RSS")
    ap.add_argument("--no-stage-sync", action="store_true", help="no device sync at the stage boundaries: the total "
                    "is the product's own (its runner syncs only where it must), the stages are the host's times")
    ap.add_argument("--trace", metavar="DIR", help="after each timed run, one more under torch.profiler: its Chrome "
                    "trace (gzip), how busy the GPU was in each stage, and what the host ran while it waited in the "
                    "sample and VAE encode stages (bench/gpu_idle.py)")
    ap.add_argument("--encode-threads", type=int, default=0,
                    help="x264 frame threads (0: the writer's own choice, at most 8; x264's own is 1.5 per core)")
    ap.add_argument("--smoke", action="store_true", help="narrow random models (CPU plumbing check)")
    ap.add_argument("--json")
    ap.add_argument("--memory-snapshot", metavar="DIR",
                    help="record the CUDA allocator's history during each timed call and write a snapshot per case "
                         "(open it at https://pytorch.org/memory_viz): which blocks hold the reserved memory; slows the call")
    args = ap.parse_args()
    landmarks = Landmarks(args.landmarks, loop=args.loop_landmarks)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        warm_v, warm_a = warm_inputs(args.video, args.audio, work)
        for case_text in args.cases.split(","):
            res, dc = case_text.split(":")
            case = {"resolution": int(res), "deepcache": dc == "on", "steps": args.steps, "window_frames": args.window,
                    "smoke": args.smoke, "vae_batch": args.vae_batch, "dtype": "fp16" if torch.cuda.is_available() else "fp32",
                    "compile": args.compile == "on"}
            if args.batch_chunks:
                case["batch_chunks"] = args.batch_chunks
            if args.eager_vae:
                case["compile_vae"] = False
            if args.ff_max_hidden:
                case["ff_max_hidden"] = args.ff_max_hidden
            if args.no_stage_sync:
                case["stage_sync"] = False
            if args.compile_mode:
                case["compile_mode"] = args.compile_mode
            if args.replay_tail:
                case["replay_tail"] = True
            if args.tail_alone:
                case["tail_alone"] = True
            if args.keep_cache or args.release_cache:
                case["release_cache"] = bool(args.release_cache)
            if args.keep_host_heap:
                case["keep_host_heap"] = True
            if args.encode_threads:
                case["encode_threads"] = args.encode_threads
            rec = Recorder(sync=not args.no_stage_sync)
            impl = Impl(case, rec, work)
            impl.run(warm_v, warm_a, os.path.join(work, "warm_out.mp4"), landmarks)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            reset_hwm()
            rec.seconds.clear()
            snapshot = args.memory_snapshot and torch.cuda.is_available()
            if snapshot:
                torch.cuda.memory._record_memory_history(stacks="python", max_entries=2_000_000)
            rss_stages = RssByStage(rec) if args.rss_by_stage else contextlib.nullcontext()
            t0 = time.perf_counter()
            with rss_stages:
                out = impl.run(args.video, args.audio, os.path.join(work, f"out_{res}_{dc}.mp4"), landmarks)
            if snapshot:
                os.makedirs(args.memory_snapshot, exist_ok=True)
                torch.cuda.memory._dump_snapshot(os.path.join(args.memory_snapshot, f"memory_{res}_{dc}.pickle"))
                torch.cuda.memory._record_memory_history(enabled=None)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            total = time.perf_counter() - t0
            row = {
                "case": case, "frames": out["n_out_frames"], "seconds": total, "fps": out["n_out_frames"] / total,
                "stages": {k: round(v, 3) for k, v in rec.seconds.items()},
                "vram_peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,
                "vram_peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if torch.cuda.is_available() else 0.0,
                "host_peak_rss_gib": vm_hwm_mb() / 1024,
                **({"host_rss_peak_by_stage_gib": rss_stages.gib(), "host_rss_breakdown_gib": rss_stages.breakdown}
                   if args.rss_by_stage else {}),
                "details": impl.details(),
            }
            flops = UNET_TFLOP_PER_FRAME.get((int(res), dc == "on"))
            if flops and not args.smoke and args.steps == 20:
                row["unet_tflop_per_s_in_sample"] = flops * row["frames"] / max(rec.seconds.get("sample", 0), 1e-9)
            if args.trace:
                row["trace"] = traced_run(impl, rec, args, landmarks, work, f"{res}_{dc}")
            rows.append(row)
            print(json.dumps(row), flush=True)
            del impl
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print(f"\n{'case':10s} {'frames':>6s} {'total s':>8s} {'fps':>6s} {'TFLOP/s':>7s} {'VRAM res GiB':>12s} {'RSS GiB':>8s}  " +
          " ".join(f"{s:>9s}" for s in STAGES))
    for r in rows:
        name = f"{r['case']['resolution']}:{'on' if r['case']['deepcache'] else 'off'}"
        print(f"{name:10s} {r['frames']:6d} {r['seconds']:8.2f} {r['fps']:6.2f} "
              f"{r.get('unet_tflop_per_s_in_sample', 0):7.1f} {r['vram_peak_reserved_gib']:12.2f} "
              f"{r['host_peak_rss_gib']:8.2f}  " + " ".join(f"{r['stages'].get(s, 0):9.2f}" for s in STAGES))
    if args.json:
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        json.dump({"env": {"torch": torch.__version__, "gpu": gpu}, "rows": rows},
                  open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
