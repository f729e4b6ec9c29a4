"""Time the sync score's stages on a 10 s 1080p clip: decode, S3FD (+ cut detection), the 224 px crops, SyncNet;
and the sync gate's whole call, which scores frames in memory with the pipeline's tracked boxes and cuts (no decode,
no S3FD, no cut scan).

The demo video (demo1, 1080x1920, 25 fps) is looped / trimmed to ``--frames`` (default 250 = 10 s) and scored
with full-size networks holding deterministic random weights (latentsync/metrics/tiny.py; real weights take the
same time). Random S3FD weights find no real face, so the crops and SyncNet run on one track over every frame at
demo1's face box, which is what a real S3FD gives on this video (one speaker, one track). Prints one JSON object.

    python bench/score_speed.py --device cuda                        # the GPU figure (10 s, 250 frames)
    python bench/score_speed.py --device cpu --frames 40 --threads 2 # a quick check on a CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latentsync.metrics import faces, scenes, tiny  # noqa: E402
from latentsync.metrics.crops import crop_faces, crop_geometry, crop_regions  # noqa: E402
from latentsync.metrics.s3fd import S3FD, load_s3fd  # noqa: E402
from latentsync.metrics.score import SyncModels, score_clip  # noqa: E402
from latentsync.metrics.sync import score_track  # noqa: E402
from latentsync.metrics.syncnet_v2 import SyncNetV2, load_syncnet_v2  # noqa: E402
from latentsync.metrics.tracks import FaceTrack  # noqa: E402

MEDIA = REPO.parent / "shared" / "media"
FACE_BOX = (352.0, 480.0, 800.0, 928.0)  # demo1's face (x1, y1, x2, y2) at full resolution


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def _models(device: torch.device) -> tuple[S3FD, SyncNetV2]:
    """Full-size S3FD and SyncNet v2 with random weights, written and read back as the real files are."""
    with tempfile.TemporaryDirectory() as tmp:
        s3fd = load_s3fd(tiny.write_s3fd(Path(tmp) / "sfd_face.pth", seed=5), device=device)
        syncnet = load_syncnet_v2(tiny.write_syncnet_v2(Path(tmp) / "syncnet_v2.model", seed=3), device=device)
    return s3fd, syncnet


def decode(video: Path, count: int) -> torch.Tensor:
    """``count`` frames of ``video``, looping it when it is shorter (uint8 RGB, CPU)."""
    if video.suffix == ".npy":  # pre-decoded frames (F, H, W, 3) uint8, for a machine without PyAV
        frames = torch.from_numpy(np.load(video))
        return frames.repeat(-(-count // frames.shape[0]), 1, 1, 1)[:count].contiguous()
    from latentsync.io.decode import iter_video_frames

    chunks, have = [], 0
    while have < count:
        for frames, _ in iter_video_frames(video, batch=32):
            take = frames[: count - have]
            chunks.append(torch.from_numpy(take))
            have += take.shape[0]
            if have >= count:
                break
    return torch.cat(chunks)


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--frames", type=int, default=250,
                   help="frames to score (250 = 10 s at 25 fps; 12 or more: the crop box is median-filtered over 13)")
    p.add_argument("--video", type=Path, default=MEDIA / "demo1_video.mp4",
                   help="the clip (or a .npy of decoded uint8 frames, looped, where PyAV is missing)")
    p.add_argument("--audio", type=Path, default=MEDIA / "demo1_audio.wav",
                   help="its audio (or a .npy of 16 kHz mono float32 samples)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--detect-batch", type=int, default=8, help="frames per S3FD forward (the library's default: 8)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    s3fd, syncnet = _models(device)

    frames, t_decode = _timed(device, lambda: decode(args.video, args.frames))
    n, h, w = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    if args.audio.suffix == ".npy":  # 16 kHz mono float32, for a machine without PyAV
        wav = torch.from_numpy(np.load(args.audio))
    else:
        from latentsync.audio.waveform import load_16k_mono

        wav = load_16k_mono(args.audio)
    reps = -(-n * 640 // max(1, wav.shape[0]))
    wav = wav.repeat(reps)[: n * 640]

    def detect():
        boxes, parts, previous = [], [], None
        for start in range(0, n, args.detect_batch):
            batch = frames[start:start + args.detect_batch].to(device)
            boxes += faces.detect_faces(s3fd, batch)
            part, previous = scenes.content_scores(batch, previous)
            parts.append(part)
        return boxes, scenes.detect_cuts(torch.cat(parts))

    (_, cuts), t_s3fd = _timed(device, detect)
    track = FaceTrack(np.arange(n), np.tile(np.asarray(FACE_BOX), (n, 1)))
    regions = crop_regions(*crop_geometry(track), (h, w))

    def crops():
        out = [crop_faces(frames[s:s + 32].to(device), regions[s:s + 32]) for s in range(0, n, 32)]
        return torch.cat(out)

    crops_224, t_crops = _timed(device, crops)
    result, t_syncnet = _timed(device, lambda: score_track(syncnet, crops_224, n, wav))
    total = t_decode + t_s3fd + t_crops + t_syncnet
    # The sync gate's own call: frames in memory, the pipeline's tracked boxes and cuts: no decode, S3FD or cut scan.
    box = np.asarray([[*FACE_BOX, 1.0]])
    gated, t_gate = _timed(device, lambda: score_clip(frames, wav, 25, SyncModels(syncnet), boxes=[box] * n,
                                                      cuts=[]))
    record = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "frames": n, "seconds_of_video": n / 25.0, "frame_size": [w, h],
        "weights": "full-size networks, deterministic random weights", "cuts": len(cuts),
        "decoded_from": "npy (decode time not comparable)" if args.video.suffix == ".npy" else "video",
        "windows": None if result is None else result.num_windows,
        "seconds": {"decode": round(t_decode, 4), "s3fd_and_cuts": round(t_s3fd, 4), "crops": round(t_crops, 4),
                    "syncnet": round(t_syncnet, 4), "total": round(total, 4)},
        "ms_per_frame": round(1000 * total / n, 2),
        "gate_score": {"seconds": round(t_gate, 4), "ms_per_frame": round(1000 * t_gate / n, 2),
                       "scorable": gated.scorable, **({} if gated.scorable else {"reason": gated.reason}),
                       "what": "score_clip with the tracked boxes and cuts (the gate's call): crops, SyncNet"},
    }
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
