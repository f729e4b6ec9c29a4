"""Small shared pieces of the U-Net: the layer factory, frame folding helpers and sinusoid tables.

Video activations inside the U-Net are kept folded as ``(B*F, C, H, W)`` (batch-major: row ``b*F + f``),
in either the standard or the channels-last memory format, so 2-D convolutions need no copies.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

_REQUIRED_OPS = ("Linear", "Conv2d", "GroupNorm", "LayerNorm")


def resolve_operations(operations: Any | None) -> Any:
    """Return the layer factory to build every layer with: ``operations`` or ``torch.nn``.

    ``operations`` is any namespace with ``Linear, Conv2d, GroupNorm, LayerNorm`` classes taking
    torch.nn's signatures (e.g. ComfyUI's ``comfy.ops.manual_cast``).
    """
    if operations is None:
        return SimpleNamespace(**{name: getattr(nn, name) for name in _REQUIRED_OPS})
    missing = [name for name in _REQUIRED_OPS if not hasattr(operations, name)]
    if missing:
        raise TypeError(
            f"operations={operations!r} lacks {', '.join(missing)}; pass a namespace with "
            f"{', '.join(_REQUIRED_OPS)} classes (torch.nn-compatible), or None for torch.nn."
        )
    return operations


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The memory format a folded activation uses (channels-last only when it is strictly that)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def as_video(x: torch.Tensor, batch: int) -> torch.Tensor:
    """View folded ``(B*F, C, H, W)`` as ``(B, C, F, H, W)`` (no copy; strides permuted)."""
    return x.unflatten(0, (batch, -1)).transpose(1, 2)


def fold_frames(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """``(B, C, F, H, W)`` -> ``(B*F, C, H, W)`` in ``memory_format`` (a view when the strides allow it)."""
    b, c, f, h, w = x.shape
    if memory_format == torch.channels_last:
        # physical order (B, F, H, W, C)
        return x.permute(0, 2, 3, 4, 1).reshape(b * f, h, w, c).permute(0, 3, 1, 2)
    return x.transpose(1, 2).reshape(b * f, c, h, w)


def unfold_frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B*F, C, H, W)`` -> contiguous ``(B, C, F, H, W)``."""
    return as_video(x, batch).contiguous()


def frame_joint_norm(norm: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Apply a GroupNorm module with statistics over all frames of each batch item (upstream's 5-D GroupNorm)."""
    return fold_frames(norm(as_video(x, batch)), memory_format_of(x))


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, H*W, C)`` tokens in row-major (h, w) order (free for channels-last)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def from_tokens(t: torch.Tensor, height: int, width: int, memory_format: torch.memory_format) -> torch.Tensor:
    """``(N, H*W, C)`` -> ``(N, C, H, W)`` laid out in ``memory_format``."""
    n, _, c = t.shape
    return t.reshape(n, height, width, c).permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


def timestep_sinusoid(timesteps: torch.Tensor, dim: int, *, flip_sin_to_cos: bool, freq_shift: float) -> torch.Tensor:
    """float32 sinusoidal timestep features ``(B, dim)``: ``[sin, cos]`` (or ``[cos, sin]`` when flipped)."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    # same rounding order as diffusers' Timesteps: (-ln(1e4) * k) / (half - shift)
    freqs = torch.exp((-math.log(10000.0) * k) / (half - freq_shift))
    angles = timesteps.to(torch.float32)[:, None] * freqs[None, :]
    parts = (torch.cos(angles), torch.sin(angles)) if flip_sin_to_cos else (torch.sin(angles), torch.cos(angles))
    out = torch.cat(parts, dim=-1)
    if dim % 2:
        out = nn.functional.pad(out, (0, 1))
    return out


def temporal_position_table(max_len: int, dim: int) -> torch.Tensor:
    """float32 ``(1, max_len, dim)`` table with interleaved ``sin`` (even channels) / ``cos`` (odd channels)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = pos * inv[None, :]
    table = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1).flatten(1)[:, :dim]
    return table[None]
