"""VideoMAE-v2's video ViT encoder (frozen, eval mode): the feature network of upstream's TREPA loss.

Upstream (``latentsync/trepa``) loads ``vit_g_hybrid_pt_1200e_ssv2_ft.pth``: ViT-g/14 (width 1408, 40 blocks, 16
heads, MLP ratio 48/11, LayerNorm eps 1e-6), tubelets of 2 frames x 14 x 14 pixels over 16 frames at 224 px (2048
tokens), fixed sinusoid positions, no layer scale, mean-pooled tokens through ``fc_norm``. ``forward_features``
is what TREPA calls. The keys are the checkpoint's (the 174-class ``head`` is kept so the file loads strictly).
In eval mode dropout and stochastic depth are off, so they are not built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class VideoMAEConfig:
    """Sizes of the encoder (defaults: upstream's ViT-g/14)."""

    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_ratio: float = 48 / 11
    patch_size: int = 14
    tubelet_size: int = 2
    img_size: int = 224
    all_frames: int = 16
    num_classes: int = 174


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """(1, n, dim) float32: sin on even, cos on odd channels of ``pos / 10000^(2 (j // 2) / dim)`` (float64 maths)."""
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None]
    angles = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = angles.clone()
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()[None]


class _Attention(nn.Module):
    """Multi-head self-attention with q and v biases (k has none)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual attention, then residual MLP."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    """Tubelet x patch 3-D convolution -> tokens."""

    def __init__(self, cfg: VideoMAEConfig):
        super().__init__()
        k = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, N, C)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class VideoMAEEncoder(nn.Module):
    """VideoMAE-v2's ViT; ``forward_features((B, 3, T, S, S) in [0, 1])`` -> (B, C) (TREPA's features)."""

    def __init__(self, cfg: VideoMAEConfig = VideoMAEConfig(), gradient_checkpointing: bool = False):
        super().__init__()
        self.cfg, self.gradient_checkpointing = cfg, gradient_checkpointing
        self.patch_embed = _PatchEmbed(cfg)
        self.blocks = nn.ModuleList([_Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)  # unused by TREPA; part of the file
        grid = cfg.img_size // cfg.patch_size
        self.grid = grid
        self.register_buffer("pos_embed", sinusoid_table(grid * grid * (cfg.all_frames // cfg.tubelet_size),
                                                         cfg.embed_dim), persistent=False)
        self.eval()

    def positions(self, frames: int) -> torch.Tensor:
        """The position table for ``frames`` input frames (upstream's trilinear stretch when not 16)."""
        slots, t0 = self.cfg.all_frames // self.cfg.tubelet_size, frames // self.cfg.tubelet_size
        if t0 == slots:
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        table = self.pos_embed.permute(0, 2, 1).reshape(1, dim, slots, self.grid, self.grid)
        table = F.interpolate(table, scale_factor=((t0 + 0.1) / slots, 1, 1), mode="trilinear")
        return table.reshape(1, dim, -1).permute(0, 2, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-pooled, normalised token features (B, C)."""
        tokens = self.patch_embed(x)
        tokens = tokens + self.positions(x.shape[2]).expand(x.shape[0], -1, -1).type_as(tokens).detach()
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
        return self.fc_norm(tokens.mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features` (TREPA never uses the classifier)."""
        return self.forward_features(x)


def load_videomae(path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  gradient_checkpointing: bool = True) -> VideoMAEEncoder:
    """``vit_g_hybrid_pt_1200e_ssv2_ft.pth`` (weights under ``model`` / ``module`` or top level), strictly, frozen."""
    data = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    for key in ("model", "module"):
        if isinstance(data, dict) and key in data:
            data = data[key]
            break
    model = VideoMAEEncoder(gradient_checkpointing=gradient_checkpointing)
    model.load_state_dict(data, strict=True)
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()


def tiny_videomae_config() -> VideoMAEConfig:
    """A small encoder with the real token layout (16 frames, 224 px, 14 px patches): tests and fixtures."""
    return VideoMAEConfig(embed_dim=32, depth=2, num_heads=2)


