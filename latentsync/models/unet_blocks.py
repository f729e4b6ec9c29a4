"""U-Net building blocks on folded video activations ``(B*F, C, H, W)``: the ResNet block (GroupNorm
statistics span all frames of a batch item), resampling convs, and the down / mid / up levels."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SpatialTransformer
from .layers import as_video, fold_frames, frame_joint_norm, memory_format_of
from .motion import MotionModule


class ResnetBlock(nn.Module):
    """norm -> SiLU -> conv3x3 -> + time bias -> norm -> SiLU -> conv3x3, plus a (1x1-projected) skip."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, ops: Any, *, groups: int, eps: float,
                 output_scale: float = 1.0) -> None:
        super().__init__()
        self.output_scale = float(output_scale)
        self.norm1 = ops.GroupNorm(groups, c_in, eps=eps, affine=True)
        self.conv1 = ops.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.time_emb_proj = ops.Linear(temb_dim, c_out)
        self.norm2 = ops.GroupNorm(groups, c_out, eps=eps, affine=True)
        self.conv2 = ops.Conv2d(c_out, c_out, kernel_size=3, padding=1)
        self.conv_shortcut = ops.Conv2d(c_in, c_out, kernel_size=1) if c_in != c_out else None

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor, batch: int) -> torch.Tensor:
        """x: (B*F, C_in, H, W); temb_act: SiLU(time embedding) (B, T)."""
        fmt = memory_format_of(x)
        h = self.conv1(F.silu(frame_joint_norm(self.norm1, x, batch), inplace=True))
        # add the per-item time bias and normalise in the (B, C, F, H, W) view: one fold back
        h = as_video(h, batch) + self.time_emb_proj(temb_act)[:, :, None, None, None]
        h = self.conv2(F.silu(fold_frames(self.norm2(h), fmt), inplace=True))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        out = skip + h
        return out if self.output_scale == 1.0 else out / self.output_scale


class Downsample(nn.Module):
    """3x3 conv with stride 2 (size ceil(H/2) x ceil(W/2) with the default padding 1)."""

    def __init__(self, channels: int, ops: Any, padding: int) -> None:
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, kernel_size=3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize to ``size`` (2x, or the matching skip's size for odd inputs), then a 3x3 conv."""

    def __init__(self, channels: int, ops: Any) -> None:
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class _Level(nn.Module):
    """Shared layer stepping of a U-Net level: resnet -> spatial transformer -> motion module."""

    resnets: nn.ModuleList
    attentions: nn.ModuleList
    motion_modules: nn.ModuleList

    def _build_layers(self, in_channels: list[int], c_out: int, temb_dim: int, ops: Any, spec: dict[str, Any],
                      *, cross_attention: bool, motion: bool) -> None:
        self.resnets = nn.ModuleList(
            [ResnetBlock(c, c_out, temb_dim, ops, groups=spec["groups"], eps=spec["eps"]) for c in in_channels]
        )
        n = len(in_channels)
        self.attentions = nn.ModuleList(
            [SpatialTransformer(c_out, spec["heads"], ops, groups=spec["groups"], context_dim=spec["context_dim"])
             for _ in range(n)] if cross_attention else []
        )
        self.motion_modules = nn.ModuleList(
            [MotionModule(c_out, ops, spec["motion_kwargs"]) for _ in range(n)] if motion else []
        )

    def layer(self, i: int, x: torch.Tensor, temb_act: torch.Tensor, context: torch.Tensor | None,
              batch: int) -> torch.Tensor:
        """Run layer ``i`` (its resnet, then its transformer and motion module where present)."""
        x = self.resnets[i](x, temb_act, batch)
        if len(self.attentions):
            x = self.attentions[i](x, context)
        if len(self.motion_modules):
            x = self.motion_modules[i](x, batch)
        return x


class DownLevel(_Level):
    """``layers`` layers at one width, then an optional stride-2 downsampler; every output is a skip."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, ops: Any, spec: dict[str, Any], *, layers: int,
                 cross_attention: bool, motion: bool, downsample: bool) -> None:
        super().__init__()
        self._build_layers([c_in] + [c_out] * (layers - 1), c_out, temb_dim, ops, spec,
                           cross_attention=cross_attention, motion=motion)
        self.downsamplers = (
            nn.ModuleList([Downsample(c_out, ops, spec["downsample_padding"])]) if downsample else None
        )

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor, context: torch.Tensor | None, batch: int,
                skips: list[torch.Tensor]) -> torch.Tensor:
        for i in range(len(self.resnets)):
            x = self.layer(i, x, temb_act, context, batch)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x


class MidLevel(nn.Module):
    """resnet, then (transformer [-> motion module] -> resnet) per extra layer; no resampling."""

    def __init__(self, channels: int, temb_dim: int, ops: Any, spec: dict[str, Any], *, motion: bool,
                 output_scale: float, layers: int = 1) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(channels, channels, temb_dim, ops, groups=spec["groups"], eps=spec["eps"],
                         output_scale=output_scale) for _ in range(layers + 1)]
        )
        self.attentions = nn.ModuleList(
            [SpatialTransformer(channels, spec["heads"], ops, groups=spec["groups"], context_dim=spec["context_dim"])
             for _ in range(layers)]
        )
        self.motion_modules = nn.ModuleList(
            [MotionModule(channels, ops, spec["motion_kwargs"]) for _ in range(layers)] if motion else []
        )

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor, context: torch.Tensor | None,
                batch: int) -> torch.Tensor:
        x = self.resnets[0](x, temb_act, batch)
        for i, resnet in enumerate(self.resnets[1:]):
            x = self.attentions[i](x, context)
            if len(self.motion_modules):
                x = self.motion_modules[i](x, batch)
            x = resnet(x, temb_act, batch)
        return x


class UpLevel(_Level):
    """``layers`` layers, each on ``cat(x, last remaining skip)``, then an optional nearest-2x upsampler."""

    def __init__(self, c_prev: int, c_skip_last: int, c_out: int, temb_dim: int, ops: Any, spec: dict[str, Any], *,
                 layers: int, cross_attention: bool, motion: bool, upsample: bool) -> None:
        super().__init__()
        resnet_in = [
            (c_prev if i == 0 else c_out) + (c_skip_last if i == layers - 1 else c_out) for i in range(layers)
        ]
        self._build_layers(resnet_in, c_out, temb_dim, ops, spec, cross_attention=cross_attention, motion=motion)
        self.upsamplers = nn.ModuleList([Upsample(c_out, ops)]) if upsample else None

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor, context: torch.Tensor | None, batch: int,
                skips: list[torch.Tensor], *, capture: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Consumes skips from the end of ``skips``; returns x and the output of layer ``capture`` (or None)."""
        captured = None
        for i in range(len(self.resnets)):
            x = self.layer(i, torch.cat((x, skips.pop()), dim=1), temb_act, context, batch)
            if i == capture:
                captured = x
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, tuple(skips[-1].shape[-2:]))
        return x, captured
