"""``--devices``: which devices one video is sharded over, checked before anything loads.

``all`` is every CUDA GPU here; a list names them (``cuda:0,cuda:1``). CPU worker processes (``cpu:0,cpu:1``) run
the same code without a GPU (tests, and proving equality on a laptop). One device is a plain run on it.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Optional

from ..cli_checks import UsageError

FLAG_HELP = ("shard one video over several devices of this host, one worker each (needs Ray: pip install "
             "\"latentsync-nodes[ray]\"): 'all' (every CUDA GPU) or a list such as cuda:0,cuda:1 (cpu:0,cpu:1: CPU "
             "worker processes); the first one also runs face detection, alignment and compositing. The result is "
             "the single-device run's with the same options. One device: a plain run on it")


def add_devices_argument(group: argparse._ArgumentGroup) -> None:
    """The ``--devices`` flag (lip-sync command, runtime group)."""
    group.add_argument("--devices", default=None, metavar="LIST", help=FLAG_HELP)


def ray_available() -> bool:
    """Can ``import ray`` work (without importing it)?"""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def parse_devices(text: str) -> list[str]:
    """The devices ``text`` names, normalised (``cuda:1``, ``cpu:0``); UsageError for anything that cannot work."""
    import torch

    flag = f"--devices {text}"
    if text.strip().lower() == "all":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"{flag}: no CUDA GPU here; name CPU workers instead (cpu:0,cpu:1) or drop --devices")
        return [f"cuda:{i}" for i in range(count)]
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise UsageError(f"{flag}: an empty name in the list; give e.g. cuda:0,cuda:1 or all")
    devices = []
    for name in names:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError, TypeError):
            raise UsageError(f"{flag}: {name!r} is not a device name (cuda:0, cuda:1, ... or cpu:0, cpu:1)") from None
        if device.type not in ("cuda", "cpu"):
            raise UsageError(f"{flag}: a video is sharded over CUDA GPUs (or CPU workers), not {device.type!r}")
        if device.index is None:
            raise UsageError(f"{flag}: number each device ({device.type}:0,{device.type}:1) or use --devices all")
        devices.append(f"{device.type}:{device.index}")
    if len({d.split(":")[0] for d in devices}) > 1:
        raise UsageError(f"{flag}: all CUDA GPUs or all CPU workers, not both (their results differ)")
    repeated = sorted({d for d in devices if devices.count(d) > 1})
    if repeated:
        raise UsageError(f"{flag}: {', '.join(repeated)} listed more than once (one worker per device)")
    if devices[0].startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"{flag}: CUDA is not available here; use CPU workers (cpu:0,cpu:1) or drop --devices")
        count = torch.cuda.device_count()
        missing = [d for d in devices if int(d.split(":")[1]) >= count]
        if missing:
            raise UsageError(f"{flag}: only {count} CUDA device(s) here, no {', '.join(missing)}")
    return devices


def check_devices(args: argparse.Namespace) -> Optional[list[str]]:
    """Resolve ``args.devices`` in place: None (no sharding; one device becomes ``args.device``) or the list of two
    or more devices, ``args.device`` then the first (the driver's). UsageError when they cannot work."""
    text = getattr(args, "devices", None)
    if text is None:
        return None
    devices = parse_devices(text)
    driver = "cpu" if devices[0].startswith("cpu") else devices[0]
    if args.device not in ("auto", driver, devices[0]):
        raise UsageError("--devices replaces --device (its first device runs detection and compositing); give one")
    args.device = driver
    if len(devices) == 1:
        args.devices = None
        return None
    if getattr(args, "min_sync", None) is not None:
        raise UsageError("--min-sync (the sync gate) runs on one device; drop --devices or --min-sync")
    if not ray_available():
        from .shard import RAY_MISSING

        raise UsageError(RAY_MISSING)
    args.devices = devices
    return devices
