"""StableSyncNet, LatentSync's own SyncNet (``latentsync/models/stable_syncnet.py``), built from a config.

Two ``DownEncoder2D`` towers (conv_in, residual blocks that downsample by their factor, optional self-attention
blocks, GroupNorm + ReLU) map a mel window ``(B, 1, 80, 52)`` and stacked frames ``(B, 3*F, H, W)`` to unit
vectors; their cosine similarity says whether lips and audio belong together. The released configs
(``configs/syncnet/*.yaml``) are :data:`CONFIGS`; ``stable_syncnet.pt`` is ``{"state_dict": ...}``.
``syncnet_25_pixel.yaml`` is left out: it has no ``attn_blocks``, and upstream's own class fails on it.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import expected_shapes, load_strict

GROUPS = 32
HEADS = 8

_TOWER_KEYS = ("in_channels", "block_out_channels", "downsample_factors", "attn_blocks", "dropout")

# Model sections of upstream's configs/syncnet/*.yaml, with the data settings that shape the inputs.
CONFIGS: dict[str, dict[str, Any]] = {
    "syncnet_16_pixel_attn": {
        "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 64, 128, 256, 512, 1024, 2048],
                          "downsample_factors": [[2, 1], 2, 2, 1, 2, 2, [2, 3]], "attn_blocks": [0, 0, 0, 1, 1, 0, 0],
                          "dropout": 0.0},
        "visual_encoder": {"in_channels": 48, "block_out_channels": [64, 128, 256, 256, 512, 1024, 2048, 2048],
                           "downsample_factors": [[1, 2], 2, 2, 2, 2, 2, 2, 2], "attn_blocks": [0, 0, 0, 0, 1, 1, 0, 0],
                           "dropout": 0.0},
        "data": {"num_frames": 16, "resolution": 256, "lower_half": True, "latent_space": False, "video_fps": 25},
    },
    "syncnet_16_pixel": {
        "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 64, 128, 256, 512, 1024, 2048],
                          "downsample_factors": [[2, 1], 2, 2, 1, 2, 2, [2, 3]], "attn_blocks": [0, 0, 0, 0, 0, 0, 0],
                          "dropout": 0.0},
        "visual_encoder": {"in_channels": 48, "block_out_channels": [64, 128, 256, 256, 512, 1024, 2048, 2048],
                           "downsample_factors": [[1, 2], 2, 2, 2, 2, 2, 2, 2], "attn_blocks": [0, 0, 0, 0, 0, 0, 0, 0],
                           "dropout": 0.0},
        "data": {"num_frames": 16, "resolution": 256, "lower_half": True, "latent_space": False, "video_fps": 25},
    },
    "syncnet_16_latent": {
        "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 64, 128, 256, 512, 1024],
                          "downsample_factors": [[2, 1], 2, 2, 2, 2, [2, 3]], "attn_blocks": [0, 0, 0, 0, 0, 0],
                          "dropout": 0.0},
        "visual_encoder": {"in_channels": 64, "block_out_channels": [64, 128, 256, 256, 512, 1024],
                           "downsample_factors": [2, 2, 2, 1, 2, 2], "attn_blocks": [0, 0, 0, 0, 0, 0], "dropout": 0.0},
        "data": {"num_frames": 16, "resolution": 256, "lower_half": False, "latent_space": True, "video_fps": 25},
    },
}
RELEASED = "syncnet_16_pixel_attn"  # the config of the released stable_syncnet.pt (eval_syncnet_acc.sh)


def syncnet_config(name: str = RELEASED) -> dict[str, Any]:
    """A copy of a released config (model towers + data settings)."""
    if name not in CONFIGS:
        raise ValueError(f"Unknown StableSyncNet config {name!r}; choose one of {', '.join(CONFIGS)}.")
    return copy.deepcopy(CONFIGS[name])


def _check_tower(name: str, tower: Mapping[str, Any]) -> None:
    missing = [k for k in _TOWER_KEYS if k not in tower]
    if missing:
        raise ValueError(f"StableSyncNet config: {name} lacks {missing}.")
    n = len(tower["block_out_channels"])
    if len(tower["downsample_factors"]) != n or len(tower["attn_blocks"]) != n:
        raise ValueError(f"StableSyncNet config: {name} needs one downsample factor and attn flag per block ({n}).")
    bad = [c for c in tower["block_out_channels"] if c % GROUPS]
    if bad:
        raise ValueError(f"StableSyncNet config: {name} channels {bad} are not multiples of {GROUPS} (GroupNorm).")


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv residual block, then a strided 3x3 convolution when it downsamples."""

    def __init__(self, cin: int, cout: int, factor: Any, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = nn.GroupNorm(GROUPS, cout, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        factor = tuple(factor) if isinstance(factor, (list, tuple)) else factor
        self.downsample_conv = None if factor == 1 else nn.Conv2d(cout, cout, 3, factor)
        # F.pad order (left, right, top, bottom): one extra row/column at the end, both sides of a kept axis.
        self.pad = (0, 1, 0, 1)
        if isinstance(factor, tuple) and factor[0] == 1:
            self.pad = (0, 1, 1, 1)
        elif isinstance(factor, tuple) and factor[1] == 1:
            self.pad = (1, 1, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        h = h + (x if self.conv_shortcut is None else self.conv_shortcut(x))
        if self.downsample_conv is not None:
            h = self.downsample_conv(F.pad(h, self.pad))
        return h


class Attention(nn.Module):
    """Multi-head self-attention with biased projections (scaled dot product)."""

    def __init__(self, dim: int, heads: int = HEADS):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (f(x).view(b, n, self.heads, d // self.heads).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    """Linear to twice the width, then value * gelu(gate)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """diffusers' GEGLU feed-forward (4x width); keys ``net.0.proj``, ``net.2``."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(dropout), nn.Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class AttentionBlock2D(nn.Module):
    """GroupNorm, 1x1 conv, pre-LN self-attention and feed-forward over the pixels, 1x1 conv, residual."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout)
        self.conv_in = nn.Conv2d(dim, dim, 1)
        self.conv_out = nn.Conv2d(dim, dim, 1)
        self.attn = Attention(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.conv_in(self.norm1(x)).flatten(2).transpose(1, 2)
        t = self.attn(self.norm2(t)) + t
        t = self.ff(self.norm3(t)) + t
        return self.conv_out(t.transpose(1, 2).reshape(b, c, h, w).contiguous()) + x


class DownEncoder2D(nn.Module):
    """One tower: conv_in, a residual block per entry (plus attention where flagged), GroupNorm + ReLU."""

    def __init__(self, in_channels: int, block_out_channels: list[int], downsample_factors: list[Any],
                 attn_blocks: list[int], dropout: float = 0.0):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, 1, 1)
        blocks: list[nn.Module] = []
        prev = block_out_channels[0]
        for cout, factor, attn in zip(block_out_channels, downsample_factors, attn_blocks):
            blocks.append(ResnetBlock2D(prev, cout, factor, dropout))
            if attn == 1:
                blocks.append(AttentionBlock2D(cout, dropout))
            prev = cout
        self.down_blocks = nn.ModuleList(blocks)
        self.norm_out = nn.GroupNorm(GROUPS, block_out_channels[-1], eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return F.relu(self.norm_out(x))


class StableSyncNet(nn.Module):
    """Audio and visual towers; ``forward(frames, mel)`` -> unit vision and audio embeddings (B, D)."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        for name in ("audio_encoder", "visual_encoder"):
            if name not in config:
                raise ValueError(f"StableSyncNet config lacks '{name}' (pass the yaml's model section).")
            _check_tower(name, config[name])
        self.config = copy.deepcopy(dict(config))
        self.audio_encoder = DownEncoder2D(**{k: config["audio_encoder"][k] for k in _TOWER_KEYS})
        self.visual_encoder = DownEncoder2D(**{k: config["visual_encoder"][k] for k in _TOWER_KEYS})

    def forward(self, frames: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vision = F.normalize(self.visual_encoder(frames).reshape(frames.shape[0], -1), p=2, dim=1)
        audio = F.normalize(self.audio_encoder(mel).reshape(mel.shape[0], -1), p=2, dim=1)
        return vision, audio


def stable_syncnet_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of a config (built on the meta device: no memory)."""
    with torch.device("meta"):
        return expected_shapes(StableSyncNet(config))


def load_stable_syncnet(path: str | os.PathLike, config: Mapping[str, Any] | str = RELEASED, *,
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> StableSyncNet:
    """Read ``stable_syncnet.pt`` (``{"state_dict": ...}``, weights_only) into the config's model, strictly."""
    config = syncnet_config(config) if isinstance(config, str) else config
    with torch.device("meta"):
        model = StableSyncNet(config)
    return load_strict(model, path, "StableSyncNet (stable_syncnet.pt)", device=device, dtype=dtype)
