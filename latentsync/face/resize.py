"""Image resizes with the exact semantics upstream relies on, in plain torch on any device.

* :func:`lanczos4_u8` reproduces OpenCV's ``cv2.resize(..., INTER_LANCZOS4)`` on uint8 images bit for bit:
  8-tap windowed sinc with pixel-centre alignment, replicated borders, 11-bit fixed-point weights and
  round-half-up of the 22-bit fixed-point sum, saturated to 0..255.
* :func:`bicubic_antialias` is torchvision's tensor ``resize(..., BICUBIC, antialias=True)`` (which is
  ``F.interpolate`` with ``align_corners=False``) on float images, no clamping.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

_TAPS = 8
_WEIGHT_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
_SUM_SHIFT = 2 * _WEIGHT_BITS


@functools.lru_cache(maxsize=64)
def _lanczos4_table(src: int, dst: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices ``(dst, 8)`` and fixed-point weights ``(dst, 8)`` for one axis (CPU, cached).

    The sample position of output pixel ``d`` is ``(d + 0.5) * src/dst - 0.5`` (float32, as OpenCV),
    its taps are the 8 source pixels from ``floor(pos) - 3`` to ``floor(pos) + 4`` clamped into the image.
    """
    step = 1.0 / (dst / src)  # OpenCV keeps the inverse scale in double and inverts it
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * step - 0.5).astype(np.float32)
    base = np.floor(pos)
    frac = (pos - base).astype(np.float32)
    offsets = np.arange(_TAPS) - 3  # tap k sits at base + k - 3
    weights = _lanczos4_weights(frac)
    index = np.clip(base.astype(np.int64)[:, None] + offsets[None, :], 0, src - 1)
    return torch.from_numpy(index), torch.from_numpy(weights)


def _lanczos4_weights(frac: np.ndarray) -> np.ndarray:
    """Fixed-point Lanczos-4 weights ``(n, 8)`` for sub-pixel offsets ``frac`` (float32 in [0, 1)).

    Follows OpenCV's float path so the rounded weights agree with it: window value
    ``sin(pi*t/4) * sin(pi*t) / t^2`` (up to a common factor) in double, stored as float32, a float32
    running sum, multiplication by its float32 reciprocal, then rounding of ``w * 2048`` to nearest-even.
    """
    shift = (frac.astype(np.float32) + np.float32(3)).astype(np.float32)  # distance to tap 0
    phase = -shift.astype(np.float64) * (np.pi / 4)
    raw = np.empty((frac.shape[0], _TAPS), dtype=np.float32)
    for k in range(_TAPS):
        t = (shift - np.float32(k)).astype(np.float32)
        # sin(phase + 5*pi*k/4) == (-1)^k * sin(-pi*t/4): the alternating sign carries sin(pi*t).
        num = np.sin(phase + 5 * np.pi * k / 4)
        den = (-t.astype(np.float64) * (np.pi / 4)) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (num / den).astype(np.float32)
        raw[:, k] = np.where(np.abs(t) >= np.float32(1e-6), value, np.float32(1e30))
    total = np.zeros(frac.shape[0], dtype=np.float32)
    for k in range(_TAPS):
        total = (total + raw[:, k]).astype(np.float32)
    scale = (np.float32(1) / total).astype(np.float32)
    normalised = (raw * scale[:, None]).astype(np.float32)
    return np.rint(normalised * np.float32(1 << _WEIGHT_BITS)).astype(np.int32)


def _axis_table(src: int, dst: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    index, weights = _lanczos4_table(src, dst)
    return index.to(device), weights.to(device)


def lanczos4_u8(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 images ``(..., H, W)`` to ``size = (h, w)`` exactly like OpenCV's INTER_LANCZOS4.

    Integer arithmetic throughout (exact on CPU and GPU); batched over all leading dimensions.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"lanczos4_u8 expects uint8 images, got {images.dtype}; convert with .to(torch.uint8).")
    if images.dim() < 2:
        raise ValueError(f"lanczos4_u8 expects images shaped (..., H, W), got {tuple(images.shape)}.")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"lanczos4_u8: target size must be positive, got {size}.")
    in_h, in_w = images.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return images.clone()
    lead = images.shape[:-2]
    x = images.reshape(-1, in_h, in_w)
    device = x.device

    # Integer sums in int32, like OpenCV (horizontal |sum| < 2^20, vertical < 2^31): exact on any device.
    # Each pass gathers whole rows along dim 1 (fast copies), so the image is transposed for the first.
    idx_w, wt_w = _axis_table(in_w, out_w, device)
    columns = x.transpose(1, 2).to(torch.int32).contiguous()  # (N, W, H)
    acc_w = columns.index_select(1, idx_w[:, 0]) * wt_w[:, 0, None]
    for k in range(1, _TAPS):
        acc_w += columns.index_select(1, idx_w[:, k]) * wt_w[:, k, None]
    del columns
    rows = acc_w.transpose(1, 2).contiguous()  # (N, H, w)
    del acc_w

    idx_h, wt_h = _axis_table(in_h, out_h, device)
    acc = rows.index_select(1, idx_h[:, 0]) * wt_h[:, 0, None]
    for k in range(1, _TAPS):
        acc += rows.index_select(1, idx_h[:, k]) * wt_h[:, k, None]
    acc += 1 << (_SUM_SHIFT - 1)
    acc >>= _SUM_SHIFT  # arithmetic shift: floor, as OpenCV's fixed-point cast
    return acc.clamp_(0, 255).to(torch.uint8).reshape(*lead, out_h, out_w)


def bicubic_antialias(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize float images ``(N, C, H, W)`` with bicubic + antialias (torchvision tensor semantics, no clamp).

    Computed in float32 (half-precision antialias kernels are not available on every device) and returned
    in the input dtype.
    """
    if not images.is_floating_point():
        raise TypeError(f"bicubic_antialias expects a float tensor, got {images.dtype}.")
    if images.dim() != 4:
        raise ValueError(f"bicubic_antialias expects (N, C, H, W), got {tuple(images.shape)}.")
    out_h, out_w = int(size[0]), int(size[1])
    if tuple(images.shape[-2:]) == (out_h, out_w):
        return images
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    resized = F.interpolate(work, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True)
    return resized.to(images.dtype)


def reflect_indices(n: int, before: int, after: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices that pad an axis of length ``n`` by mirror reflection without repeating the edge.

    Equals ``F.pad(..., mode="reflect")`` when the padding is shorter than the axis, and keeps folding
    (instead of failing) for longer padding.
    """
    pos = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(pos)
    period = 2 * (n - 1)
    pos = torch.remainder(pos, period)
    return torch.where(pos >= n, period - pos, pos)


__all__ = ["lanczos4_u8", "bicubic_antialias", "reflect_indices"]
