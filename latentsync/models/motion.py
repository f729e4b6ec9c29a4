"""Motion module (AnimateDiff-style temporal transformer): every spatial location attends over the frames
of its own batch item. Parameter names follow the released checkpoint."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .attention import Attention, FeedForward
from .layers import memory_format_of, temporal_position_table


class PositionTable(nn.Module):
    """Holds the persistent ``pe`` buffer (1, max_len, dim): a fixed sinusoid table, recomputable."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.register_buffer("pe", temporal_position_table(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, F, dim) -> x + pe[:F]."""
        return x + self.pe[:, : x.shape[1]].to(device=x.device, dtype=x.dtype)


class TemporalAttention(Attention):
    """Self-attention over the frame axis; the position table is added to the (normalised) input first."""

    def __init__(self, dim: int, heads: int, head_dim: int, ops: Any, max_len: int | None) -> None:
        super().__init__(dim, heads, head_dim, ops)
        self.pos_encoder = PositionTable(dim, max_len) if max_len else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        return super().forward(x)


class TemporalBlock(nn.Module):
    """Pre-norm temporal self-attention layers followed by a GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, head_dim: int, ops: Any, n_attention: int, max_len: int | None) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            [TemporalAttention(dim, heads, head_dim, ops, max_len) for _ in range(n_attention)]
        )
        self.norms = nn.ModuleList([ops.LayerNorm(dim) for _ in range(n_attention)])
        self.ff = FeedForward(dim, ops)
        self.ff_norm = ops.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = x + attention(norm(x))
        return x + self.ff(self.ff_norm(x))


class TemporalTransformer(nn.Module):
    """Per-frame GroupNorm(32, eps 1e-6) -> Linear in -> temporal blocks -> Linear out -> + input."""

    def __init__(self, channels: int, heads: int, head_dim: int, ops: Any, *, depth: int, n_attention: int,
                 max_len: int | None) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = ops.GroupNorm(32, channels, eps=1e-6, affine=True)
        self.proj_in = ops.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [TemporalBlock(inner, heads, head_dim, ops, n_attention, max_len) for _ in range(depth)]
        )
        self.proj_out = ops.Linear(inner, channels)

    def forward(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: folded (B*F, C, H, W) -> same shape and memory format."""
        n, c, h, w = x.shape
        frames = n // batch
        # (B, F, C, H, W) -> (B*H*W, F, C): one copy whatever the memory format
        seq = self.norm(x).unflatten(0, (batch, frames)).flatten(3).permute(0, 3, 1, 2).reshape(-1, frames, c)
        seq = self.proj_in(seq)
        for block in self.transformer_blocks:
            seq = block(seq)
        seq = self.proj_out(seq).view(batch, h, w, frames, c)
        if memory_format_of(x) == torch.channels_last:
            out = seq.permute(0, 3, 1, 2, 4).reshape(n, h, w, c).permute(0, 3, 1, 2)
        else:
            out = seq.permute(0, 3, 4, 1, 2).reshape(n, c, h, w)
        return out + x


class MotionModule(nn.Module):
    """Wrapper that only exists to give the checkpoint's ``temporal_transformer.`` key prefix."""

    def __init__(self, channels: int, ops: Any, kwargs: dict[str, Any]) -> None:
        super().__init__()
        heads = int(kwargs.get("num_attention_heads", 8))
        head_dim = channels // heads // int(kwargs.get("temporal_attention_dim_div", 1))
        max_len = int(kwargs.get("temporal_position_encoding_max_len", 24))
        self.max_frames = max_len if kwargs.get("temporal_position_encoding", False) else None
        self.temporal_transformer = TemporalTransformer(
            channels,
            heads,
            head_dim,
            ops,
            depth=int(kwargs.get("num_transformer_block", 2)),
            n_attention=len(kwargs.get("attention_block_types", ("Temporal_Self", "Temporal_Self"))),
            max_len=self.max_frames,
        )

    def forward(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        return self.temporal_transformer(x, batch)
