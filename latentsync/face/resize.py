"""Image resizes with the exact semantics upstream relies on, in plain torch on any device.

* :func:`lanczos4_u8` reproduces OpenCV's ``cv2.resize(..., INTER_LANCZOS4)`` on uint8 images bit for bit:
  8-tap windowed sinc with pixel-centre alignment, replicated borders, 11-bit fixed-point weights and
  round-half-up of the 22-bit fixed-point sum, saturated to 0..255.
* :func:`bicubic_antialias` is torchvision's tensor ``resize(..., BICUBIC, antialias=True)`` (which is
  ``F.interpolate`` with ``align_corners=False``) on float images, no clamping.
* :func:`linear_u8` reproduces OpenCV's ``cv2.resize(..., INTER_LINEAR)`` on interleaved uint8 images bit for
  bit (SyncNet's face crops, S3FD's input scaling, PySceneDetect's downscale): 11-bit fixed-point weights, an
  exact horizontal pass and OpenCV's SIMD rounding of the vertical one.
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


def _linear_axis(dst: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR sample positions on one axis: first source index (unclamped) and float32 fraction.
    ``scale`` is source pixels per output pixel (OpenCV's ``1 / inv_scale``)."""
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    start = np.floor(pos).astype(np.int64)
    return start, (pos - start.astype(np.float32)).astype(np.float32)


def _fixed_weights(frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """11-bit weights of the two taps, each rounded half to even on its own (they need not sum to 2048)."""
    one = np.float32(1 << _WEIGHT_BITS)
    return np.rint((np.float32(1) - frac) * one).astype(np.int64), np.rint(frac * one).astype(np.int64)


def linear_taps(src: int, dst: int, inv_scale: float, axis: str) -> tuple[np.ndarray, ...]:
    """OpenCV's INTER_LINEAR taps on one axis: source indices (i0, i1) and 11-bit weights (w0, w1), int64.

    ``inv_scale`` is output pixels per source pixel. On the x axis a sample left of pixel 0 or at/after the
    last pixel takes that pixel whole; on the y axis rows are clamped into the image but keep their weights
    (OpenCV's row fetch), which is why the two axes differ.
    """
    start, frac = _linear_axis(dst, 1.0 / inv_scale)
    if axis == "x":
        frac = np.where((start < 0) | (start >= src - 1), np.float32(0), frac).astype(np.float32)
        first = np.clip(start, 0, src - 1)
        second = np.minimum(first + 1, src - 1)
    elif axis == "y":
        first, second = np.clip(start, 0, src - 1), np.clip(start + 1, 0, src - 1)
    else:
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}.")
    w0, w1 = _fixed_weights(frac)
    return first, second, w0, w1


@functools.lru_cache(maxsize=64)
def _linear_tables(src_h: int, src_w: int, dst_h: int, dst_w: int, inv_x: float, inv_y: float) -> tuple[torch.Tensor, ...]:
    """Column/row indices and weights of OpenCV's fixed-point bilinear resize (CPU, cached)."""
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return tuple(as_t(a) for a in linear_taps(src_w, dst_w, inv_x, "x") + linear_taps(src_h, dst_h, inv_y, "y"))


def linear_combine(top: torch.Tensor, bottom: torch.Tensor, b0: torch.Tensor, b1: torch.Tensor) -> torch.Tensor:
    """OpenCV's vertical bilinear pass on horizontal sums (int32, 11-bit scaled): ``VResizeLinearVec_32s8u``
    (used for every column by OpenCV 4.9's wheels): each row >> 4 to int16, the high half of the 16-bit
    products, then + 2 >> 2 (not the exact 22-bit rounding). Returns uint8."""
    out = ((top >> 4).clamp_(-32768, 32767) * b0 >> 16) + ((bottom >> 4).clamp_(-32768, 32767) * b1 >> 16)
    return ((out.clamp_(-32768, 32767) + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def linear_output_size(height: int, width: int, fx: float, fy: float) -> tuple[int, int]:
    """``cv2.resize(img, (0, 0), fx=fx, fy=fy)``'s output ``(h, w)``: each side times its factor, rounded
    half to even (OpenCV's ``saturate_cast<int>``)."""
    return int(np.rint(height * fy)), int(np.rint(width * fx))


def linear_u8(images: torch.Tensor, size: tuple[int, int], *, fx: float | None = None, fy: float | None = None) -> torch.Tensor:
    """Resize interleaved uint8 images ``(..., H, W, C)`` to ``size = (h, w)`` exactly like OpenCV's
    ``cv2.resize(img, (w, h), interpolation=INTER_LINEAR)`` (as opencv-python 4.9 computes it on x86-64).

    ``fx``/``fy`` give OpenCV's scale factors when the call was ``cv2.resize(img, (0, 0), fx=, fy=)`` (the
    sample positions then follow the factor, not the size ratio). Integer arithmetic on any device, batched.
    Not covered: an exact halving of an odd-sized image through ``fx=fy=0.5`` (OpenCV's area filter then
    treats the last row/column its own way); halving even sizes is exact.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"linear_u8 expects uint8 images, got {images.dtype}; convert with .to(torch.uint8).")
    if images.dim() < 3:
        raise ValueError(f"linear_u8 expects interleaved images shaped (..., H, W, C), got {tuple(images.shape)}.")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"linear_u8: target size must be positive, got {size}.")
    in_h, in_w, chans = (int(d) for d in images.shape[-3:])
    if (in_h, in_w) == (out_h, out_w):
        return images.clone()
    inv_x = float(fx) if fx else out_w / in_w
    inv_y = float(fy) if fy else out_h / in_h
    device = images.device
    sx0, sx1, ax0, ax1, sy0, sy1, by0, by1 = (t.to(device) for t in _linear_tables(in_h, in_w, out_h, out_w, inv_x, inv_y))
    lead = images.shape[:-3]
    x = images.reshape(-1, in_h, in_w, chans)

    def horizontal(rows: torch.Tensor) -> torch.Tensor:  # (N, r, W, C) uint8 -> (N, r, w, C) int32, exact
        src = rows.to(torch.int32)
        return (src.index_select(2, sx0) * ax0.to(torch.int32)[:, None]
                + src.index_select(2, sx1) * ax1.to(torch.int32)[:, None])

    top = horizontal(x.index_select(1, sy0)).reshape(x.shape[0], out_h, out_w * chans)
    bottom = horizontal(x.index_select(1, sy1)).reshape(x.shape[0], out_h, out_w * chans)
    out = linear_combine(top, bottom, by0.to(torch.int32)[None, :, None], by1.to(torch.int32)[None, :, None])
    return out.reshape(*lead, out_h, out_w, chans)


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


__all__ = ["lanczos4_u8", "linear_u8", "linear_output_size", "linear_taps", "linear_combine", "bicubic_antialias", "reflect_indices"]
