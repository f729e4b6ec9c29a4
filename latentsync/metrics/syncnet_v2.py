"""SyncNet v2 (Chung & Zisserman; joonson/syncnet_python), the network behind upstream's sync confidence.

State-dict keys are those of ``auxiliary/syncnet_v2.model`` (``netcnnaud.*``, ``netfcaud.*``, ``netcnnlip.*``,
``netfclip.*``). Inputs as upstream feeds them: lips ``(B, 3, 5, 224, 224)`` BGR pixel values 0..255 (not
normalised); audio ``(B, 1, 13, 20)`` MFCC (0.2 s). Outputs are 1024-d embeddings.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .checkpoints import load_strict

EMBED_DIM = 1024
LIP_FRAMES = 5  # video frames per window
MFCC_PER_FRAME = 4  # 100 MFCC rows per second at 25 fps
MFCC_WINDOW = 20  # MFCC rows per window


def _conv_bn(conv: nn.Module, bn: nn.Module, relu: bool = True) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True)] if relu else [conv, bn]


def _audio_cnn() -> nn.Sequential:
    c2, bn2 = nn.Conv2d, nn.BatchNorm2d
    return nn.Sequential(
        *_conv_bn(c2(1, 64, 3, 1, 1), bn2(64)), nn.MaxPool2d(1, 1),
        *_conv_bn(c2(64, 192, 3, 1, 1), bn2(192)), nn.MaxPool2d(3, (1, 2)),
        *_conv_bn(c2(192, 384, 3, padding=1), bn2(384)),
        *_conv_bn(c2(384, 256, 3, padding=1), bn2(256)),
        *_conv_bn(c2(256, 256, 3, padding=1), bn2(256)), nn.MaxPool2d(3, 2),
        *_conv_bn(c2(256, 512, (5, 4)), bn2(512)),
    )


def _lip_cnn() -> nn.Sequential:
    c3, bn3 = nn.Conv3d, nn.BatchNorm3d
    return nn.Sequential(
        *_conv_bn(c3(3, 96, (5, 7, 7), (1, 2, 2)), bn3(96)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        *_conv_bn(c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), bn3(256)),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), bn3(256)),
        *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), bn3(256)),
        *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), bn3(256)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        *_conv_bn(c3(256, 512, (1, 6, 6)), bn3(512)),
    )


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNetV2(nn.Module):
    """Audio and lip towers of SyncNet v2; ``forward_aud``/``forward_lip`` give one embedding per window."""

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.netcnnaud = _audio_cnn()
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)
        self.netcnnlip = _lip_cnn()

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC windows -> (B, D)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0..255 -> (B, D)."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def load_syncnet_v2(path: str | os.PathLike, *, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> SyncNetV2:
    """Read ``syncnet_v2.model`` (a plain state dict, weights_only) into a SyncNetV2, strictly."""
    with torch.device("meta"):
        model = SyncNetV2()
    return load_strict(model, path, "SyncNet v2 (syncnet_v2.model)", device=device, dtype=dtype)
