"""Hashed random weights and small stand-in nets for the U-Net training parity fixture (generator and tests).

Every tensor comes from ``latentsync.metrics.tiny.init_state`` (a counter-based hash: the same values on every
machine), so the fixture stores recipes, not weights. TREPA's VideoMAE-v2 (ViT-g) is far too big for a fixture;
:class:`TinyVideoFeatures` stands in as its ``forward_features`` (the loss around it is the real one).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..metrics.tiny import hashed_uniform, init_state


def unet_state(config: Mapping[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random U-Net weights for ``config`` (every key of upstream's state dict, zero-initialised ones too)."""
    from ..models.unet_loader import unet_state_dict_shapes

    return init_state(unet_state_dict_shapes(config), seed, gain=1.0)


def vae_state(like: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random weights with the keys and shapes of a VAE state dict ``like``."""
    return init_state({k: tuple(v.shape) for k, v in like.items()}, seed, gain=1.0)


def lpips_state(seed: int) -> dict[str, torch.Tensor]:
    """Random LPIPS-VGG weights in this pack's key names (``features.N.*`` as torchvision, ``lin<k>.weight``)."""
    from .lpips_loss import lpips_vgg_shapes

    return init_state(lpips_vgg_shapes(), seed, gain=2.0)


def LPIPS_KEYS_TO_PACKAGE(key: str) -> str:  # noqa: N802 (a mapping, named as the constant it stands for)
    """This pack's LPIPS key -> the ``lpips`` package's (``net.slice<s>.<N>.*``, ``lin<k>.model.1.weight``)."""
    from .lpips_loss import SLICE_ENDS

    if key.startswith("lin"):
        return key.replace(".weight", ".model.1.weight")
    _, index, leaf = key.split(".")
    s = next(i for i, end in enumerate(SLICE_ENDS) if int(index) < end) + 1
    return f"net.slice{s}.{index}.{leaf}"


class TinyVideoFeatures(nn.Module):
    """A stand-in for VideoMAE-v2's ``forward_features``: 3-D patch embedding, token mean, LayerNorm -> (B, D)."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.patch = nn.Conv3d(3, dim, kernel_size=(2, 32, 32), stride=(2, 32, 32))
        self.norm = nn.LayerNorm(dim)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, 224, 224) in [0, 1] -> (B, D)."""
        return self.norm(self.patch(video).flatten(2).mean(-1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features`."""
        return self.forward_features(video)


def trepa_features_state(dim: int, seed: int) -> dict[str, torch.Tensor]:
    """Random weights of :class:`TinyVideoFeatures`."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in TinyVideoFeatures(dim).state_dict().items()}
    return init_state(shapes, seed, gain=2.0)


def grad_summary(grads: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Per tensor (in ``grads``' order): sum, L2 norm and the projection on a hashed unit direction (float64)."""
    sums, norms, projs = [], [], []
    for name, g in grads.items():
        g64 = g.detach().double().reshape(-1)
        direction = torch.from_numpy(hashed_uniform(seed, f"direction:{name}", g64.numel()).astype(np.float64))
        direction = direction / direction.norm()
        sums.append(g64.sum())
        norms.append(g64.norm())
        projs.append(g64 @ direction)
    return {"sums": torch.stack(sums), "norms": torch.stack(norms), "projections": torch.stack(projs)}


def pick_full_grads(grads: Mapping[str, torch.Tensor], count: int) -> list[str]:
    """``count`` weight tensors (2-D or more) spread evenly over the trainable ones, at most 40 000 values each."""
    names = [n for n, g in grads.items() if g.dim() >= 2 and g.numel() <= 40_000]
    if len(names) <= count:
        return names
    step = len(names) / count
    return [names[math.floor(i * step)] for i in range(count)]
