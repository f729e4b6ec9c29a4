"""The command line's option checks that argparse cannot express: number ranges, the device, quality presets.

Each refusal is a :class:`UsageError` (exit 2) raised before any model loads, naming the option and the fix.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from .configs import DEFAULT_VERSION
from .option_checks import OptionError, check_number
from .options import OPTIONS

if TYPE_CHECKING:
    import torch

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
DEFAULTS = {"version": DEFAULT_VERSION, **{name: OPTIONS[name].default for name in ("steps", "guidance", "deepcache")}}


class UsageError(ValueError):
    """An option that cannot work, found before anything is loaded (exit 2)."""


def apply_quality(args: argparse.Namespace) -> None:
    """Fill --version, --steps, --guidance and --deepcache from --quality where not given (explicit ones win)."""
    from .presets import resolve

    explicit = {"version": args.version, "steps": args.steps, "guidance": args.guidance, "deepcache": args.deepcache}
    for key, value in resolve(args.quality, explicit, DEFAULTS).items():
        setattr(args, key, value)


def check_numbers(args: argparse.Namespace) -> None:
    """Every number is finite and in its range (see ``option_checks.SPECS``); --face-index is 'largest' or 0..64."""
    try:
        args.steps = check_number(args.steps, "steps", "--steps")
        args.guidance = check_number(args.guidance, "guidance", "--guidance")
        args.crf = check_number(args.crf, "crf", "--crf")
        args.encode_threads = check_number(args.encode_threads, "encode_threads", "--encode-threads")
        args.fps = check_number(args.fps, "fps", "--fps")
        if args.seed != -1:
            args.seed = check_number(args.seed, "seed", "--seed (or -1 for a random seed)")
        if args.batch_chunks != 0:
            args.batch_chunks = check_number(args.batch_chunks, "batch_chunks", "--batch-chunks (or 0 for auto)")
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    if args.face_index not in ("largest", "speaker"):
        try:
            args.face_index = str(check_number(int(args.face_index), "face_index", "--face-index"))
        except (ValueError, OptionError):
            raise UsageError(f"--face-index must be 'largest', 'speaker' or a face number 0..64 (0 is the leftmost "
                             f"face); got "
                             f"{args.face_index!r}") from None
    for flag in ("unet", "whisper", "vae"):
        path = getattr(args, flag)
        if path and not os.path.exists(path):
            raise UsageError(f"--{flag}: no such file or folder: {path}")
    if args.models_dir and os.path.exists(args.models_dir) and not os.path.isdir(args.models_dir):
        raise UsageError(f"--models-dir is a file, not a folder: {args.models_dir}")


def _xpu_available(torch) -> bool:
    return bool(getattr(torch, "xpu", None) is not None and torch.xpu.is_available())


def resolve_device(name: str) -> "torch.device":
    """The torch device for ``--device``; UsageError unless it is cpu, cuda[:N], mps or xpu and present here."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type not in DEVICE_TYPES:
        raise UsageError(f"--device {name}: LatentSync runs on cpu, cuda, mps or xpu, not on {device.type!r}; "
                         "use --device auto or cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no usable NVIDIA GPU or driver"
            raise UsageError(f"--device {name}: CUDA is not available here ({build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type == "xpu" and not _xpu_available(torch):
        raise UsageError(f"--device {name}: no Intel XPU is available here; use --device cpu")
    return device
