"""How fast the output writer can go: RGB -> YUV conversion and H.264 encoding of full-size frames, on this machine.

    python bench/encode_speed.py --video demo1_video.mp4 [--frames 242] [--json out.json]

Rows (frames per second over ``--frames`` frames, demo1's own frames repeated; ``*_bytes``: the file's size):
- ``writer``: :class:`latentsync.io.video.VideoWriter` as the pipeline uses it (RGB in, swscale BT.709, libx264
  crf 18 medium on frame threads, at most 8), one thread feeding it as the runner's encode thread does;
  ``writer_slice_threads``: the same on slice threads (PyAV's default, the writer's before session 12);
- ``reformat``: the swscale RGB -> yuv420p conversion alone, on 1 and 4 threads (PyAV >= 17);
- ``x264_yuv_{frame,slice}_threads``: libx264 crf 18 medium fed yuv420p frames (conversion done elsewhere), on x264's
  own thread count (``_8``: 8 frame threads, the writer's cap);
- ``nvenc_yuv``: h264_nvenc, when this FFmpeg build and driver have it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _encode_yuv(path: str, yuv: list, fps: int, codec: str, options: dict, thread_type: str | None = None,
                threads: int = 0) -> float:
    import av

    t0 = time.perf_counter()
    with av.open(path, "w") as out:
        stream = out.add_stream(codec, rate=fps)
        h = yuv[0].shape[0] * 2 // 3
        stream.width, stream.height, stream.pix_fmt = yuv[0].shape[1], h, "yuv420p"
        stream.options = options
        if thread_type:
            stream.codec_context.thread_type = thread_type
            stream.codec_context.thread_count = threads
        for i, plane in enumerate(yuv):
            frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return time.perf_counter() - t0


def main() -> None:
    import av

    from latentsync.io.video import VideoWriter, iter_video_frames

    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", type=int, default=242)
    ap.add_argument("--json")
    args = ap.parse_args()
    source = next(iter_video_frames(args.video, batch=64))[0]
    frames = [source[i % len(source)] for i in range(args.frames)]
    rows = {"cpus": os.cpu_count(), "frame_hw": list(source.shape[1:3]), "frames": args.frames}
    with tempfile.TemporaryDirectory() as work:
        for frame_threads in (True, False):
            t0 = time.perf_counter()
            path = os.path.join(work, f"w{frame_threads}.mp4")
            with VideoWriter(path, 25, crf=18, preset="medium", frame_threads=frame_threads) as writer:
                for i in range(0, len(frames), 32):
                    writer.write(np.stack(frames[i:i + 32]))
            name = "writer" if frame_threads else "writer_slice_threads"
            rows[f"{name}_fps"] = args.frames / (time.perf_counter() - t0)
            rows[f"{name}_bytes"] = os.path.getsize(path)
        for threads in (1, 4):
            t0 = time.perf_counter()
            yuv = [av.VideoFrame.from_ndarray(f, format="rgb24")
                   .reformat(format="yuv420p", dst_colorspace="ITU709", threads=threads).to_ndarray() for f in frames]
            rows[f"reformat_{threads}_threads_ms_per_frame"] = (time.perf_counter() - t0) / args.frames * 1e3
        # x264 threads over frames (ffmpeg's choice; x264's own count, or the writer's at most 8) or slices (PyAV's)
        for thread_type, threads in (("FRAME", 0), ("FRAME", 8), ("SLICE", 0)):
            name = f"x264_yuv_{thread_type.lower()}_threads" + (f"_{threads}" if threads else "")
            path = os.path.join(work, f"{name}.mp4")
            seconds = _encode_yuv(path, yuv, 25, "libx264", {"crf": "18", "preset": "medium"}, thread_type, threads)
            rows[f"{name}_fps"] = args.frames / seconds
            rows[f"{name}_bytes"] = os.path.getsize(path)
        try:
            rows["nvenc_yuv_fps"] = args.frames / _encode_yuv(os.path.join(work, "n.mp4"), yuv, 25, "h264_nvenc",
                                                              {"preset": "p4", "cq": "18"})
        except Exception as exc:  # no NVENC in this build or driver
            rows["nvenc_yuv_error"] = f"{type(exc).__name__}: {exc}"[:300]
    print(json.dumps(rows), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
