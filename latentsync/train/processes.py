"""The training processes: one process, or one per GPU / CPU slot under ``torchrun`` (torch.distributed).

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; without them the trainer is a
one-process group of its own. The backend is NCCL on CUDA and gloo on the CPU (upstream hard-codes NCCL and a
GPU). A group this module starts is destroyed when the run ends; one the caller started is left alone.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Processes:
    """This process's place in the group and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    owned: bool

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder."""
        return self.rank == 0


def pick_device(requested: str | None, local_rank: int) -> torch.device:
    """``cuda:<local rank>`` when CUDA is there (or asked), else the CPU."""
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu.")
        return torch.device("cuda", local_rank if requested == "cuda" else torch.device(requested).index or 0)
    if requested != "cpu":
        raise ValueError(f"--device {requested!r}: use auto, cpu or cuda.")
    return torch.device("cpu")


def start(requested_device: str | None = None) -> Processes:
    """Join the torchrun group (or an already started one), or start a group of one."""
    env = os.environ
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(env.get("LOCAL_RANK", rank))
        device = pick_device(requested_device, local)
        return Processes(rank, world, local, device, dist.get_backend(), owned=False)
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
        device = pick_device(requested_device, local)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=TIMEOUT)
        return Processes(rank, world, local, device, backend, owned=True)
    device = pick_device(requested_device, 0)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=TIMEOUT)
    return Processes(0, 1, 0, device, backend, owned=True)


def finish(procs: Processes) -> None:
    """Destroy the group if this module started it."""
    if procs.owned and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(value: float, procs: Processes) -> float:
    """The mean of a number over all processes (upstream's ``gather_loss``)."""
    t = torch.tensor([float(value)], dtype=torch.float32, device=procs.device)
    if procs.world_size == 1:
        return float(t.item())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / procs.world_size


def gather_objects(obj: Any, procs: Processes) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    if procs.world_size == 1:
        return [obj]
    out: list[Any] = [None] * procs.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, procs: Processes) -> Any:
    """Rank 0's ``obj`` on every process."""
    if procs.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(procs: Processes) -> None:
    """Wait for every process."""
    if procs.world_size > 1:
        dist.barrier()
