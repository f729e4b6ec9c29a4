"""How well one video shards over N GPUs, measured on one: model load, the driver's serial work (audio, detection,
decode, align, composite, encode), each window's generate time on a worker and its object-store transfers; then
the expected N-device time, speed-up and efficiency from those (an Amdahl-style pipeline model).

    python bench/shard_scaling.py --video demo1_video.mp4 --audio demo1_audio.wav --models-dir MODELS [--version 1.6]
    python bench/shard_scaling.py --tiny          # tiny random models on the CPU: checks the script, not a result

Three runs of the same video: the plain single-device run (stage timer), a decode-only and an encode-only pass,
and the sharded run with ONE worker on the same device (Ray actor: transfers and worker compute, and a check that
its frames equal the plain run's). Model (W windows, N workers; one-time: A audio, D detection pass, L worker
start; per video: P = sum of worker generate + fetch, S = driver align + composite + put + get, plus decode and
encode running in their own threads):

    T(N) = L + A + D + max(P / N, S, decode, encode) + P / W      (the last term: filling / draining the pipe)
    speed-up(N) = T_plain / T(N),  efficiency(N) = speed-up(N) / N

Prints one JSON line with every measurement after the table (--json FILE writes it too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEDIA = REPO.parent / "shared" / "media"


def cpu_torchvision_stub() -> Optional[str]:
    """The test venvs' stub for a CUDA torchvision on CPU torch (tests/cpu_torchvision.py), applied here when that
    mismatch exists; returns the hook Ray's workers need too, or None (a normal install)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from cpu_torchvision import stub_registrations_if_needed
    except ImportError:
        return None
    return "cpu_torchvision.stub_registrations_if_needed" if stub_registrations_if_needed() else None


def start_ray(workers: int) -> None:
    """A local Ray cluster whose workers import this checkout (and get the stub above when it applies)."""
    import ray

    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}}
    hook = cpu_torchvision_stub()
    if hook:
        env["worker_process_setup_hook"] = hook
    ray.init(num_cpus=max(workers, os.cpu_count() or 1), num_gpus=torch.cuda.device_count(),
             include_dashboard=False, runtime_env=env)


class StageTimer:
    """Seconds per stage name, with a device sync at each boundary (the runner's ``timer``)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.sync()
        began = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began


@contextlib.contextmanager
def captured_frames(into: list) -> Iterator[None]:
    """Keep a copy of every batch of frames the runner hands to the video writer."""
    from latentsync.io import encode

    original = encode.VideoWriter.write

    def keep(self: Any, frames: Any) -> None:
        into.append(np.array(frames))
        original(self, frames)

    encode.VideoWriter.write = keep
    try:
        yield
    finally:
        encode.VideoWriter.write = original


def trimmed_audio(path: str, seconds: Optional[float], folder: str) -> str:
    """``path``, or its first ``seconds`` as a wav (the run follows the audio's length)."""
    if not seconds:
        return path
    import av

    from latentsync.audio.waveform import load_audio

    wave, rate = load_audio(path)
    pcm = (wave[:, : int(seconds * rate)].clamp(-1, 1).numpy() * 32767).astype(np.int16)
    out = os.path.join(folder, "audio.wav")
    with av.open(out, "w") as dst:
        stream = dst.add_stream("pcm_s16le", rate=rate, layout="mono" if pcm.shape[0] == 1 else "stereo")
        frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s16", layout=stream.layout.name)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out


def model_files(args: argparse.Namespace, folder: str) -> dict[str, str]:
    """The U-Net / Whisper / VAE paths: tiny random ones (--tiny), explicit ones, or the models root's."""
    if args.tiny:
        from latentsync.tiny_models import write_tiny_models

        paths = write_tiny_models(Path(folder) / "models")
        return {"unet": str(paths.unet), "whisper": str(paths.whisper), "vae": str(paths.vae)}
    from latentsync import model_files as mf
    from latentsync.locations import default_models_dir

    root = args.models_dir or default_models_dir()
    specs = {"unet": (args.unet, mf.UNET_FILES[args.version]), "whisper": (args.whisper, mf.WHISPER_TINY),
             "vae": (args.vae, mf.VAE_FT_MSE)}
    found = {key: explicit or spec.find(root) for key, (explicit, spec) in specs.items()}
    missing = [key for key, path in found.items() if not path]
    if missing:
        sys.exit(f"model files not found under {root}: {', '.join(missing)} (--models-dir, or --unet/--whisper/--vae)")
    return found


def decode_seconds(video: str) -> float:
    from latentsync.pipeline.runner import FrameSource

    began = time.perf_counter()
    for _ in FrameSource(video).iter_all():
        pass
    return time.perf_counter() - began


def encode_seconds(frames: np.ndarray, fps: Any, folder: str) -> float:
    from latentsync.io.video import VideoWriter

    began = time.perf_counter()
    with VideoWriter(os.path.join(folder, "encode_only.mp4"), fps, crf=18, preset="medium") as writer:
        for start in range(0, len(frames), 16):
            writer.write(frames[start:start + 16])
    return time.perf_counter() - began


def model_table(m: dict[str, float], ns: list[int]) -> list[dict[str, float]]:
    """Expected time, speed-up and efficiency for each N (see the module docstring)."""
    rows = []
    for n in ns:
        steady = max(m["P"] / n, m["S"], m["decode"], m["encode"])
        t = m["L"] + m["A"] + m["D"] + steady + m["P"] / max(1, m["W"])
        rows.append({"n": n, "seconds": t, "speedup": m["T_plain"] / t, "efficiency": m["T_plain"] / t / n,
                     "bound": "generate" if steady == m["P"] / n else
                     next(k for k in ("S", "decode", "encode") if steady == m[k])})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--video", default=str(MEDIA / "demo1_video.mp4"))
    p.add_argument("--audio", default=str(MEDIA / "demo1_audio.wav"))
    p.add_argument("--seconds", type=float, default=None, help="use only the audio's first seconds (tiny: 1.5)")
    p.add_argument("--tiny", action="store_true", help="tiny random models on the CPU (checks the script)")
    p.add_argument("--models-dir")
    p.add_argument("--version", default="1.6", choices=["1.5", "1.6"])
    p.add_argument("--unet")
    p.add_argument("--whisper")
    p.add_argument("--vae")
    p.add_argument("--device", default=None, help="default: cuda:0 when there is one, else cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 20; tiny: 2)")
    p.add_argument("--batch-chunks", type=int, default=1)
    p.add_argument("--detector", default="auto")
    p.add_argument("--ns", default="1,2,4,8", help="device counts to model")
    p.add_argument("--json", help="also write the measurements and the model to this file")
    args = p.parse_args()

    import logging

    from latentsync.distributed.shard import ShardPool
    from latentsync.pipeline.loading import load_models, pick_dtype
    from latentsync.pipeline.runner import RunOptions, lipsync_file
    from latentsync.pipeline.sampler import SamplerOptions

    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
    dtype = pick_dtype(device, args.dtype)
    steps = args.steps or (2 if args.tiny else 20)
    start_ray(1)
    with tempfile.TemporaryDirectory(prefix="shard_scaling_") as folder:
        files = model_files(args, folder)
        audio = trimmed_audio(args.audio, args.seconds or (1.5 if args.tiny else None), folder)
        timer = StageTimer(device)
        with timer("load"):
            models = load_models(files["unet"], files["whisper"], version=None if args.tiny else args.version,
                                 device=device, dtype=dtype, vae_path=files["vae"])
        options = RunOptions(sampler=SamplerOptions(steps=steps, seed=1247, batch_chunks=args.batch_chunks),
                             detector=args.detector, overwrite=True, models_dirs=[args.models_dir or folder])
        plain: list = []
        with captured_frames(plain):
            began = time.perf_counter()
            report = lipsync_file(models, models.vae, args.video, audio, os.path.join(folder, "plain.mp4"), options,
                                  device=device, dtype=dtype, timer=timer)
            t_plain = time.perf_counter() - began
        plain_frames = np.concatenate(plain)
        stages = dict(timer.seconds)
        decode = decode_seconds(args.video)
        encode = encode_seconds(plain_frames, report.fps, folder)

        worker_device = str(device) if device.type == "cuda" else "cpu:0"
        began = time.perf_counter()
        pool = ShardPool([worker_device], {"unet": files["unet"], "vae": files["vae"]},
                         version=None if args.tiny else args.version, dtype=dtype)
        worker_start = time.perf_counter() - began
        try:
            sharded: list = []
            timer2 = StageTimer(device)
            with captured_frames(sharded):
                began = time.perf_counter()
                lipsync_file(models, models.vae, args.video, audio, os.path.join(folder, "sharded.mp4"), options,
                             device=device, dtype=dtype, timer=timer2, shards=pool)
                t_sharded = time.perf_counter() - began
            stats = pool.last_stats  # the runner took this video's statistics
            load_worker = pool.load_s
        finally:
            pool.close()
        equal = bool(np.array_equal(np.concatenate(sharded), plain_frames))
    import ray

    ray.shutdown()

    w = max(1, stats.windows)
    driver = timer2.seconds
    m = {
        "frames": report.frames, "W": stats.windows, "T_plain": t_plain + stages["load"],
        "L": worker_start, "A": stages.get("audio", 0.0), "D": stages.get("detect", 0.0),
        "P": stats.compute_s + stats.fetch_s,
        "S": driver.get("align", 0.0) + driver.get("composite", 0.0) + stats.put_s + stats.get_s,
        "chunks": -(-report.frames // 16),
        "decode": decode, "encode": encode,
    }
    ns = [int(n) for n in args.ns.split(",")]
    rows = model_table(m, ns)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), {dtype}, "
          f"{'tiny models' if args.tiny else 'LatentSync ' + args.version}, {steps} steps, "
          f"{report.frames} frames in {w} windows")
    print(f"model load: in-process {stages['load']:.2f} s; a worker (Ray actor start + load) {worker_start:.2f} s "
          f"(its load {load_worker:.2f} s)")
    print(f"plain run {t_plain:.2f} s: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items() if k != "load"))
    print(f"decode only {decode:.2f} s, encode only {encode:.2f} s")
    print(f"sharded run, one worker: {t_sharded:.2f} s; per window: generate {stats.compute_s / w * 1000:.1f} ms "
          f"({stats.compute_s / max(1, m['chunks']) * 1000:.1f} ms per 16-frame chunk), transfers "
          f"{stats.transfer_s / w * 1000:.2f} ms (put {stats.put_s / w * 1000:.2f}, fetch "
          f"{stats.fetch_s / w * 1000:.2f}, get {stats.get_s / w * 1000:.2f}), "
          f"{(stats.bytes_in + stats.bytes_out) / w / 2**20:.2f} MiB; frames equal "
          f"to the plain run: {equal}")
    serial = m["A"] + m["D"] + m["S"]
    print(f"serial part (audio + detection + driver per-window work) {serial:.2f} s, parallel part (generate) "
          f"{m['P']:.2f} s: serial fraction {serial / (serial + m['P']):.3f}")
    print(f"{'N':>3} {'time s':>9} {'speed-up':>9} {'efficiency':>10}  bound by")
    for row in rows:
        print(f"{row['n']:>3} {row['seconds']:>9.2f} {row['speedup']:>9.2f} {row['efficiency']:>10.2f}  {row['bound']}")
    out = {"device": str(device), "dtype": str(dtype), "tiny": args.tiny, "steps": steps, "frames_equal": equal,
           "measured": m, "stages_plain": stages, "stages_sharded": driver, "transfer": {
               "put_s": stats.put_s, "fetch_s": stats.fetch_s, "get_s": stats.get_s,
               "bytes": stats.bytes_in + stats.bytes_out}, "model": rows}
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
