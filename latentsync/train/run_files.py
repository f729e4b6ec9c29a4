"""The files of a training run folder: weights checkpoints, resume states, the loss table, written atomically.

``checkpoints/checkpoint-<step>.pt`` is upstream's format (``{"state_dict", "global_step", "train_step_list",
"train_loss_list", "val_step_list", "val_loss_list"}``): upstream's ``ckpt.resume_ckpt_path`` and inference, and
this pack's ``load_stable_syncnet``, read it. ``checkpoints/resume-<step>.pt`` adds what a bit-exact resume
needs: optimizer and gradient-scaler states, every process's RNG states, the data position. Every file is written
to a temporary name in its folder and renamed into place, so a crash never leaves a half-written file; nothing
outside the run folder is written.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

RESUME_FORMAT = "latentsync-syncnet-resume/1"
CHECKPOINTS = "checkpoints"
FILE_MODE = 0o644  # mkstemp makes 0600 files; run files are ordinary ones


@dataclass
class History:
    """Upstream's loss lists (train loss per step, validation loss at validation steps) and accuracies."""

    train_step_list: list[int] = field(default_factory=list)
    train_loss_list: list[float] = field(default_factory=list)
    val_step_list: list[int] = field(default_factory=list)
    val_loss_list: list[float] = field(default_factory=list)
    val_accuracy_list: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        """Plain lists (what the checkpoint stores)."""
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "History":
        """Lists from a checkpoint (missing ones empty)."""
        return cls(**{k: list(data.get(k, [])) for k in cls().__dict__})


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file beside ``path``, flushed, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically (temporary file + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """``<run>/checkpoints/checkpoint-<step>.pt`` (upstream's name)."""
    return Path(run_dir) / CHECKPOINTS / f"checkpoint-{step}.pt"


def resume_path(run_dir: str | os.PathLike, step: int) -> Path:
    """``<run>/checkpoints/resume-<step>.pt``."""
    return Path(run_dir) / CHECKPOINTS / f"resume-{step}.pt"


def save_weights(run_dir: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], step: int, history: History) -> Path:
    """Upstream's checkpoint dict (CPU tensors) at ``checkpoint-<step>.pt``."""
    weights = OrderedDict((k, v.detach().cpu()) for k, v in state_dict.items())  # as module.state_dict() gives it
    data = {"state_dict": weights, "global_step": step}
    data.update({k: v for k, v in history.as_dict().items() if k != "val_accuracy_list"})
    return atomic_save(data, checkpoint_path(run_dir, step))


def save_resume(run_dir: str | os.PathLike, *, step: int, next_micro: int, world_size: int, optimizer: Mapping,
                scaler: Mapping | None, rng_states: list[dict[str, Any]], history: History) -> Path:
    """The resume state at ``resume-<step>.pt`` (written after the step's weights checkpoint)."""
    return atomic_save({"format": RESUME_FORMAT, "global_step": step, "next_micro_step": next_micro,
                        "world_size": world_size, "optimizer": optimizer, "scaler": scaler, "rng": rng_states,
                        "history": history.as_dict()}, resume_path(run_dir, step))


def latest_resume(run_dir: str | os.PathLike) -> Path | None:
    """The resume file with the highest step whose weights checkpoint is also there, or None."""
    folder = Path(run_dir) / CHECKPOINTS
    best: tuple[int, Path] | None = None
    for p in folder.glob("resume-*.pt") if folder.is_dir() else ():
        m = re.fullmatch(r"resume-(\d+)\.pt", p.name)
        if m and checkpoint_path(run_dir, int(m.group(1))).is_file() and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return None if best is None else best[1]


def read_resume(path: str | os.PathLike) -> dict[str, Any]:
    """A resume file (weights_only), checked for its format."""
    data = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != RESUME_FORMAT:
        raise ValueError(f"{path} is not a SyncNet resume file ({RESUME_FORMAT}).")
    return data


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch RNG states (CPU, and the CUDA device's when training there)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Restore states saved by :func:`rng_state`."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
