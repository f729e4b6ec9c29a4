"""Time face alignment (warp_faces) and paste-back (composite) on synthetic 1080x1920 frames.

Prints ms/frame for R = 256 and 512, frames on the compute device and frames on the CPU with the work on
the device (the ComfyUI case: IMAGE tensors live on the CPU). Needs only torch.

    python bench/bench_face_ops.py --device cuda            # GPU box
    python bench/bench_face_ops.py --device cpu --threads 2 # local CPU
    python bench/bench_face_ops.py --baseline restore_old.py  # beside an earlier restore.py (git show REV:...)
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentsync.face import align, restore  # noqa: E402


def _points(count: int, height: int, width: int, distance: float, gen: torch.Generator) -> torch.Tensor:
    """Alignment points of a face drifting around the frame centre (eyebrow distance ``distance`` px)."""
    d = distance
    local = torch.tensor([[-d / 2, -0.3 * d], [d / 2, -0.3 * d], [0.0, 0.2 * d]])
    out = []
    for i in range(count):
        angle = 0.1 * math.sin(i / 5)
        rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        centre = torch.tensor([width / 2 + 20 * math.sin(i / 7), height * 0.45 + 10 * math.cos(i / 9)])
        out.append(local @ rot.T + centre + torch.rand(2, generator=gen))
    return torch.stack(out)


def _timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (kernel selection, caches)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def _compare(frames: torch.Tensor, faces: torch.Tensor, mats: torch.Tensor, res: int, device: torch.device) -> None:
    """Print how far the device results are from the CPU ones (uint8 levels)."""
    pairs = [
        ("warp_faces", align.warp_faces(frames, mats, res), align.warp_faces(frames.to(device), mats, res).cpu()),
        (
            "composite fp32",
            restore.composite(frames, faces, mats, res),
            restore.composite(frames.to(device), faces.to(device), mats, res).cpu(),
        ),
        (
            "composite fp16",
            restore.composite(frames, faces, mats, res),
            restore.composite(frames.to(device), faces.to(device).half(), mats, res, dtype=torch.float16).cpu(),
        ),
    ]
    for label, cpu, dev in pairs:
        diff = (cpu.to(torch.int16) - dev.to(torch.int16)).abs()
        print(f"R={res} {label:16s} device vs CPU: max {int(diff.max())}, "
              f"{100 * (diff > 0).float().mean().item():.4f} % of values differ")


def _baseline(path: str):
    """An earlier ``latentsync/face/restore.py`` (e.g. ``git show REV:latentsync/face/restore.py``), loaded as a module of
    the same package so that its relative imports resolve against this tree."""
    name = "latentsync.face._baseline_restore"  # any file name, e.g. a shell's <(git show ...)
    spec = importlib.util.spec_from_file_location(name, path, loader=importlib.machinery.SourceFileLoader(name, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=1920)
    parser.add_argument("--width", type=int, default=1080)
    parser.add_argument("--eyebrow-distance", type=float, default=150.0, help="face size in frame pixels")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--compare-cpu", action="store_true", help="also report device-vs-CPU differences")
    parser.add_argument("--baseline", metavar="FILE", help="an earlier restore.py: its composite timed beside this one, "
                        "and the two outputs compared")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    frames_cpu = torch.randint(0, 256, (args.batch, args.height, args.width, 3), dtype=torch.uint8, generator=gen)
    frames_dev = frames_cpu.to(device)
    points = _points(args.batch, args.height, args.width, args.eyebrow_distance, gen)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}; {args.batch} frames {args.height}x{args.width}, "
          f"eyebrow distance {args.eyebrow_distance:.0f} px, {torch.get_num_threads()} CPU threads")

    t = _timed(lambda: align.matrices_from_points(points, 256), torch.device("cpu"), args.repeats)
    print(f"matrices_from_points (CPU)            {1000 * t / args.batch:8.3f} ms/frame")
    for res in (256, 512):
        mats = align.matrices_from_points(points, res)
        faces = torch.rand((args.batch, 3, res, res), generator=gen, device="cpu").mul(2).sub(1).to(device)
        rows = [
            ("warp_faces, frames on device", lambda: align.warp_faces(frames_dev, mats, res)),
            ("composite fp32, frames on device", lambda: restore.composite(frames_dev, faces, mats, res)),
            (
                "composite fp16, frames on device",
                lambda: restore.composite(frames_dev, faces.half(), mats, res, dtype=torch.float16),
            ),
        ]
        if args.baseline:
            old = _baseline(args.baseline)
            rows.append(("composite fp32, frames on device (baseline)", lambda: old.composite(frames_dev, faces, mats, res)))
            diff = (old.composite(frames_dev, faces, mats, res).to(torch.int16)
                    - restore.composite(frames_dev, faces, mats, res).to(torch.int16)).abs()
            print(f"R={res} composite fp32 against the baseline: max {int(diff.max())} levels, "
                  f"{int((diff > 0).sum())} of {diff.numel()} values differ")
        if device.type != "cpu":
            rows += [
                ("warp_faces, CPU frames -> device", lambda: align.warp_faces(frames_cpu, mats, res, device=device)),
                (
                    "composite fp32, CPU frames -> device",
                    lambda: restore.composite(frames_cpu, faces, mats, res, device=device),
                ),
            ]
        for label, fn in rows:
            t = _timed(fn, device, args.repeats)
            print(f"R={res} {label:44s} {1000 * t / args.batch:8.3f} ms/frame")
        if args.compare_cpu and device.type != "cpu":
            _compare(frames_cpu[:2], faces[:2].cpu(), mats[:2], res, device)
        params = restore.outline_params(mats[:1], (args.height, args.width), res)[0]
        print(f"R={res} soft-mask params (erode, blur, sigma) of frame 0: {params}")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
