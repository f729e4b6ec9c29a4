"""One StableSyncNet training step: batch -> model inputs, forward, BCE loss, backward, clip, AdamW update.

As upstream's ``scripts/train_syncnet.py``: frames (B, F, 3, R, R) are stacked on the channel axis and cut to
their lower half; the loss is divided by the accumulation count before backward; gradients are clipped to
``max_grad_norm`` over all parameters before the optimizer steps. Mixed precision (float16 inputs, autocast,
a gradient scaler) is upstream's CUDA path; on the CPU everything runs in float32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn

from .sync_loss import sync_loss


@dataclass
class Precision:
    """How a step computes: the input dtype, autocast on or off, and the gradient scaler (None: unscaled)."""

    device: torch.device
    input_dtype: torch.dtype = torch.float32
    autocast: bool = False
    scaler: torch.amp.GradScaler | None = None

    def context(self) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass (float16 on CUDA when mixed precision is on)."""
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.float16)


def precision_for(device: torch.device, mixed_precision: bool) -> Precision:
    """Upstream's mixed precision on CUDA when the config asks for it; float32 otherwise (CPU: always)."""
    if mixed_precision and device.type == "cuda":
        return Precision(device, torch.float16, True, torch.amp.GradScaler("cuda"))
    return Precision(device)


def model_inputs(batch: Mapping[str, torch.Tensor], lower_half: bool, precision: Precision
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(frames (B, 3F, h, R), mel (B, 1, 80, L), y (B, 1) float32) on the step's device."""
    frames = batch["frames"].to(precision.device, dtype=precision.input_dtype)
    mel = batch["audio_samples"].to(precision.device, dtype=precision.input_dtype)
    y = batch["y"].to(precision.device, dtype=torch.float32)
    b, f, c, h, w = frames.shape
    frames = frames.reshape(b, f * c, h, w)
    if lower_half:
        frames = frames[:, :, h // 2:, :]
    return frames, mel, y


def backward(model: nn.Module, batch: Mapping[str, torch.Tensor], *, lower_half: bool, accumulation: int,
             precision: Precision) -> torch.Tensor:
    """Forward and backward of one (micro-)batch; returns its loss / accumulation (detached)."""
    frames, mel, y = model_inputs(batch, lower_half, precision)
    with precision.context():
        vision, audio = model(frames, mel)
    loss = sync_loss(vision.float(), audio.float(), y) / accumulation
    (precision.scaler.scale(loss) if precision.scaler is not None else loss).backward()
    return loss.detach()


def update(parameters: Iterator[nn.Parameter] | list[nn.Parameter], optimizer: torch.optim.Optimizer,
           max_grad_norm: float, precision: Precision) -> float:
    """Clip the gradients' total norm, step the optimizer, zero the gradients; returns the norm before clipping."""
    params = list(parameters)
    if precision.scaler is not None:
        precision.scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if precision.scaler is not None:
        precision.scaler.step(optimizer)
        precision.scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad()
    return float(norm)


def new_optimizer(model: nn.Module, lr: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, torch defaults otherwise (as upstream)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
