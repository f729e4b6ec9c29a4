"""S3FD face detector network (``auxiliary/sfd_face.pth``), as upstream's ``eval/detectors/s3fd`` builds it.

VGG16 trunk with dilated fc6/fc7 as convolutions, L2-normalised conv3_3/4_3/5_3 sources, two extra stages and
six loc/conf heads (the first conf head is max-out over three background channels). :func:`S3FD.forward`
returns raw box offsets, face probabilities and the prior boxes; :mod:`.faces` turns them into boxes.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_strict

MIN_SIZES = (16, 32, 64, 128, 256, 512)
STEPS = (4, 8, 16, 32, 64, 128)
VARIANCE = (0.1, 0.2)
MEAN_RGB = (123.0, 117.0, 104.0)  # upstream subtracts (104, 117, 123) from the BGR planes

# VGG layer list: (in, out) conv 3x3, "M" max-pool 2x2, "C" max-pool 2x2 with ceil_mode.
_VGG = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256), "C",
        (256, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512), (512, 512), "M"]
_SOURCES = (256, 512, 512, 1024, 512, 256)  # channels of the six detection sources


def _vgg() -> nn.ModuleList:
    layers: list[nn.Module] = []
    for item in _VGG:
        if item in ("M", "C"):
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=item == "C"))
        else:
            layers += [nn.Conv2d(item[0], item[1], 3, 1, padding=1), nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(512, 1024, 3, 1, padding=6, dilation=6), nn.ReLU(inplace=True),
               nn.Conv2d(1024, 1024, 1, 1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return self.weight[None, :, None, None] * torch.div(x, norm)


class S3FD(nn.Module):
    """The S3FD network; input ``(B, 3, H, W)`` float RGB minus :data:`MEAN_RGB`."""

    def __init__(self):
        super().__init__()
        self.vgg = _vgg()
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        self.extras = nn.ModuleList([nn.Conv2d(1024, 256, 1, 1), nn.Conv2d(256, 512, 3, 2, padding=1),
                                     nn.Conv2d(512, 128, 1, 1), nn.Conv2d(128, 256, 3, 2, padding=1)])
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in _SOURCES])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1) for i, c in enumerate(_SOURCES)])

    def sources(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six feature maps the heads look at."""
        out = []
        for start, stop, norm in ((0, 16, self.L2Norm3_3), (16, 23, self.L2Norm4_3), (23, 30, self.L2Norm5_3)):
            for layer in self.vgg[start:stop]:
                x = layer(x)
            out.append(norm(x))
        for layer in self.vgg[30:]:
            x = layer(x)
        out.append(x)
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x), inplace=True)
            if k % 2 == 1:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> loc (B, P, 4), face probability (B, P), priors (P, 4) as (cx, cy, w, h) relative to the input."""
        locs, confs, shapes = [], [], []
        for i, src in enumerate(self.sources(x)):
            loc, conf = self.loc[i](src), self.conf[i](src)
            if i == 0:  # max-out background over the first three channels
                conf = torch.cat([conf[:, :3].amax(dim=1, keepdim=True), conf[:, 3:]], dim=1)
            shapes.append(tuple(loc.shape[-2:]))
            locs.append(loc.permute(0, 2, 3, 1).flatten(1))
            confs.append(conf.permute(0, 2, 3, 1).flatten(1))
        loc = torch.cat(locs, 1).view(x.shape[0], -1, 4)
        prob = torch.cat(confs, 1).view(x.shape[0], -1, 2).softmax(dim=-1)[..., 1]
        priors = prior_boxes(tuple(x.shape[-2:]), shapes).to(x.device)
        return loc, prob, priors


def prior_boxes(image_hw: tuple[int, int], feature_hw: list[tuple[int, int]]) -> torch.Tensor:
    """Anchor boxes (P, 4) ``(cx, cy, w, h)`` relative to the image, in upstream's order and float64 arithmetic
    (cast to float32 at the end, as upstream builds them in Python floats)."""
    imh, imw = image_hw
    rows = []
    for (fh, fw), step, size in zip(feature_hw, STEPS, MIN_SIZES):
        i, j = np.meshgrid(np.arange(fh, dtype=np.float64), np.arange(fw, dtype=np.float64), indexing="ij")
        cx = (j + 0.5) / (imw / step)
        cy = (i + 0.5) / (imh / step)
        wh = np.broadcast_to(np.array([size / imw, size / imh]), (fh * fw, 2))
        rows.append(np.concatenate([np.stack([cx.ravel(), cy.ravel()], 1), wh], 1))
    return torch.from_numpy(np.concatenate(rows).astype(np.float32))


def load_s3fd(path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> S3FD:
    """Read ``sfd_face.pth`` (a plain state dict, weights_only) into an S3FD network, strictly."""
    with torch.device("meta"):
        model = S3FD()
    return load_strict(model, path, "S3FD face detector (sfd_face.pth)", device=device, dtype=dtype)
