"""LPIPS (VGG variant, v0.1), the perceptual loss of upstream's stage2 training, without the ``lpips`` package.

Zhang et al.'s metric: inputs in [-1, 1] are shifted and scaled per channel, VGG16's features are taken after
relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, each unit-normalised over channels, their squared differences
weighted by a 1x1 convolution per layer, averaged over space and summed over layers -> (N, 1, 1, 1). Weights:
torchvision's ``vgg16`` ImageNet file (``features.*`` keys) and lpips' ``weights/v0.1/vgg.pth``
(``lin<k>.model.1.weight`` keys); :func:`load_lpips_vgg` reads both. The trunk is frozen, as in upstream.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch
from torch import nn

# VGG16 "features" up to relu5_3 (index 29): conv widths, "M" = 2x2 max-pool
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
SLICE_ENDS = (4, 9, 16, 23, 30)  # torchvision feature indices where relu1_2 .. relu5_3 end
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


def _features() -> nn.Sequential:
    """torchvision's VGG16 ``features`` indices 0..29 (conv, ReLU, max-pool), same indices and keys."""
    layers: list[nn.Module] = []
    cin = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            cin = int(item)
    return nn.Sequential(*layers)


class LPIPSVGG(nn.Module):
    """LPIPS with the VGG16 trunk; ``forward(a, b)`` -> (N, 1, 1, 1) distances of images in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _features()
        for k, c in enumerate(CHANNELS):
            setattr(self, f"lin{k}", nn.Conv2d(c, 1, kernel_size=1, bias=False))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five relu outputs."""
        out, start = [], 0
        for end in SLICE_ENDS:
            for i in range(start, end):
                x = self.features[i](x)
            out.append(x)
            start = end
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances (N, 1, 1, 1) between image batches ``a`` and ``b`` (N, 3, H, W), values in [-1, 1]."""
        fa = self._taps((a - self.shift) / self.scale)
        fb = self._taps((b - self.shift) / self.scale)
        total = 0
        for k, (x, y) in enumerate(zip(fa, fb)):
            x = x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + EPS)
            y = y / (torch.sqrt(torch.sum(y**2, dim=1, keepdim=True)) + EPS)
            total = total + getattr(self, f"lin{k}")((x - y) ** 2).mean(dim=[2, 3], keepdim=True)
        return total


def lpips_vgg_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of :class:`LPIPSVGG`'s weights (``features.N.weight/bias``, ``lin<k>.weight``)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in LPIPSVGG().state_dict().items()}


def load_lpips_vgg(vgg16_path: str | os.PathLike, lin_path: str | os.PathLike) -> LPIPSVGG:
    """Build LPIPS from torchvision's vgg16 ImageNet file and lpips' v0.1 ``vgg.pth`` (strict on both)."""
    vgg = torch.load(os.fspath(vgg16_path), map_location="cpu", weights_only=True)
    lin = torch.load(os.fspath(lin_path), map_location="cpu", weights_only=True)
    state: dict[str, torch.Tensor] = {k: v for k, v in vgg.items() if k.startswith("features.")
                                      and int(k.split(".")[1]) < SLICE_ENDS[-1]}
    for k in range(len(CHANNELS)):
        state[f"lin{k}.weight"] = lin[f"lin{k}.model.1.weight"]
    model = LPIPSVGG()
    model.load_state_dict(state, strict=True)
    return model


def lpips_from_state(state: Mapping[str, torch.Tensor]) -> LPIPSVGG:
    """LPIPS from a state dict in this module's key names (strict)."""
    model = LPIPSVGG()
    model.load_state_dict(dict(state), strict=True)
    return model
