"""HyperIQA (Su et al. 2020) as upstream's data filter uses it (``eval/hyper_iqa.py``, ``filter_visual_quality.py``):
``HyperNet(16, 112, 224, 112, 56, 28, 14, 7)`` with the KonIQ-10k weights ``auxiliary/koniq_pretrained.pkl`` (a
plain state dict, read with ``torch.load(weights_only=True)`` as upstream does). A ResNet-50 trunk gives the
multi-scale "local distortion" vector (the target network's input) and the feature map from which the hyper
network predicts the target network's weights; the target network (four sigmoid layers and a linear output) then
scores the image, 0..100, higher is better. A clip's score is the mean over its first, middle and last frames,
centre-cropped to 224 and ImageNet-normalised. Parameter names follow upstream's modules, so the file loads
strictly."""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..metrics.files import KONIQ_HYPERIQA
LDA_OUT, HYPER_IN, TARGET_IN, FC_SIZES, FEATURE = 16, 112, 224, (112, 56, 28, 14), 7
CROP = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """ResNet-50's bottleneck block (stride on the 3x3 convolution)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4))
    return nn.Sequential(Bottleneck(inplanes, planes, stride, down),
                         *[Bottleneck(planes * 4, planes) for _ in range(blocks - 1)])


def _lda_pool(channels: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, out, 1, bias=False), nn.AvgPool2d(7, stride=7))


class Backbone(nn.Module):
    """ResNet-50 with the four local-distortion-aware branches (upstream's ``ResNetBackbone``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1, self.layer2 = _layer(64, 64, 3, 1), _layer(256, 128, 4, 2)
        self.layer3, self.layer4 = _layer(512, 256, 6, 2), _layer(1024, 512, 3, 2)
        self.lda1_pool, self.lda1_fc = _lda_pool(256, 16), nn.Linear(16 * 64, LDA_OUT)
        self.lda2_pool, self.lda2_fc = _lda_pool(512, 32), nn.Linear(32 * 16, LDA_OUT)
        self.lda3_pool, self.lda3_fc = _lda_pool(1024, 64), nn.Linear(64 * 4, LDA_OUT)
        self.lda4_pool, self.lda4_fc = nn.AvgPool2d(7, stride=7), nn.Linear(2048, TARGET_IN - LDA_OUT * 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last feature map (B, 2048, 7, 7), target-network input (B, 224))."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        parts = []
        branches = ((self.layer1, self.lda1_pool, self.lda1_fc), (self.layer2, self.lda2_pool, self.lda2_fc),
                    (self.layer3, self.lda3_pool, self.lda3_fc), (self.layer4, self.lda4_pool, self.lda4_fc))
        for layer, pool, fc in branches:
            x = layer(x)
            parts.append(fc(pool(x).flatten(1)))
        return x, torch.cat(parts, 1)


class HyperNet(nn.Module):
    """Upstream's ``HyperNet(16, 112, 224, 112, 56, 28, 14, 7)``; :meth:`forward` also runs the target network."""

    def __init__(self) -> None:
        super().__init__()
        f1, f2, f3, f4 = FC_SIZES
        self.res = Backbone()
        self.conv1 = nn.Sequential(nn.Conv2d(2048, 1024, 1), nn.ReLU(), nn.Conv2d(1024, 512, 1), nn.ReLU(),
                                   nn.Conv2d(512, HYPER_IN, 1), nn.ReLU())
        sizes = ((TARGET_IN, f1), (f1, f2), (f2, f3), (f3, f4))
        for i, (n_in, n_out) in enumerate(sizes, start=1):
            setattr(self, f"fc{i}w_conv", nn.Conv2d(HYPER_IN, n_in * n_out // FEATURE ** 2, 3, padding=1))
            setattr(self, f"fc{i}b_fc", nn.Linear(HYPER_IN, n_out))
        self.fc5w_fc, self.fc5b_fc = nn.Linear(HYPER_IN, f4), nn.Linear(HYPER_IN, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Quality (B,) of normalised 224 px images (B, 3, 224, 224)."""
        features, x = self.res(images)
        batch = images.shape[0]
        hyper = self.conv1(features)
        pooled = hyper.mean(dim=(2, 3))
        sizes = (TARGET_IN, *FC_SIZES)
        for i in range(4):
            weight = getattr(self, f"fc{i + 1}w_conv")(hyper).reshape(batch, sizes[i + 1], sizes[i])
            bias = getattr(self, f"fc{i + 1}b_fc")(pooled)
            x = torch.sigmoid(torch.einsum("boi,bi->bo", weight, x) + bias)
        weight = self.fc5w_fc(pooled).reshape(batch, 1, sizes[-1])
        return (torch.einsum("boi,bi->bo", weight, x) + self.fc5b_fc(pooled))[:, 0]


def load_hypernet(path: str | os.PathLike, device: str | torch.device = "cpu") -> HyperNet:
    """HyperNet with the weights of ``path`` (a state dict; ``weights_only``), strict, in eval mode."""
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = HyperNet()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} is not HyperIQA's koniq_pretrained.pkl (state dict mismatch): {exc}") from None
    return model.eval().to(device)


def prepare_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> normalised float (F, 3, 224, 224): torchvision's CenterCrop(224) then Normalize."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    if h < CROP or w < CROP:  # CenterCrop pads with zeros
        pad_w, pad_h = max(CROP - w, 0), max(CROP - h, 0)
        x = F.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
        h, w = x.shape[-2:]
    top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
    x = x[..., top:top + CROP, left:left + CROP]
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


class QualityScorer:
    """A clip's HyperIQA score: the mean over its first, middle and last frames (upstream's filter)."""

    def __init__(self, model: HyperNet, device: str | torch.device = "cpu"):
        self.model, self.device = model, torch.device(device)

    @torch.no_grad()
    def score_frames(self, frames: torch.Tensor) -> float:
        """Mean quality of uint8 frames (F, H, W, 3)."""
        return float(self.model(prepare_frames(frames).to(self.device)).mean().item())

    def score_file(self, path: str | os.PathLike) -> float:
        """Score of a video file (its first, middle and last frames)."""
        from ..io.decode import read_video
        from ..io.probe import probe_video

        count = probe_video(path).num_frames
        picks = sorted({0, count // 2, count - 1})
        frames = torch.cat([read_video(path, start=i, count=1).frames for i in picks])
        index = [picks.index(i) for i in (0, count // 2, count - 1)]
        return self.score_frames(frames[index])


def load_scorer(models_root: str, device: str) -> QualityScorer:
    """The scorer with ``koniq_pretrained.pkl`` from ``models_root``; FileNotFoundError naming where it goes."""
    path = KONIQ_HYPERIQA.find(models_root) if models_root else None
    if path is None:
        raise FileNotFoundError(f"{KONIQ_HYPERIQA.dest_name} not found at {KONIQ_HYPERIQA.dest(models_root)} "
                                f"(official file: {KONIQ_HYPERIQA.url})")
    return QualityScorer(load_hypernet(path, device), device)
