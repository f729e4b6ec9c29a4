"""Count the operations ``composite`` dispatches on a real face track: the launch count that bounds it on a GPU.

Runs on the CPU (a ``TorchDispatchMode`` counts every operation, and those on image-sized tensors, which become
the GPU's kernels), over the track's alignment matrices in windows as the runner sends them. ``--baseline``
counts an earlier ``restore.py`` too and reports how many output values differ. Example:

    python bench/composite_ops.py --landmarks demo1_landmarks3.json --frames 242 \\
        --baseline <(git show d7a0e21:latentsync/face/restore.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_face_ops import _baseline  # noqa: E402

from latentsync.face import align, restore  # noqa: E402

IMAGE_SIZED = 4096  # elements: the few numbers of a plan stay below, a face window's planes lie far above


class OpCount(TorchDispatchMode):
    """Counts the operations dispatched inside it: ``counts["all"]``, and ``counts["image_sized"]`` for those touching
    a tensor of at least ``image_sized`` elements."""

    def __init__(self, image_sized: int = IMAGE_SIZED) -> None:
        super().__init__()
        self.image_sized = image_sized
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        self.counts["all"] += 1
        self.counts["image_sized"] += any(t.numel() >= self.image_sized for t in tensors)
        return out


def count(module, frames: torch.Tensor, faces: torch.Tensor, mats: torch.Tensor, window: int) -> tuple[dict, list]:
    """Operations of ``module.composite`` over ``mats`` in windows, and the composited frames' face regions."""
    outputs = []
    with OpCount() as counter:
        for a in range(0, mats.shape[0], window):
            b = min(mats.shape[0], a + window)
            outputs.append(module.composite(frames[: b - a], faces[: b - a], mats[a:b], 256))
    return dict(counter.counts), outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--landmarks", required=True, help="a bench landmarks file ({'meta': {'frame_size_hw'}, 'landmarks3'})")
    ap.add_argument("--frames", type=int, default=242)
    ap.add_argument("--window", type=int, default=32, help="frames per composite call (the runner's window)")
    ap.add_argument("--baseline", metavar="FILE", help="an earlier restore.py to count beside this one")
    args = ap.parse_args()
    data = json.load(open(args.landmarks))
    height, width = data["meta"]["frame_size_hw"]
    mats = align.matrices_from_points(torch.tensor(data["landmarks3"]), 256)[: args.frames]
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (args.window, height, width, 3), dtype=torch.uint8, generator=gen)
    faces = torch.rand(args.window, 3, 256, 256, generator=gen) * 2 - 1
    now, out_now = count(restore, frames, faces, mats, args.window)
    print(f"this tree: {now['all']} operations, {now['image_sized']} on image-sized tensors ({mats.shape[0]} frames)")
    if args.baseline:
        old, out_old = count(_baseline(args.baseline), frames, faces, mats, args.window)
        print(f"baseline:  {old['all']} operations, {old['image_sized']} on image-sized tensors")
        diff = torch.cat([(o.to(torch.int16) - n.to(torch.int16)).abs().flatten() for o, n in zip(out_old, out_now)])
        print(f"outputs: {int((diff > 0).sum())} of {diff.numel()} values differ, by at most {int(diff.max())} levels")


if __name__ == "__main__":
    main()
