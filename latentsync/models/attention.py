"""Attention layers of the U-Net: multi-head attention (SDPA), GEGLU feed-forward and the per-frame
spatial transformer with audio cross-attention. Parameter names follow the released checkpoint."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import from_tokens, memory_format_of, to_tokens


def small_sequence_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention with explicit fp32 scores, for short sequences (the motion modules' <= 24 frames).

    Fused SDPA kernels tile 64+ query rows, so at 16 frames most of their work is padding; here the tiny score
    matrices are plain batched products. Same math as SDPA (default scale), softmax in float32.
    """
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return torch.matmul(scores.softmax(dim=-1).to(v.dtype), v)


class Attention(nn.Module):
    """Multi-head attention: q/k/v projections without bias, output projection with bias, SDPA default scale."""

    def __init__(self, dim: int, heads: int, head_dim: int, ops: Any, context_dim: int | None = None) -> None:
        super().__init__()
        inner = heads * head_dim
        kv_dim = dim if context_dim is None else context_dim
        self.heads = heads
        self.small_sequence_kernel = False  # explicit-score attention (set by the U-Net for short sequences)
        self.to_q = ops.Linear(dim, inner, bias=False)
        self.to_k = ops.Linear(kv_dim, inner, bias=False)
        self.to_v = ops.Linear(kv_dim, inner, bias=False)
        self.to_out = nn.ModuleList([ops.Linear(inner, dim)])  # index 0 as in the checkpoint; 1 was dropout

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # (N, L, heads*d) -> (N, heads, L, d) as a strided view
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, L, dim); context: (N, S, context_dim) or None for self-attention."""
        source = x if context is None else context
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(source)), self._heads(self.to_v(source))
        if self.small_sequence_kernel:
            out = small_sequence_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).flatten(2))


class GEGLU(nn.Module):
    """Linear to twice the width, then ``value * gelu(gate)`` (value = first half, gate = second half)."""

    def __init__(self, dim: int, inner: int, ops: Any) -> None:
        super().__init__()
        self.proj = ops.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU MLP with 4x inner width; ``net.0`` / ``net.2`` hold the weights (``net.1`` was dropout).

    Over many tokens it runs in parts along the first dimension of at most about ``max_hidden`` projected values:
    the GEGLU projection and its product are a step's largest temporaries (320 + 160 MiB at 256 px for 2 chunks
    with CFG, the VRAM peak of a run). Tokens are independent, so the parts give the whole's result.
    """

    max_hidden = 1 << 25  # 64 MiB of fp16 projection per part

    def __init__(self, dim: int, ops: Any, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult, ops), nn.Identity(), ops.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        hidden = x.numel() // x.shape[-1] * self.net[0].proj.out_features
        parts = min(rows, -(-hidden // self.max_hidden))
        if parts <= 1:
            return self._mlp(x)
        return torch.cat([self._mlp(part) for part in x.split(-(-rows // parts))])

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, optional audio cross-attention, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, ops: Any, context_dim: int | None) -> None:
        super().__init__()
        head_dim = dim // heads
        self.norm1 = ops.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim, ops)
        if context_dim is not None:
            self.norm2 = ops.LayerNorm(dim)
            self.attn2 = Attention(dim, heads, head_dim, ops, context_dim=context_dim)
        else:
            self.attn2 = None
        self.norm3 = ops.LayerNorm(dim)
        self.ff = FeedForward(dim, ops)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        if self.attn2 is not None and context is not None:
            zero = x.shape[0] - context.shape[0]
            if zero:  # the first rows' audio is all zero (CFG's unconditional half): k = v = 0, so their
                # cross-attention is exactly to_out's bias; it is added, not computed. The bias comes from the layer
                # itself (to_out of zeros), so weight-casting or patching layer classes give it as they give forward.
                out = self.attn2.to_out[0]
                bias = out(x.new_zeros(1, 1, out.in_features))
                cond = x[zero:] + self.attn2(self.norm2(x[zero:]), context)
                x = torch.cat([x[:zero] + bias, cond])
            else:
                x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the H*W tokens of each frame, each frame attending to its own audio tokens.

    GroupNorm here is per frame (the input is folded), unlike the ResNet norms.
    """

    def __init__(
        self, channels: int, heads: int, ops: Any, *, groups: int, context_dim: int | None, depth: int = 1
    ) -> None:
        super().__init__()
        inner = heads * (channels // heads)
        self.norm = ops.GroupNorm(groups, channels, eps=1e-6, affine=True)
        self.proj_in = ops.Conv2d(channels, inner, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(inner, heads, ops, context_dim) for _ in range(depth)]
        )
        self.proj_out = ops.Conv2d(inner, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """x: folded (B*F, C, H, W); context: (B*F, S, D) or None (cross-attention skipped)."""
        _, _, height, width = x.shape
        tokens = to_tokens(self.proj_in(self.norm(x)))
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return self.proj_out(from_tokens(tokens, height, width, memory_format_of(x))) + x
