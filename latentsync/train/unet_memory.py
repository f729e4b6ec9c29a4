"""Memory options of U-Net training: block-wise gradient checkpointing, the optimizer kind, frozen-net dtype.

Checkpointing recomputes each U-Net layer (resnet + transformer + motion module) and the mid block in the
backward pass instead of keeping their activations (upstream: ``unet.enable_gradient_checkpointing()``); values
and gradients are unchanged. ``adamw_fused`` is torch's fused AdamW (CUDA); ``adamw_8bit`` is bitsandbytes'
AdamW8bit (optimizer states in 8 bits, about 6 bytes per trainable parameter fewer).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .syncnet_config import ConfigError


def _checkpointed(fn: Callable[..., torch.Tensor], *args: object) -> torch.Tensor:
    """Run ``fn`` under non-reentrant activation checkpointing."""
    return checkpoint(fn, *args, use_reentrant=False)


def enable_gradient_checkpointing(unet: nn.Module) -> None:
    """Checkpoint every down/up level's layers and the mid block of this U-Net instance (no global change)."""
    for level in [*unet.down_blocks, *unet.up_blocks]:
        level.layer = functools.partial(_checkpointed, level.layer)
    unet.mid_block.forward = functools.partial(_checkpointed, unet.mid_block.forward)


def new_optimizer(params: Sequence[nn.Parameter], kind: str, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over ``params`` (torch defaults otherwise, as upstream), plain, fused or 8-bit."""
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if kind == "adamw_fused":
        if device.type != "cuda":
            raise ConfigError("memory.optimizer adamw_fused needs a CUDA device; use adamw on the CPU.")
        return torch.optim.AdamW(params, lr=lr, fused=True)
    if kind == "adamw_8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise ConfigError("memory.optimizer adamw_8bit needs bitsandbytes: pip install bitsandbytes "
                              "(CUDA only), or use adamw / adamw_fused.") from exc
        return bnb.optim.AdamW8bit(params, lr=lr)
    raise ConfigError(f"memory.optimizer {kind!r}: use adamw, adamw_fused or adamw_8bit.")


def frozen_dtype(name: str, precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the frozen VAE and SyncNet: ``auto`` = the mixed-precision dtype on CUDA (upstream: fp16)."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    if device.type != "cuda" and name != "float32":
        return torch.float32  # half-precision convolutions on the CPU are slow and not what tests compare
    return getattr(torch, name)
