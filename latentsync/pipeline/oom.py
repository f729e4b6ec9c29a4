"""Out of memory in the middle of a video: shrink the work and retry the same window.

A window is redone with fewer 16-frame chunks per U-Net call, then with smaller VAE batches, until it fits or
nothing is left to shrink. The caller restores the random state before each retry, so the redone window is the
one the first attempt would have made, and windows already written are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")
_OOM_TEXT = ("out of memory", "not enough memory", "can't allocate memory", "failed to allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device or host allocation failure (CUDA, MPS, XPU, CPU), whatever the exception type."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(exc, MemoryError) or (oom is not None and isinstance(exc, oom)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in _OOM_TEXT)


def free_cached_memory(device: torch.device) -> None:
    """Give the allocator's cached blocks back so the retry starts from a clean slate."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


@dataclass
class MemoryPlan:
    """How much work goes into one call: 16-frame chunks per U-Net call and faces per VAE call."""

    batch_chunks: int = 1
    vae_batch: int = 16

    def shrink(self) -> bool:
        """Halve the U-Net's chunks per call, else the VAE batch; False when both are already 1."""
        if self.batch_chunks > 1:
            self.batch_chunks //= 2
            return True
        if self.vae_batch > 1:
            self.vae_batch //= 2
            return True
        return False

    def describe(self) -> str:
        """E.g. '1 chunk(s) per U-Net call, VAE batch 8'."""
        return f"{self.batch_chunks} chunk(s) per U-Net call, VAE batch {self.vae_batch}"


class OutOfMemory(RuntimeError):
    """Even the smallest settings did not fit; the message says where and what to do."""


def run_shrinking(attempt: Callable[[MemoryPlan], T], plan: MemoryPlan, *, where: str,
                  before_retry: Callable[[], None], on_shrink: Callable[[str], None]) -> T:
    """``attempt(plan)``, shrinking ``plan`` and retrying after each out-of-memory error.

    ``before_retry`` undoes the failed attempt (random state, cached memory); ``on_shrink`` gets a line saying what
    was reduced. Raises :class:`OutOfMemory` when nothing is left to shrink.
    """
    while True:
        try:
            return attempt(plan)
        except Exception as exc:  # noqa: BLE001 - only allocation failures are retried, the rest re-raised
            if not is_out_of_memory(exc):
                raise
            before_retry()
            old = plan.describe()
            if not plan.shrink():
                raise OutOfMemory(
                    f"out of memory at {where} even with {old} ({exc}). Free memory on the device (close other "
                    "programs), use fp16 weights or LatentSync 1.5 (256 px), or run on another device."
                ) from exc
            line = f"out of memory at {where} with {old}; retrying that window with {plan.describe()}"
            log.warning("%s", line)
            on_shrink(line)
