"""What the detectors share: image resampling in torch (no OpenCV: a bilinear resize, a similarity-warp crop) and
the alignment points from landmarks.

The resampling follows OpenCV's conventions closely (``cv2.resize`` INTER_LINEAR and ``cv2.warpAffine`` INTER_LINEAR
with a zero border, uint8 in and out) but is not bit-exact: OpenCV uses fixed-point weights, so single
pixels may differ by one grey level.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _as_nchw_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch refuses to wrap read-only (e.g. memory-mapped) arrays
    t = torch.as_tensor(images)
    if t.ndim == 3:
        t = t[None]
    return t.permute(0, 3, 1, 2).float()


def _to_u8_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def resize_bilinear_u8(
    images: np.ndarray | torch.Tensor, size_hw: tuple[int, int], *, antialias: bool = False
) -> torch.Tensor:
    """Resize uint8 ``(N, H, W, C)`` (or one ``(H, W, C)``) images to ``size_hw`` -> uint8 ``(N, h, w, C)``.

    Pixel-centre aligned (``align_corners=False``) like ``cv2.resize(..., INTER_LINEAR)``, which does not
    low-pass when shrinking; ``antialias=True`` does (better for detection on large frames).
    """
    x = _as_nchw_float(images)
    if tuple(x.shape[-2:]) == tuple(size_hw):
        return _to_u8_nhwc(x)
    y = F.interpolate(x, size=size_hw, mode="bilinear", align_corners=False, antialias=antialias)
    return _to_u8_nhwc(y)


def similarity_crop_matrix(
    center: np.ndarray, scale: np.ndarray, rotation_deg: np.ndarray, out_size: int
) -> np.ndarray:
    """``(N, 2, 3)`` matrices mapping frame pixels to an ``out_size`` square crop.

    The crop is centred on ``center`` (N, 2), scaled by ``scale`` (N,) and rotated by ``rotation_deg``
    (N,) around its centre: ``crop = R(rot) @ (scale * (p - center)) + out_size / 2``.
    """
    center = np.asarray(center, np.float64).reshape(-1, 2)
    scale = np.broadcast_to(np.asarray(scale, np.float64), (len(center),))
    rad = np.deg2rad(np.broadcast_to(np.asarray(rotation_deg, np.float64), (len(center),)))
    cos, sin = np.cos(rad) * scale, np.sin(rad) * scale
    linear = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # (N, 2, 2)
    shift = out_size / 2.0 - np.einsum("nij,nj->ni", linear, center)
    return np.concatenate([linear, shift[:, :, None]], axis=2)


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of ``(N, 2, 3)`` affine matrices."""
    m = np.asarray(m, np.float64)
    a = m[:, :, :2]
    inv_a = np.linalg.inv(a)
    return np.concatenate([inv_a, -np.einsum("nij,nj->ni", inv_a, m[:, :, 2])[:, :, None]], axis=2)


def warp_crop_u8(frame: np.ndarray, matrix: np.ndarray, out_size: int) -> np.ndarray:
    """``cv2.warpAffine(frame, matrix, (S, S))``-like crop: uint8 ``(S, S, C)`` sampled bilinearly, zero outside.

    Only the frame region the crop can touch is read, so 4K frames cost no more than small ones. Source
    positions are snapped to 1/32 px as OpenCV's fixed-point warp does. Plain numpy: crops are small.
    """
    h, w, c = frame.shape
    inv = invert_affine(np.asarray(matrix, np.float64)[None])[0]
    gx, gy = np.meshgrid(np.arange(out_size, dtype=np.float64), np.arange(out_size, dtype=np.float64))
    sx = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
    sy = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    sx = np.floor(np.round(sx * 1024.0) / 32.0) / 32.0
    sy = np.floor(np.round(sy * 1024.0) / 32.0) / 32.0
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    # the readable window, one zero pixel around it so that taps just outside the frame read 0 (OpenCV's border)
    wx0, wy0 = max(int(x0.min()), 0), max(int(y0.min()), 0)
    wx1, wy1 = min(int(x0.max()) + 2, w), min(int(y0.max()) + 2, h)
    if wx1 <= wx0 or wy1 <= wy0:
        return np.zeros((out_size, out_size, c), np.uint8)
    win = np.zeros((wy1 - wy0 + 2, wx1 - wx0 + 2, c), np.float32)
    win[1:-1, 1:-1] = frame[wy0:wy1, wx0:wx1]
    # tap coordinates inside the padded window; anything beyond the frame lands on the zero border
    ix0 = np.clip(x0 - wx0 + 1, 0, win.shape[1] - 1)
    ix1 = np.clip(x0 - wx0 + 2, 0, win.shape[1] - 1)
    iy0 = np.clip(y0 - wy0 + 1, 0, win.shape[0] - 1)
    iy1 = np.clip(y0 - wy0 + 2, 0, win.shape[0] - 1)
    inside_x0 = (x0 >= 0) & (x0 < w)
    inside_x1 = (x0 + 1 >= 0) & (x0 + 1 < w)
    inside_y0 = (y0 >= 0) & (y0 < h)
    inside_y1 = (y0 + 1 >= 0) & (y0 + 1 < h)

    def tap(iy, ix, valid):
        return np.where(valid[..., None], win[iy, ix], 0.0)

    top = tap(iy0, ix0, inside_y0 & inside_x0) * (1 - fx) + tap(iy0, ix1, inside_y0 & inside_x1) * fx
    bottom = tap(iy1, ix0, inside_y1 & inside_x0) * (1 - fx) + tap(iy1, ix1, inside_y1 & inside_x1) * fx
    out = top * (1 - fy) + bottom * fy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def alignment_points(landmarks: np.ndarray, groups, *, round_landmarks: bool, round_points: bool) -> np.ndarray:
    """Means of the landmark index ``groups`` (left brow, right brow, nose): points ``(..., 3, 2)`` float32."""
    lmk = np.asarray(landmarks, np.float64)
    if round_landmarks:
        lmk = np.round(lmk)
    pts = np.stack([lmk[..., list(g), :].mean(-2) for g in groups], axis=-2)
    return (np.round(pts) if round_points else pts).astype(np.float32)
